"""What the web UI's pages show, as plain data: pure functions of the hub's records."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from types import MappingProxyType

from car2mqtt.bridge.known import KnownAccount, KnownVehicle
from car2mqtt.ha.entities import COMMAND_CAPABILITY, SETTINGS, Setting
from car2mqtt.history.present import (
    SOURCE_WORDS,
    clock_text,
    distance_of,
    duration_text,
    number_text,
    place_of,
    place_text,
    soc_text,
)
from car2mqtt.history.records import Session, Trip
from car2mqtt.models import ChargeState, CommandResult, LinkState, VehicleState
from car2mqtt.providers.base import Command, ProviderSpec, shown_value
from car2mqtt.web.chart import EnergyChart

Getter = Callable[[VehicleState], object]
Stamp = Callable[[VehicleState], datetime | None]


def _charge(s: VehicleState) -> datetime | None:
    return s.charge_updated_at or s.last_seen


def _signals(s: VehicleState) -> datetime | None:
    return s.signals_updated_at or s.last_seen


@dataclass(frozen=True, slots=True)
class ValueRow:
    """One value a car reports, as the car page lists it."""

    label: str
    get: Getter
    unit: str = ""
    stamp: Stamp = _charge


def where(s: VehicleState) -> str | None:
    """Return the car's position as privacy left it: coordinates, a zone's name, or None."""
    if s.zone is not None:
        return s.zone  # `privacy.location: zone`
    fix = s.location
    return f"{fix.latitude:.5f}, {fix.longitude:.5f}" if fix is not None else None


# Every value the bridge may know of a car, in the order the car page shows them.
VALUE_ROWS: tuple[ValueRow, ...] = (
    ValueRow("Battery", lambda s: s.battery_pct, "%"),
    ValueRow("Range", lambda s: s.range_km, "km"),
    ValueRow("Charging", lambda s: s.charging),
    ValueRow("Plugged in", lambda s: s.plugged_in),
    ValueRow(
        "Charge state",
        lambda s: None if s.charge_state is ChargeState.UNKNOWN else s.charge_state.value,
    ),
    ValueRow("Charge rate", lambda s: s.charge_rate_kw, "kW"),
    ValueRow("Time to full", lambda s: s.charge_time_remaining_min, "min"),
    ValueRow("Charge limit", lambda s: s.charge_limit_pct, "%"),
    ValueRow("Battery capacity", lambda s: s.battery_capacity_kwh, "kWh"),
    ValueRow("Maximum current", lambda s: s.max_current_a, "A"),
    ValueRow("Smart charging", lambda s: s.smart_charging_enabled),
    ValueRow("Smart charging minimum", lambda s: s.min_charge_limit_pct, "%"),
    ValueRow("Smart charging deadline", lambda s: s.charge_deadline),
    ValueRow(
        "Smart charging status",
        lambda s: s.smart and s.smart.state.value.replace("_", " "),
        stamp=lambda s: (s.smart and s.smart.updated_at) or s.last_seen,
    ),
    ValueRow(
        "Planned start",
        lambda s: s.smart and s.smart.plan_start_at and _clock(s.smart.plan_start_at),
        stamp=lambda s: (s.smart and s.smart.updated_at) or s.last_seen,
    ),
    ValueRow(
        "Planned finish",
        lambda s: s.smart and s.smart.plan_finish_at and _clock(s.smart.plan_finish_at),
        stamp=lambda s: (s.smart and s.smart.updated_at) or s.last_seen,
    ),
    ValueRow(
        "Charge now",
        lambda s: s.smart and s.smart.charging_now,
        stamp=lambda s: (s.smart and s.smart.updated_at) or s.last_seen,
    ),
    ValueRow(
        "Odometer",
        lambda s: s.odometer_km,
        "km",
        lambda s: s.odometer_updated_at or s.last_seen,
    ),
    ValueRow(
        "Location",
        where,
        stamp=lambda s: (s.location and s.location.updated_at) or s.last_seen,
    ),
    ValueRow("Speed", lambda s: s.speed_kmh, "km/h", _signals),
    ValueRow("Fuel", lambda s: s.fuel_level_l, "L", _signals),
    ValueRow("12 V battery", lambda s: s.battery_voltage_v, "V", _signals),
    ValueRow("Unlocked", lambda s: s.unlocked, stamp=_signals),
    ValueRow("Ignition on", lambda s: s.ignition_on, stamp=_signals),
    ValueRow("Reachable", lambda s: s.reachable, stamp=lambda s: s.last_seen),
)


def _clock(moment: datetime) -> str:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).strftime("%Y-%m-%d %H:%M UTC")


# Commands that take a value, and the setting that checks it (as MQTT's controls do).
SETTING_COMMANDS: Mapping[Command, Setting] = MappingProxyType(
    {setting.command: setting for setting in SETTINGS.values()}
)


@dataclass(frozen=True, slots=True)
class SettingForm:
    """A form on a car's page that sets one value (max current, a minimum, a deadline)."""

    command: str
    label: str
    kind: str  # the HTML input type
    value: str
    minimum: str = ""
    maximum: str = ""
    step: str = ""
    unit: str = ""


_SETTING_LABELS: Mapping[Command, tuple[str, str, Getter]] = MappingProxyType(
    {
        Command.SET_MAX_CURRENT: ("Maximum charging current", "A", lambda s: s.max_current_a),
        Command.SET_MIN_CHARGE_LIMIT: (
            "Smart charging minimum",
            "%",
            lambda s: s.min_charge_limit_pct,
        ),
        Command.SET_CHARGE_DEADLINE: ("Smart charging deadline", "", lambda s: s.charge_deadline),
    }
)


def commands_of(state: VehicleState, spec: ProviderSpec) -> list[Command]:
    """Return the commands a car's page offers: those its cloud has and the car can do."""
    return [
        c for c in Command if c in spec.commands and COMMAND_CAPABILITY[c] in state.capabilities
    ]


def setting_of(command: Command, state: VehicleState) -> SettingForm:
    """Return the form that sets `command`'s value, filled with the car's current value."""
    setting = SETTING_COMMANDS[command]
    label, unit, get = _SETTING_LABELS[command]
    current = get(state)
    shown = "" if not isinstance(current, float | int | str) else shown_value(current)
    if setting.kind == "time":
        return SettingForm(command.value, label, "time", shown)

    def bound(value: float | None) -> str:
        return "" if value is None else shown_value(float(value))

    return SettingForm(
        command.value,
        label,
        "number",
        shown,
        minimum=bound(setting.minimum),
        maximum=bound(setting.maximum),
        step=bound(setting.step),
        unit=unit,
    )


def show(value: object, unit: str = "") -> str:
    """Return a value as the pages write it: yes/no, rounded numbers, a unit."""
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        value = f"{value:.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.1f}"
    return f"{value} {unit}".strip()


def ago(seconds: float | None) -> str:
    """Return an age in words: "12 s ago", "5 min ago", "3 h ago", "2 days ago"."""
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def age_of(stamp: datetime | None, now: float) -> float | None:
    """Return how many seconds before `now` (clock time) `stamp` was."""
    if stamp is None:
        return None
    stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return now - stamp.timestamp()


def when(at: float | None) -> str:
    """Return a clock time as the pages write it (UTC, to the minute)."""
    if at is None:
        return "unknown"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True, slots=True)
class Shown:
    """One value of a car as a page shows it."""

    label: str
    text: str
    age: str


def values_of(state: VehicleState, now: float) -> list[Shown]:
    """Every value `state` has, with its age (values the car never reported are left out)."""
    return [
        Shown(row.label, show(value, row.unit), ago(age_of(row.stamp(state), now)))
        for row in VALUE_ROWS
        if (value := row.get(state)) is not None
    ]


@dataclass(frozen=True, slots=True)
class CarLine:
    """A car as the overview lists it."""

    key: str
    name: str
    account: str
    battery: str
    range: str
    charging: str
    plugged_in: str
    location: str | None
    map_url: str | None
    last_seen: str
    stale: bool
    waiting: bool  # known from an earlier run, not read yet


def car_line(vehicle: KnownVehicle, account: KnownAccount, now: float) -> CarLine:
    """Return how the overview shows `vehicle`."""
    s = vehicle.state
    fix = s.location
    map_url = (
        f"https://www.openstreetmap.org/?mlat={fix.latitude:.5f}&mlon={fix.longitude:.5f}"
        f"#map=15/{fix.latitude:.5f}/{fix.longitude:.5f}"
        if fix is not None
        else None
    )
    return CarLine(
        key=vehicle.key,
        name=vehicle.name,
        account=account.name,
        battery=show(s.battery_pct, "%"),
        range=show(s.range_km, "km"),
        charging=show(s.charging),
        plugged_in=show(s.plugged_in),
        location=where(s),
        map_url=map_url,
        last_seen=ago(age_of(s.last_seen, now)),
        stale=account.stale or account.link is LinkState.RELINK_REQUIRED,
        waiting=vehicle.placeholder,
    )


@dataclass(frozen=True, slots=True)
class Step:
    """A step of a command, as a car's page lists it."""

    command: str
    status: str
    final: bool
    at: str
    reason: str | None


def step_of(result: CommandResult, now: float) -> Step:
    """Return how a car's page shows a command's step."""
    shown = result.command.replace("_", " ")
    return Step(
        command=f"{shown} {result.value}" if result.value is not None else shown,
        status=result.status.value,
        final=result.status.final,
        at=ago(age_of(result.at, now)),
        reason=result.reason,
    )


# ---- history ------------------------------------------------------------------------------

HISTORY_ROWS = 20  # sessions and trips a car's page lists, newest first


@dataclass(frozen=True, slots=True)
class SessionLine:
    """A charging session, as a car's page lists it."""

    start: str
    end: str
    duration: str
    energy: str
    source: str
    soc: str
    peak: str
    mean: str
    place: str
    by_command: str


@dataclass(frozen=True, slots=True)
class TripLine:
    """A trip, as a car's page lists it."""

    start: str
    end: str
    duration: str
    distance: str
    start_place: str
    end_place: str
    source: str


@dataclass(frozen=True, slots=True)
class HistoryView:
    """A car's history on its page; `readable` False when the database cannot be read now."""

    readable: bool
    sessions: tuple[SessionLine, ...] = ()
    trips: tuple[TripLine, ...] = ()
    energy: EnergyChart | None = None


def session_line(session: Session, tz: tzinfo | None = None) -> SessionLine:
    """Return how a car's page shows a charging session (times in the bridge's zone)."""
    ended = session.ended_at
    return SessionLine(
        start=clock_text(session.started_at, tz),
        end="plugged in" if ended is None else clock_text(ended, tz),
        duration="" if ended is None else duration_text(ended - session.started_at),
        energy=number_text(session.energy_kwh),
        source=SOURCE_WORDS[session.energy_source],
        soc=soc_text(session.soc_from, session.soc_to),
        peak=number_text(session.peak_kw),
        mean=number_text(session.mean_kw),
        place=place_text(place_of(session.latitude, session.longitude, session.zone)),
        by_command="yes" if session.by_command else "no",
    )


def trip_line(trip: Trip, tz: tzinfo | None = None) -> TripLine:
    """Return how a car's page shows a trip."""
    ended = trip.ended_at
    return TripLine(
        start=clock_text(trip.started_at, tz),
        end="under way" if ended is None else clock_text(ended, tz),
        duration="" if ended is None else duration_text(ended - trip.started_at),
        distance=number_text(distance_of(trip)),
        start_place=place_text(
            place_of(trip.start_latitude, trip.start_longitude, trip.start_zone)
        ),
        end_place=place_text(place_of(trip.end_latitude, trip.end_longitude, trip.end_zone)),
        source=trip.source,
    )


def history_of(
    sessions: Sequence[Session],
    trips: Sequence[Trip],
    energy: EnergyChart,
    tz: tzinfo | None = None,
) -> HistoryView:
    """Return a car's history as its page shows it: the newest sessions and trips first."""
    newest_sessions = sorted(sessions, key=lambda s: (s.started_at, s.id), reverse=True)
    newest_trips = sorted(trips, key=lambda t: (t.started_at, t.id), reverse=True)
    return HistoryView(
        readable=True,
        sessions=tuple(session_line(s, tz) for s in newest_sessions[:HISTORY_ROWS]),
        trips=tuple(trip_line(t, tz) for t in newest_trips[:HISTORY_ROWS]),
        energy=energy,
    )
