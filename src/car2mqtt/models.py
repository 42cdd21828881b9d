"""The provider-neutral domain model: what car2mqtt knows about a car, whatever its cloud.

Providers parse their wire JSON into these frozen types at the edge; everything downstream (the
Home Assistant mapping, MQTT, the store) sees only them. Fields carry their unit in their name.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class ChargeState(StrEnum):
    """Where a car is in its charging life (unknown values from a cloud map to UNKNOWN)."""

    UNKNOWN = "unknown"
    UNPLUGGED = "unplugged"
    INITIALIZING = "initializing"
    CHARGING = "charging"
    STOPPED = "stopped"
    COMPLETE = "complete"
    NO_POWER = "no_power"
    FAULT = "fault"
    DISCHARGING = "discharging"


class Capability(StrEnum):
    """What a car lets us do or read, as the provider reports it."""

    START_CHARGING = "start_charging"
    STOP_CHARGING = "stop_charging"
    LOCATION = "location"
    ODOMETER = "odometer"
    REFRESH = "refresh"
    SET_MAX_CURRENT = "set_max_current"
    SMART_CHARGING = "smart_charging"  # the cloud's smart charging: policy, plan, charge now


class SmartChargingState(StrEnum):
    """Where a cloud's smart charging is with a car (unknown values map to UNKNOWN)."""

    UNKNOWN = "unknown"
    DISABLED = "disabled"
    CONSIDERING = "considering"
    STOPPING = "stopping"
    STOP_FAILED = "stop_failed"
    STOPPED = "stopped"  # waiting for the plan's start
    AWAITING_PRICES = "awaiting_prices"
    STARTING = "starting"
    START_FAILED = "start_failed"
    STARTED = "started"
    INTERRUPTED = "interrupted"
    OVERRIDDEN = "overridden"  # charging now, whatever the plan says
    FINISHED = "finished"
    UNPLUGGED = "unplugged"
    FAILED = "failed"
    ENDED = "ended"  # the plan ended because smart charging was turned off
    DEADLINE_CHANGED = "deadline_changed"
    FULLY_CHARGED = "fully_charged"


class CommandStatus(StrEnum):
    """The life of a command sent to a car."""

    SENT = "sent"  # accepted by the bridge, not yet by the cloud
    PENDING = "pending"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"  # refused before it reached the car (bad payload, precondition)

    @property
    def final(self) -> bool:
        """Whether the command's fate is settled."""
        return self not in (CommandStatus.SENT, CommandStatus.PENDING)


class LocationMode(StrEnum):
    """How precisely a car's position leaves the bridge (`privacy.location`)."""

    EXACT = "exact"  # as the cloud reports it
    COARSE = "coarse"  # rounded to a grid, heading and altitude dropped
    ZONE = "zone"  # only the name of the zone the car is in, or NOT_HOME; no coordinates
    OFF = "off"  # no position at all


NOT_HOME = "not_home"  # the zone of a car in none of `zones:` (Home Assistant's word)


class LinkState(StrEnum):
    """Whether the bridge can still read an account's cars."""

    OK = "ok"
    RELINK_REQUIRED = "relink_required"


_ID_SAFE = re.compile(r"[^a-zA-Z0-9_-]")


def safe_id(value: str) -> str:
    """Return `value` with anything but letters, digits, `_` and `-` replaced by `_`."""
    return _ID_SAFE.sub("_", value)


@dataclass(frozen=True, slots=True)
class VehicleRef:
    """Which car: provider kind, account name and the cloud's own vehicle id."""

    provider: str
    account: str
    vehicle_id: str

    @property
    def key(self) -> str:
        """A stable id, safe for MQTT topics and Home Assistant unique ids."""
        return safe_id(f"{self.provider}_{self.vehicle_id}")


@dataclass(frozen=True, slots=True)
class VehicleInfo:
    """What a car is: fixed facts that name the Home Assistant device."""

    ref: VehicleRef
    vendor: str
    brand: str | None = None
    model: str | None = None
    year: int | None = None
    vin: str | None = None
    display_name: str | None = None

    @property
    def name(self) -> str:
        """The device name people see: their nickname, else brand and model."""
        if self.display_name:
            return self.display_name
        parts = [p for p in (self.brand or self.vendor.title(), self.model) if p]
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Location:
    """A GPS fix."""

    latitude: float
    longitude: float
    updated_at: datetime | None = None
    heading_deg: float | None = None
    altitude_m: float | None = None
    satellites: int | None = None
    accuracy_m: float | None = None  # set when the fix was coarsened on purpose


@dataclass(frozen=True, slots=True)
class SmartCharging:
    """What a cloud's smart charging plans for a car, as last read or pushed."""

    state: SmartChargingState
    updated_at: datetime | None = None
    plan_start_at: datetime | None = None  # when the plan (re)starts charging
    plan_finish_at: datetime | None = None  # when it expects the car to be charged
    charging_now: bool = False  # a "charge now" (smart override) is active


@dataclass(frozen=True, slots=True)
class VehicleState:
    """Everything known about one car at one moment. `None` means "not reported"."""

    info: VehicleInfo
    capabilities: frozenset[Capability] = frozenset()
    last_seen: datetime | None = None
    reachable: bool | None = None
    # Battery and charging
    battery_pct: float | None = None
    range_km: float | None = None
    charging: bool | None = None
    plugged_in: bool | None = None
    charge_state: ChargeState = ChargeState.UNKNOWN
    charge_rate_kw: float | None = None
    charge_time_remaining_min: float | None = None
    charge_limit_pct: float | None = None
    battery_capacity_kwh: float | None = None
    max_current_a: float | None = None
    charge_updated_at: datetime | None = None
    # The cloud's smart charging: its policy (set by the user) and what it plans
    smart_charging_enabled: bool | None = None
    charge_deadline: str | None = None  # "HH:MM", in the time zone the cloud uses
    min_charge_limit_pct: float | None = None
    smart: SmartCharging | None = None
    # Position and distance
    odometer_km: float | None = None
    odometer_updated_at: datetime | None = None
    location: Location | None = None
    # What `privacy.location` left of the position: its mode, and in ZONE mode the zone's
    # name (or NOT_HOME) in place of `location`, which is then None.
    location_mode: LocationMode = LocationMode.EXACT
    zone: str | None = None
    # Signals from OBD dongles
    speed_kmh: float | None = None
    fuel_level_l: float | None = None
    battery_voltage_v: float | None = None
    unlocked: bool | None = None
    ignition_on: bool | None = None
    signals_updated_at: datetime | None = None

    @property
    def ref(self) -> VehicleRef:
        """Which car this is."""
        return self.info.ref

    def replace(self, **changes: object) -> VehicleState:
        """Return a copy with `changes` applied."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


# Fields grouped by the timestamp that dates them: a group with an older stamp never
# overwrites a newer one (clouds serve caches, webhooks and polls can arrive out of order).
_DATED_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "charge_updated_at",
        (
            "battery_pct",
            "range_km",
            "charging",
            "plugged_in",
            "charge_state",
            "charge_rate_kw",
            "charge_time_remaining_min",
            "charge_limit_pct",
            "battery_capacity_kwh",
            "max_current_a",
        ),
    ),
    ("odometer_updated_at", ("odometer_km",)),
    (
        "signals_updated_at",
        ("speed_kmh", "fuel_level_l", "battery_voltage_v", "unlocked", "ignition_on"),
    ),
)


def merge_newer(old: VehicleState | None, new: VehicleState) -> VehicleState:
    """Return `new`, except that groups of fields dated older than in `old` keep `old`'s."""
    if old is None:
        return new
    changes: dict[str, object] = {}
    for stamp, fields in _DATED_GROUPS:
        before, after = getattr(old, stamp), getattr(new, stamp)
        if before is not None and after is not None and after < before:
            changes[stamp] = before
            changes.update({name: getattr(old, name) for name in fields})
    old_fix, new_fix = old.location, new.location
    if (
        old_fix is not None
        and new_fix is not None
        and old_fix.updated_at is not None
        and new_fix.updated_at is not None
        and new_fix.updated_at < old_fix.updated_at
    ):
        changes["location"] = old_fix
    # Smart charging status is read less often than the rest (or only pushed): a state
    # without one keeps the last known.
    old_smart, new_smart = old.smart, new.smart
    if old_smart is not None and (
        new_smart is None
        or (
            old_smart.updated_at is not None
            and new_smart.updated_at is not None
            and new_smart.updated_at < old_smart.updated_at
        )
    ):
        changes["smart"] = old_smart
    if old.last_seen and new.last_seen and new.last_seen < old.last_seen:
        changes["last_seen"] = old.last_seen
    return new.replace(**changes) if changes else new


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What became of a command: published to Home Assistant as the last-command sensor."""

    command: str
    status: CommandStatus
    at: datetime
    action_id: str | None = None
    reason: str | None = None
    value: str | None = None  # what a setting was set to ("16" A, "07:30"), None for the rest


@dataclass(frozen=True, slots=True)
class AccountStatus:
    """An account's health as the bridge sees it."""

    account: str
    provider: str
    link: LinkState = LinkState.OK
    problem: str | None = None
    vehicles: tuple[VehicleRef, ...] = field(default_factory=tuple)
