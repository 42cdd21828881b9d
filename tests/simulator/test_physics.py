"""Unit tests of the car physics: closed-form, path-independent, plausible."""

from __future__ import annotations

import pytest

from car2mqtt.errors import SimulatorError
from car2mqtt.simulator.catalog import CATALOG
from car2mqtt.simulator.physics import (
    COMPLETE_GAP_PCT,
    INIT_SECONDS,
    ChargeMode,
    ChargeRates,
    SimCar,
    charged_soc,
    haversine_km,
    loop_route,
)

TESLA = CATALOG[0]


def car(soc: float = 20.0, limit: float = 80.0) -> SimCar:
    return SimCar(TESLA, 0.0, soc, 1000.0, 59.9, 10.7, (59.9, 10.7), charge_limit=limit)


def test_charging_is_path_independent() -> None:
    one, many = car(), car()
    one.plug_in(start_charging=True)
    many.plug_in(start_charging=True)
    one.advance(5 * 3600)
    for step in range(1, 5 * 360 + 1):
        many.advance(step * 10.0)
    assert many.soc == pytest.approx(one.soc, abs=1e-9)


def test_charge_modes_and_taper() -> None:
    c = car(soc=20.0)
    c.plug_in(start_charging=True)
    assert c.charge_mode() is ChargeMode.INITIALIZING
    assert c.charge_power_kw() == 0.0
    c.advance(INIT_SECONDS + 1)
    assert c.charge_mode() is ChargeMode.CHARGING
    assert c.charge_power_kw() == TESLA.max_ac_kw
    rates = ChargeRates.for_car(TESLA.max_ac_kw, TESLA.capacity_kwh, 80.0)
    c.advance(INIT_SECONDS + rates.hours_to_complete(20.0) * 3600 * 0.97)
    assert c.charge_mode() is ChargeMode.CHARGING
    assert 0 < c.charge_power_kw() < TESLA.max_ac_kw  # tapering near the limit
    c.advance(10 * 3600)
    assert c.charge_mode() is ChargeMode.COMPLETE
    assert c.soc == 80.0
    assert c.charge_power_kw() == 0.0
    assert c.minutes_to_complete() == 0.0


def test_linear_phase_matches_power() -> None:
    rates = ChargeRates.for_car(11.0, 55.0, 100.0)
    # 11 kW into 55 kWh is 20 % an hour until the taper starts at 80 %.
    assert charged_soc(10.0, 1.0, rates) == pytest.approx(30.0)
    assert rates.power_kw(50.0) == 11.0
    assert rates.power_kw(90.0) == pytest.approx(5.5)
    assert charged_soc(99.9, 1.0, rates) == 100.0
    assert charged_soc(100 - COMPLETE_GAP_PCT / 2, 0.0, rates) == 100.0


def test_minutes_to_complete_counts_down() -> None:
    c = car(soc=30.0)
    c.plug_in(start_charging=True)
    c.advance(60.0)
    first = c.minutes_to_complete()
    c.advance(3600.0)
    assert 0 < c.minutes_to_complete() < first - 55


def test_stop_and_unplug() -> None:
    c = car()
    c.plug_in(start_charging=True)
    c.stop_charging()
    assert c.charge_mode() is ChargeMode.STOPPED
    soc = c.soc
    c.advance(3600)
    assert c.soc == soc
    c.unplug()
    assert c.charge_mode() is ChargeMode.UNPLUGGED
    with pytest.raises(SimulatorError, match="not plugged in"):
        c.start_charging()


def test_drive_consumes_and_ends_at_its_distance() -> None:
    c = car(soc=50.0)
    route = loop_route(c.lat, c.lon, [0, 120, 240], [3, 4, 3])
    c.start_drive(route, 60.0, 30.0)
    c.advance(15 * 60)
    assert c.odometer_km == pytest.approx(1015.0)
    assert c.soc == pytest.approx(
        50.0 - 15 * TESLA.consumption_kwh_per_km / TESLA.capacity_kwh * 100
    )
    assert (c.lat, c.lon) != (59.9, 10.7)
    c.advance(3600)
    assert not c.driving
    assert c.odometer_km == pytest.approx(1030.0)


def test_drive_stops_when_the_battery_is_empty() -> None:
    c = car(soc=1.0)
    route = loop_route(c.lat, c.lon, [0, 120, 240], [3, 4, 3])
    c.start_drive(route, 100.0, None)
    c.advance(10 * 3600)
    assert c.soc == 0.0
    assert not c.driving
    with pytest.raises(SimulatorError, match="empty"):
        c.start_drive(route, 50.0, None)


def test_route_is_a_closed_plausible_loop() -> None:
    route = loop_route(59.9, 10.7, [0, 120, 240], [3, 4, 3])
    assert route.points[0] == route.points[-1]
    assert 10 < route.length_km < 25
    assert route.position(0.0) == (59.9, 10.7)
    lat, lon = route.position(route.length_km / 2)
    assert 0.5 < haversine_km(59.9, 10.7, lat, lon) < 8


def test_cannot_plug_in_while_driving_or_drive_while_plugged() -> None:
    c = car()
    c.plug_in(start_charging=False)
    route = loop_route(c.lat, c.lon, [0], [1])
    with pytest.raises(SimulatorError, match="unplug"):
        c.start_drive(route, 50, None)
    c.unplug()
    c.start_drive(route, 50, None)
    with pytest.raises(SimulatorError, match="driving"):
        c.plug_in(start_charging=True)
    with pytest.raises(SimulatorError, match="between 0 and 100"):
        c.set_soc(101)


def test_power_follows_the_current_limit() -> None:
    c = car(soc=20.0)
    assert c.current_limit_a == TESLA.max_current_a
    c.set_max_current(8)
    assert c.ac_power_kw() == pytest.approx(TESLA.max_ac_kw / 2)
    c.plug_in(start_charging=True)
    c.advance(INIT_SECONDS + 3600)
    assert c.charge_power_kw() == pytest.approx(TESLA.max_ac_kw / 2)
    assert c.soc == pytest.approx(20 + TESLA.max_ac_kw / 2 / TESLA.capacity_kwh * 100)
    with pytest.raises(SimulatorError):
        c.set_max_current(TESLA.max_current_a + 1)
    with pytest.raises(SimulatorError):
        c.set_max_current(0)


def test_seconds_to_level_agrees_with_the_charge() -> None:
    for level in (50.0, 78.0):  # before and inside the taper
        c = car(soc=20.0)
        seconds = c.seconds_to_level(level)  # from a fresh start: INIT_SECONDS included
        c.plug_in(start_charging=True)
        c.advance(seconds)
        assert c.soc == pytest.approx(level, abs=1e-6)
    assert car(soc=60.0).seconds_to_level(50.0) == 0.0
