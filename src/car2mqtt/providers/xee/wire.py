"""Xee v4 wire models: parsed at the edge, tolerant of nulls, odd values and new fields.

No machine-readable v4 reference survives (reference/xee.md §5), so every field may be missing
or null, a malformed signal is dropped rather than failing the whole status, and signals are
looked up by name: their order is not stable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from car2mqtt.models import (
    Capability,
    ChargeState,
    Location,
    VehicleInfo,
    VehicleRef,
    VehicleState,
)
from car2mqtt.providers.values import Number, number_or_none

_DATE = TypeAdapter(datetime)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


def _date_or_none(value: Any) -> datetime | None:
    """Read an ISO-8601 date tolerantly: one we cannot parse is as good as none."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        return _DATE.validate_python(value)
    except ValidationError:
        return None


class Device(_Wire):
    """`device`: the dongle."""

    id: str | None = None


class Vehicle(_Wire):
    """One entry of `users/me/vehicles`."""

    id: str
    name: str | None = None
    brand: str | None = None
    model: str | None = None
    license_plate: str | None = Field(None, alias="licensePlate")
    device: Device | None = None
    first_entry: datetime | None = Field(None, alias="firstEntryIntoService")

    _dates = field_validator("first_entry", mode="before")(_date_or_none)

    @property
    def stable_id(self) -> str:
        """The car's id for Home Assistant: its dongle's, which survives re-pairing.

        Xee gives a car a new vehicle id whenever its dongle is paired again (xee.md §8);
        keying on the dongle keeps the same device and entities in Home Assistant.
        """
        return self.device.id if self.device is not None and self.device.id else self.id


class Signal(_Wire):
    """One `{name, value, date}` entry."""

    name: str
    value: Number = None
    date: datetime | None = None

    _date = field_validator("date", mode="before")(_date_or_none)


class LocationWire(_Wire):
    """`location`."""

    latitude: Number = None
    longitude: Number = None
    altitude: Number = None
    heading: Number = None
    satellites: int | None = Field(None, alias="nbSat")
    date: datetime | None = None

    _date = field_validator("date", mode="before")(_date_or_none)

    @field_validator("satellites", mode="before")
    @classmethod
    def _satellites(cls, value: Any) -> int | None:
        number = number_or_none(value)
        return None if number is None else int(number)


class Status(_Wire):
    """`vehicles/{id}/status`."""

    location: LocationWire | None = None
    signals: tuple[Signal, ...] = ()
    updated_at: datetime | None = Field(None, alias="updatedAt")

    _date = field_validator("updated_at", mode="before")(_date_or_none)

    @field_validator("location", mode="before")
    @classmethod
    def _location(cls, value: Any) -> Any:
        return value if isinstance(value, Mapping) else None

    @field_validator("signals", mode="before")
    @classmethod
    def _signals(cls, value: Any) -> tuple[Signal, ...]:
        if not isinstance(value, list | tuple):
            return ()
        return tuple(_readable_signals(value))

    def latest(self) -> dict[str, Signal]:
        """Each signal by name; of two with one name, the newer."""
        by_name: dict[str, Signal] = {}
        for signal in self.signals:
            seen = by_name.get(signal.name)
            if seen is None or (
                signal.date is not None and (seen.date is None or signal.date > seen.date)
            ):
                by_name[signal.name] = signal
        return by_name


def _readable_signals(items: Iterable[Any]) -> Iterable[Signal]:
    for item in items:
        try:
            yield Signal.model_validate(item)
        except ValidationError:
            continue  # one garbled signal must not hide the others


def readable_signals(items: Any) -> list[Signal]:
    """Read a JSON array of signals, dropping garbled entries."""
    return list(_readable_signals(items)) if isinstance(items, list) else []


def readable_locations(items: Any) -> list[LocationWire]:
    """Read a JSON array of locations, dropping entries that are not objects."""
    if not isinstance(items, list):
        return []
    return [LocationWire.model_validate(i) for i in items if isinstance(i, Mapping)]


class TripStats(_Wire):
    """A trip's `stats`: distance in km, duration in seconds."""

    distance: Number = None
    duration: Number = None


def _mapping_or_none(value: Any) -> Any:
    return value if isinstance(value, Mapping) else None


class Trip(_Wire):
    """One v4 trip, in the Android SDK's shape (`stats`, start and end `Location`s with dates).

    The Python SDK's v3-era names (`beginLocation`, `beginDate`, `endDate`) and a top-level
    `distance` are read too, in case a server still answers that way.
    """

    id: str = Field(min_length=1)
    vehicle_id: str | None = Field(None, alias="vehicleId")
    start_location: LocationWire | None = Field(
        None, validation_alias=AliasChoices("startLocation", "beginLocation")
    )
    end_location: LocationWire | None = Field(None, alias="endLocation")
    stats: TripStats | None = None
    distance: Number = None
    start_date: datetime | None = Field(
        None, validation_alias=AliasChoices("startDate", "beginDate")
    )
    end_date: datetime | None = Field(None, alias="endDate")
    created_at: datetime | None = Field(None, alias="createdAt")
    updated_at: datetime | None = Field(None, alias="updatedAt")

    _dates = field_validator("start_date", "end_date", "created_at", "updated_at", mode="before")(
        _date_or_none
    )
    _objects = field_validator("start_location", "end_location", "stats", mode="before")(
        _mapping_or_none
    )

    @property
    def started_at(self) -> datetime | None:
        """When the trip began: its start location's date."""
        start = self.start_location
        return (start.date if start is not None else None) or self.start_date

    @property
    def ended_at(self) -> datetime | None:
        """When the trip ended: its end location's date."""
        end = self.end_location
        return (end.date if end is not None else None) or self.end_date

    @property
    def distance_km(self) -> float | None:
        """The distance driven, in km."""
        stats = self.stats.distance if self.stats is not None else None
        return stats if stats is not None else self.distance


def readable_trips(items: Any) -> list[Trip]:
    """Read a JSON array of trips, dropping entries without an id."""
    if not isinstance(items, list):
        return []
    trips = []
    for item in items:
        try:
            trips.append(Trip.model_validate(item))
        except ValidationError:
            continue  # one garbled trip must not hide the others
    return trips


class ErrorBody(_Wire):
    """A v4 error: `{"error", "error_description"}` (v3's list shape is read by the client)."""

    error: str | None = None
    error_description: str | None = None


# Signal names, spelled as Xee spells them ("Vehicule" sic).
SPEED = ("VehiculeSpeed", "VehicleSpeed")
FUEL = ("ComputedFuelLevel", "FuelLevel")  # smoothed first: it graphs better in HA
DASHBOARD = ("Odometer", "BatteryVoltage", "LockSts", "IgnitionSts", *SPEED, *FUEL)
EV = ("EVBatterySOC", "EVRemainingRange", "EVChargingSts", "EVChargerSts", "EVRemainingChargeTime")


def _first(signals: Mapping[str, Signal], names: Iterable[str]) -> Signal | None:
    for name in names:
        signal = signals.get(name)
        if signal is not None and signal.value is not None:
            return signal
    return None


def _value(signals: Mapping[str, Signal], *names: str) -> float | None:
    signal = _first(signals, names)
    return None if signal is None else signal.value


def _flag(signals: Mapping[str, Signal], name: str) -> bool | None:
    value = _value(signals, name)
    return None if value is None else value >= 0.5


def _newest(signals: Mapping[str, Signal], names: Iterable[str]) -> datetime | None:
    dates = [s.date for n in names if (s := signals.get(n)) is not None and s.date is not None]
    return max(dates, default=None)


def _charge_state(plugged: bool | None, charging: bool | None) -> ChargeState:
    if charging:
        return ChargeState.CHARGING
    if plugged is False:
        return ChargeState.UNPLUGGED
    if plugged:
        return ChargeState.STOPPED
    return ChargeState.UNKNOWN


def to_state(account: str, vehicle: Vehicle, status: Status) -> VehicleState:
    """Map a vehicle and its status onto the provider-neutral domain model, signals by name."""
    signals = status.latest()
    loc = status.location
    location = None
    if loc is not None and loc.latitude is not None and loc.longitude is not None:
        location = Location(
            loc.latitude,
            loc.longitude,
            updated_at=loc.date,
            heading_deg=loc.heading,
            altitude_m=loc.altitude,
            satellites=loc.satellites,
        )
    lock = _flag(signals, "LockSts")
    plugged, charging = _flag(signals, "EVChargerSts"), _flag(signals, "EVChargingSts")
    capabilities = set()
    if location is not None:
        capabilities.add(Capability.LOCATION)
    if "Odometer" in signals:
        capabilities.add(Capability.ODOMETER)
    stamps = [s.date for s in signals.values() if s.date is not None]
    stamps += [d for d in (status.updated_at, loc.date if loc else None) if d is not None]
    brand = vehicle.brand
    return VehicleState(
        info=VehicleInfo(
            ref=VehicleRef("xee", account, vehicle.stable_id),
            vendor=(brand or "Xee").upper(),
            brand=brand,
            model=vehicle.model,
            year=vehicle.first_entry.year if vehicle.first_entry else None,
            display_name=vehicle.name,
        ),
        capabilities=frozenset(capabilities),
        last_seen=max(stamps, default=None),
        battery_pct=_value(signals, "EVBatterySOC"),
        range_km=_value(signals, "EVRemainingRange"),
        charging=charging,
        plugged_in=plugged,
        charge_state=_charge_state(plugged, charging),
        charge_time_remaining_min=_value(signals, "EVRemainingChargeTime"),
        charge_updated_at=_newest(signals, EV),
        odometer_km=_value(signals, "Odometer"),
        odometer_updated_at=_newest(signals, ("Odometer",)),
        location=location,
        speed_kmh=_value(signals, *SPEED),
        fuel_level_l=_value(signals, *FUEL),
        battery_voltage_v=_value(signals, "BatteryVoltage"),
        unlocked=None if lock is None else not lock,
        ignition_on=_flag(signals, "IgnitionSts"),
        signals_updated_at=_newest(signals, DASHBOARD),
    )
