"""Xee wire parsing: signals by name in any order, tolerant of nulls and garbage."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

from car2mqtt.models import Capability, ChargeState
from car2mqtt.providers.xee.wire import Status, Vehicle, to_state

VEHICLE = {
    "id": "3c1e6f43-1111-4b6e-9c39-4d8c5c8b0a01",
    "name": "Family car",
    "brand": "Peugeot",
    "model": "308",
    "licensePlate": "AB-123-CD",
    "device": {"id": "E1337420", "vehicleId": "3c1e...", "brand": "xee"},
    "firstEntryIntoService": "2019-03-01T00:00:00Z",
    "somethingNew": {"x": 1},
}
COMBUSTION = [
    {"name": "LockSts", "value": 1, "date": "2026-11-22T08:00:00Z"},
    {"name": "Odometer", "value": 34512.1, "date": "2026-11-22T08:01:00.123Z"},
    {"name": "FuelLevel", "value": 31.5, "date": "2026-11-22T08:01:00Z"},
    {"name": "ComputedFuelLevel", "value": 31.0, "date": "2026-11-22T08:01:00Z"},
    {"name": "BatteryVoltage", "value": 12.6, "date": "2026-11-22T08:02:00+00:00"},
    {"name": "VehiculeSpeed", "value": 0, "date": "2026-11-22T08:00:30Z"},
    {"name": "IgnitionSts", "value": 0, "date": "2026-11-22T08:00:10Z"},
]
LOCATION = {
    "latitude": 50.67815,
    "longitude": 3.208155,
    "altitude": 31.8,
    "heading": 167,
    "nbSat": 4,
    "hacc": 12,
    "date": "2026-11-22T08:03:00Z",
}


def state_of(signals: list[dict[str, Any]], **status: Any) -> Any:
    body = {"vehicleId": VEHICLE["id"], "signals": signals, "location": LOCATION, **status}
    return to_state(
        "home",
        Vehicle.model_validate(VEHICLE),
        Status.model_validate_json(json.dumps(body)),
    )


def test_signals_are_read_by_name_whatever_their_order() -> None:
    first = state_of(COMBUSTION)
    for order in itertools.islice(itertools.permutations(COMBUSTION), 0, 5040, 97):
        assert state_of(list(order)) == first
    assert first.odometer_km == 34512.1
    assert first.fuel_level_l == 31.0  # the smoothed level wins over the raw one
    assert first.battery_voltage_v == 12.6
    assert first.speed_kmh == 0
    assert first.unlocked is False  # LockSts 1 means locked
    assert first.ignition_on is False
    assert first.signals_updated_at == datetime(2026, 11, 22, 8, 2, tzinfo=UTC)
    assert first.odometer_updated_at == datetime(2026, 11, 22, 8, 1, 0, 123000, tzinfo=UTC)
    assert first.last_seen == datetime(2026, 11, 22, 8, 3, tzinfo=UTC)
    assert first.battery_pct is None
    assert first.charge_state is ChargeState.UNKNOWN
    assert first.capabilities == {Capability.LOCATION, Capability.ODOMETER}


def test_vehicle_and_location_facts() -> None:
    state = state_of(COMBUSTION)
    assert state.ref.provider == "xee"
    assert state.ref.vehicle_id == "E1337420"  # the dongle: survives re-pairing
    assert state.info.name == "Family car"
    assert state.info.brand == "Peugeot"
    assert state.info.year == 2019
    assert state.location is not None
    assert (state.location.latitude, state.location.longitude) == (50.67815, 3.208155)
    assert state.location.satellites == 4
    assert state.location.heading_deg == 167
    assert state.location.altitude_m == 31.8


def test_newest_of_two_signals_with_one_name_wins() -> None:
    signals = [
        *COMBUSTION,
        {"name": "Odometer", "value": 34600.0, "date": "2026-11-22T09:00:00Z"},
        {"name": "Odometer", "value": 1.0, "date": "2020-01-01T00:00:00Z"},
    ]
    assert state_of(signals).odometer_km == 34600.0


def test_electric_signals_fill_battery_and_charging() -> None:
    signals = [
        {"name": "EVBatterySOC", "value": 64.5, "date": "2026-11-22T08:00:00Z"},
        {"name": "EVRemainingRange", "value": 212, "date": "2026-11-22T08:00:00Z"},
        {"name": "EVChargerSts", "value": 1, "date": "2026-11-22T08:00:00Z"},
        {"name": "EVChargingSts", "value": 1, "date": "2026-11-22T08:05:00Z"},
        {"name": "LockSts", "value": 0, "date": "2026-11-22T08:00:00Z"},
    ]
    state = state_of(signals)
    assert state.battery_pct == 64.5
    assert state.range_km == 212
    assert state.plugged_in is True
    assert state.charging is True
    assert state.charge_state is ChargeState.CHARGING
    assert state.charge_updated_at == datetime(2026, 11, 22, 8, 5, tzinfo=UTC)
    assert state.unlocked is True
    assert state.fuel_level_l is None


def test_garbage_is_dropped_not_fatal() -> None:
    signals: list[Any] = [
        {"name": "Odometer", "value": "34512.5", "date": "not a date"},
        {"value": 3},  # no name
        "junk",
        {"name": "BatteryVoltage", "value": {"v": 1}, "date": None},
        {"name": "FuelLevel", "value": None},
        {"name": "IgnitionSts", "value": True, "date": "2026-11-22T08:00:00Z"},
    ]
    state = state_of(signals, location={"latitude": None, "longitude": 3.2})
    assert state.odometer_km == 34512.5
    assert state.odometer_updated_at is None
    assert state.battery_voltage_v is None
    assert state.fuel_level_l is None
    assert state.ignition_on is True
    assert state.location is None
    assert Capability.LOCATION not in state.capabilities


def test_null_everything() -> None:
    status = Status.model_validate({"signals": None, "location": None, "updatedAt": None})
    vehicle = Vehicle.model_validate({"id": "v1", "device": None, "brand": None})
    state = to_state("home", vehicle, status)
    assert state.ref.vehicle_id == "v1"  # no dongle id: the vehicle id is all there is
    assert state.info.name == "Xee"
    assert state.last_seen is None


def test_numbers_that_are_not_finite_are_dropped() -> None:
    body = (
        '{"signals": [{"name": "Odometer", "value": 1e400, "date": "2026-11-22T08:00:00Z"},'
        ' {"name": "BatteryVoltage", "value": "NaN"},'
        ' {"name": "FuelLevel", "value": ' + "9" * 400 + "}],"
        ' "location": {"latitude": 50.1, "longitude": 3.2, "heading": "inf", "nbSat": 1e400}}'
    )
    state = to_state("home", Vehicle.model_validate(VEHICLE), Status.model_validate_json(body))
    assert state.odometer_km is None
    assert state.battery_voltage_v is None
    assert state.fuel_level_l is None
    assert state.location is not None
    assert state.location.heading_deg is None
    assert state.location.satellites is None
