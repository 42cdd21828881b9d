"""The Home Assistant entity table: one frozen row per entity, and what each control sends.

Adding an entity means adding a row here. `discovery.py` turns rows into payloads and never
names an entity itself. Classes, state classes and units keep to the combinations Home Assistant
validates (its `DEVICE_CLASS_UNITS` and `DEVICE_CLASS_STATE_CLASSES`); tests hold every row to them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Literal

from car2mqtt.models import (
    Capability,
    ChargeState,
    CommandStatus,
    LocationMode,
    SmartChargingState,
    VehicleState,
)
from car2mqtt.providers.base import Command

Platform = Literal[
    "sensor", "binary_sensor", "switch", "button", "number", "text", "time", "device_tracker"
]
StateClass = Literal["measurement", "total", "total_increasing"]
# Which topic feeds an entity: resolved to a real topic per device by discovery.py.
Source = Literal[
    "state",
    "location",
    "command_result",
    "history",
    "bridge_state",
    "bridge_history",
    "bridge_health",
]
# Rows fed by the history recorder exist only where history is recorded.
HISTORY_SOURCES: frozenset[Source] = frozenset({"history", "bridge_history"})
# "bridge": the entity stays available while the vehicle is marked offline, because it is
# what explains why (a re-link is needed, the data is old, the last command failed).
Availability = Literal["vehicle", "bridge"]


@dataclass(frozen=True, slots=True)
class ValueContext:
    """What a row's value may need beyond the vehicle's state."""

    now: datetime
    relink_required: bool = False


ValueFn = Callable[[VehicleState, ValueContext], object]
HaVersion = tuple[int, int]  # (year, month) of a Home Assistant release


@dataclass(frozen=True, slots=True)
class Setting:
    """What a `number`, `text` or `time` control sends, and the values it accepts."""

    command: Command
    kind: Literal["number", "time"]
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None


def _always(state: VehicleState) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class EntityDescription:
    """One Home Assistant entity: how it is declared, when it exists, where its state comes from.

    `name=None` leaves the name out, so Home Assistant names the entity after its device class
    (translated). `value` fills field `key` of the state JSON; `state_field` is the field the
    entity reads when it is not its own `key`.
    """

    key: str
    platform: Platform
    name: str | None = None
    device_class: str | None = None
    state_class: StateClass | None = None
    unit: str | None = None
    entity_category: Literal["diagnostic", "config"] | None = None
    icon: str | None = None
    enabled_by_default: bool = True
    options: tuple[str, ...] = ()
    precision: int | None = None  # rounding of the published value, and the display precision
    applies: Callable[[VehicleState], bool] = _always
    value: ValueFn | None = None
    state_topic: Source | None = "state"
    state_field: str | None = None
    attributes_topic: Source | None = None
    availability: Availability = "vehicle"
    control: str | None = None
    payload_on: str | None = None
    payload_off: str | None = None
    payload_press: str | None = None
    source_type: str | None = None
    setting: Setting | None = None  # a control that takes a value (number, text, time)
    # The Home Assistant releases that have the platform (None: every supported one).
    ha_since: HaVersion | None = None
    ha_before: HaVersion | None = None


_COMMAND_CAPABILITIES = frozenset(
    {
        Capability.START_CHARGING,
        Capability.STOP_CHARGING,
        Capability.REFRESH,
        Capability.SET_MAX_CURRENT,
        Capability.SMART_CHARGING,
    }
)

# Home Assistant has the MQTT `time` platform from 2026.4; before, a time is a text entity.
TIME_PLATFORM_SINCE: HaVersion = (2026, 4)
# The clouds report no bounds for a car: 6 A is the lowest current IEC 61851 chargers signal,
# and 48 A the most a car draws on AC (a Tesla, the one make whose current a cloud sets today).
MAX_CURRENT = Setting(Command.SET_MAX_CURRENT, "number", minimum=6, maximum=48, step=1)
MIN_CHARGE_LIMIT = Setting(Command.SET_MIN_CHARGE_LIMIT, "number", minimum=0, maximum=100, step=1)
CHARGE_DEADLINE = Setting(Command.SET_CHARGE_DEADLINE, "time")
# "HH:MM", as the text entity's pattern (HA's time entity sends "HH:MM:SS"), or empty: HA checks
# its own state against the pattern too, and a car with no deadline shows "" (an error else).
DEADLINE_PATTERN = r"^(([01][0-9]|2[0-3]):[0-5][0-9])?$"


def _smart(state: VehicleState) -> bool:
    return Capability.SMART_CHARGING in state.capabilities


def _plan_value(state: VehicleState, attribute: str) -> object:
    return getattr(state.smart, attribute) if state.smart is not None else None


def _reports_charging(state: VehicleState) -> bool:
    # Tied to the car reporting charge data at all, never to values that exist only while it
    # charges: entities must not appear and disappear as charging starts and stops.
    return state.plugged_in is not None or state.charge_state is not ChargeState.UNKNOWN


def _data_age_min(state: VehicleState, ctx: ValueContext) -> float | None:
    if state.last_seen is None:
        return None
    seen = state.last_seen if state.last_seen.tzinfo else state.last_seen.replace(tzinfo=UTC)
    now = ctx.now if ctx.now.tzinfo else ctx.now.replace(tzinfo=UTC)
    return max(0.0, (now - seen).total_seconds() / 60)


VEHICLE_ENTITIES: tuple[EntityDescription, ...] = (
    EntityDescription(
        key="battery",
        platform="sensor",
        device_class="battery",
        state_class="measurement",
        unit="%",
        precision=0,
        applies=lambda s: s.battery_pct is not None,
        value=lambda s, _: s.battery_pct,
    ),
    EntityDescription(
        key="range",
        platform="sensor",
        name="Range",
        device_class="distance",
        state_class="measurement",
        unit="km",
        icon="mdi:map-marker-distance",
        precision=0,
        applies=lambda s: s.range_km is not None,
        value=lambda s, _: s.range_km,
    ),
    EntityDescription(
        key="charging",
        platform="binary_sensor",
        device_class="battery_charging",
        applies=lambda s: s.charging is not None or _reports_charging(s),
        value=lambda s, _: s.charging,
    ),
    EntityDescription(
        key="plugged_in",
        platform="binary_sensor",
        name="Plugged in",
        device_class="plug",
        applies=lambda s: s.plugged_in is not None,
        value=lambda s, _: s.plugged_in,
    ),
    EntityDescription(
        key="charge_state",
        platform="sensor",
        name="Charge state",
        device_class="enum",
        icon="mdi:ev-station",
        options=tuple(c.value for c in ChargeState),
        applies=_reports_charging,
        value=lambda s, _: s.charge_state,
    ),
    EntityDescription(
        key="charge_rate",
        platform="sensor",
        name="Charge rate",
        device_class="power",
        state_class="measurement",
        unit="kW",
        precision=1,
        applies=_reports_charging,
        value=lambda s, _: s.charge_rate_kw,
    ),
    EntityDescription(
        key="charge_time_remaining",
        platform="sensor",
        name="Charge time remaining",
        device_class="duration",
        state_class="measurement",
        unit="min",
        precision=0,
        applies=_reports_charging,
        value=lambda s, _: s.charge_time_remaining_min,
    ),
    EntityDescription(
        key="charge_limit",
        platform="sensor",
        name="Charge limit",
        device_class="battery",
        state_class="measurement",
        unit="%",
        icon="mdi:battery-charging-high",
        precision=0,
        applies=lambda s: s.charge_limit_pct is not None,
        value=lambda s, _: s.charge_limit_pct,
    ),
    EntityDescription(
        key="battery_capacity",
        platform="sensor",
        name="Battery capacity",
        device_class="energy_storage",
        state_class="measurement",
        unit="kWh",
        entity_category="diagnostic",
        precision=1,
        applies=lambda s: s.battery_capacity_kwh is not None,
        value=lambda s, _: s.battery_capacity_kwh,
    ),
    EntityDescription(
        key="max_current",
        platform="sensor",
        name="Max charging current",
        device_class="current",
        state_class="measurement",
        unit="A",
        entity_category="diagnostic",
        precision=1,
        # A car that can set it gets the number below instead, under the same name.
        applies=lambda s: (
            s.max_current_a is not None and Capability.SET_MAX_CURRENT not in s.capabilities
        ),
        value=lambda s, _: s.max_current_a,
    ),
    EntityDescription(
        key="max_current_setting",
        platform="number",
        name="Max charging current",
        device_class="current",
        unit="A",
        entity_category="config",
        icon="mdi:current-ac",
        applies=lambda s: Capability.SET_MAX_CURRENT in s.capabilities,
        state_field="max_current",
        control="max_current",
        setting=MAX_CURRENT,
    ),
    EntityDescription(
        key="smart_charging",
        platform="switch",
        name="Smart charging",
        icon="mdi:home-lightning-bolt-outline",
        entity_category="config",
        applies=_smart,
        value=lambda s, _: s.smart_charging_enabled,
        control="smart_charging",
        payload_on="ON",
        payload_off="OFF",
    ),
    EntityDescription(
        key="min_charge_limit",
        platform="number",
        name="Smart charging minimum",
        device_class="battery",
        unit="%",
        entity_category="config",
        icon="mdi:battery-arrow-up-outline",
        precision=0,
        applies=_smart,
        value=lambda s, _: s.min_charge_limit_pct,
        control="min_charge_limit",
        setting=MIN_CHARGE_LIMIT,
    ),
    EntityDescription(
        key="charge_deadline",
        platform="time",
        name="Smart charging deadline",
        entity_category="config",
        icon="mdi:clock-end",
        applies=_smart,
        value=lambda s, _: s.charge_deadline,
        control="charge_deadline",
        setting=CHARGE_DEADLINE,
        ha_since=TIME_PLATFORM_SINCE,
    ),
    EntityDescription(
        key="charge_deadline_text",
        platform="text",
        name="Smart charging deadline",
        entity_category="config",
        icon="mdi:clock-end",
        applies=_smart,
        state_field="charge_deadline",
        control="charge_deadline",
        setting=CHARGE_DEADLINE,
        ha_before=TIME_PLATFORM_SINCE,
    ),
    EntityDescription(
        key="smart_charging_status",
        platform="sensor",
        name="Smart charging status",
        device_class="enum",
        icon="mdi:home-lightning-bolt",
        options=tuple(c.value for c in SmartChargingState),
        applies=_smart,
        value=lambda s, _: _plan_value(s, "state"),
    ),
    EntityDescription(
        key="smart_charging_start",
        platform="sensor",
        name="Smart charging planned start",
        device_class="timestamp",
        icon="mdi:clock-start",
        applies=_smart,
        value=lambda s, _: _plan_value(s, "plan_start_at"),
    ),
    EntityDescription(
        key="smart_charging_finish",
        platform="sensor",
        name="Smart charging planned finish",
        device_class="timestamp",
        icon="mdi:clock-check-outline",
        applies=_smart,
        value=lambda s, _: _plan_value(s, "plan_finish_at"),
    ),
    EntityDescription(
        key="charge_now_active",
        platform="binary_sensor",
        name="Charge now active",
        device_class="running",
        icon="mdi:lightning-bolt",
        applies=_smart,
        value=lambda s, _: _plan_value(s, "charging_now"),
    ),
    EntityDescription(
        key="charge_now",
        platform="button",
        name="Charge now",
        icon="mdi:lightning-bolt",
        applies=_smart,
        state_topic=None,
        control="charge_now",
        payload_press="START",
    ),
    EntityDescription(
        key="end_charge_now",
        platform="button",
        name="End charge now",
        icon="mdi:lightning-bolt-outline",
        applies=_smart,
        state_topic=None,
        control="charge_now",
        payload_press="END",
    ),
    EntityDescription(
        key="odometer",
        platform="sensor",
        name="Odometer",
        device_class="distance",
        # total, not total_increasing: clouds do send small regressions, which
        # total_increasing would read as a meter reset.
        state_class="total",
        unit="km",
        icon="mdi:counter",
        precision=1,
        applies=lambda s: Capability.ODOMETER in s.capabilities or s.odometer_km is not None,
        value=lambda s, _: s.odometer_km,
    ),
    EntityDescription(
        key="location",
        platform="device_tracker",
        name="Location",
        icon="mdi:car",
        # `privacy.location: off`: no tracker at all. In `zone` mode discovery reads the zone's
        # name from the location topic instead (discovery.py).
        applies=lambda s: (
            s.location_mode is not LocationMode.OFF
            and (Capability.LOCATION in s.capabilities or s.location is not None or bool(s.zone))
        ),
        state_topic=None,
        attributes_topic="location",
        source_type="gps",
    ),
    EntityDescription(
        key="last_seen",
        platform="sensor",
        name="Last seen",
        device_class="timestamp",
        entity_category="diagnostic",
        applies=lambda s: s.last_seen is not None,
        value=lambda s, _: s.last_seen,
        availability="bridge",
    ),
    EntityDescription(
        key="reachable",
        platform="binary_sensor",
        name="Reachable",
        device_class="connectivity",
        entity_category="diagnostic",
        applies=lambda s: s.reachable is not None,
        value=lambda s, _: s.reachable,
    ),
    EntityDescription(
        key="data_age",
        platform="sensor",
        name="Data age",
        device_class="duration",
        state_class="measurement",
        unit="min",
        entity_category="diagnostic",
        icon="mdi:timer-sand",
        precision=0,
        applies=lambda s: s.last_seen is not None,
        value=_data_age_min,
        availability="bridge",
    ),
    EntityDescription(
        key="relink_required",
        platform="binary_sensor",
        name="Re-link needed",
        device_class="problem",
        entity_category="diagnostic",
        value=lambda _, ctx: ctx.relink_required,
        availability="bridge",
    ),
    EntityDescription(
        key="speed",
        platform="sensor",
        device_class="speed",
        state_class="measurement",
        unit="km/h",
        precision=0,
        applies=lambda s: s.speed_kmh is not None,
        value=lambda s, _: s.speed_kmh,
    ),
    EntityDescription(
        key="fuel_level",
        platform="sensor",
        name="Fuel level",
        device_class="volume_storage",
        state_class="measurement",
        unit="L",
        icon="mdi:gas-station",
        precision=1,
        applies=lambda s: s.fuel_level_l is not None,
        value=lambda s, _: s.fuel_level_l,
    ),
    EntityDescription(
        key="battery_voltage",
        platform="sensor",
        name="Battery voltage",
        device_class="voltage",
        state_class="measurement",
        unit="V",
        entity_category="diagnostic",
        precision=2,
        applies=lambda s: s.battery_voltage_v is not None,
        value=lambda s, _: s.battery_voltage_v,
    ),
    EntityDescription(
        key="lock",
        platform="binary_sensor",
        device_class="lock",  # on means unlocked
        applies=lambda s: s.unlocked is not None,
        value=lambda s, _: s.unlocked,
    ),
    EntityDescription(
        key="ignition",
        platform="binary_sensor",
        name="Ignition",
        device_class="running",
        icon="mdi:engine",
        applies=lambda s: s.ignition_on is not None,
        value=lambda s, _: s.ignition_on,
    ),
    EntityDescription(
        key="charging_control",
        platform="switch",
        # Not "Charging": the binary sensor is already called that (after its device class).
        name="Charging control",
        icon="mdi:ev-station",
        # One capability alone would make a switch that can only move one way.
        applies=lambda s: {Capability.START_CHARGING, Capability.STOP_CHARGING} <= s.capabilities,
        state_field="charging",
        control="charging",
        payload_on="ON",
        payload_off="OFF",
    ),
    EntityDescription(
        key="refresh",
        platform="button",
        name="Refresh",
        icon="mdi:refresh",
        applies=lambda s: Capability.REFRESH in s.capabilities,
        state_topic=None,
        control="refresh",
        payload_press="PRESS",
    ),
    # From the history recorder (its own topic): the Energy dashboard's per-device figure.
    EntityDescription(
        key="energy_charged",
        platform="sensor",
        name="Energy charged",
        device_class="energy",
        state_class="total_increasing",  # kept in the history database: never goes down
        unit="kWh",
        icon="mdi:battery-charging-100",
        precision=2,
        applies=_reports_charging,
        state_topic="history",
    ),
    EntityDescription(
        key="last_session_energy",
        platform="sensor",
        name="Last session energy",
        state_class="measurement",
        unit="kWh",
        icon="mdi:battery-plus-outline",
        precision=2,
        applies=_reports_charging,
        state_topic="history",
    ),
    EntityDescription(
        key="last_session_duration",
        platform="sensor",
        name="Last session duration",
        device_class="duration",
        state_class="measurement",
        unit="min",
        precision=0,
        applies=_reports_charging,
        state_topic="history",
    ),
    EntityDescription(
        key="last_trip_distance",
        platform="sensor",
        name="Last trip distance",
        device_class="distance",
        state_class="measurement",
        unit="km",
        icon="mdi:map-marker-path",
        precision=1,
        applies=lambda s: Capability.ODOMETER in s.capabilities or s.odometer_km is not None,
        state_topic="history",
    ),
    EntityDescription(
        key="last_command",
        platform="sensor",
        name="Last command",
        # Only for cars that take commands: a read-only car has no command to follow.
        applies=lambda s: bool(s.capabilities & _COMMAND_CAPABILITIES),
        device_class="enum",
        icon="mdi:console-line",
        options=tuple(c.value for c in CommandStatus),
        state_topic="command_result",
        state_field="status",
        attributes_topic="command_result",
        availability="bridge",
    ),
)

# The bridge device's entities, all read from the bridge state JSON.
BRIDGE_ENTITIES: tuple[EntityDescription, ...] = (
    EntityDescription(
        key="version",
        platform="sensor",
        name="Version",
        entity_category="diagnostic",
        icon="mdi:tag-outline",
        state_topic="bridge_state",
        availability="bridge",
    ),
    EntityDescription(
        key="vehicles",
        platform="sensor",
        name="Vehicles",
        state_class="measurement",
        icon="mdi:car-multiple",
        precision=0,
        state_topic="bridge_state",
        availability="bridge",
    ),
    EntityDescription(
        key="api_calls",
        platform="sensor",
        name="API calls",
        # Counted since the bridge started: total_increasing reads the restart as a reset.
        state_class="total_increasing",
        entity_category="diagnostic",
        icon="mdi:api",
        precision=0,
        state_topic="bridge_state",
        availability="bridge",
    ),
    EntityDescription(
        key="problem",
        platform="binary_sensor",
        name="Re-link needed",
        device_class="problem",
        state_topic="bridge_state",
        availability="bridge",
    ),
    # How the clouds' changes arrive: pushed (webhooks), or polled because pushes stopped
    # ("degraded"), or polled by choice ("off").
    EntityDescription(
        key="push",
        platform="sensor",
        name="Push",
        device_class="enum",
        options=("active", "degraded", "off"),
        entity_category="diagnostic",
        icon="mdi:webhook",
        state_topic="bridge_state",
        availability="bridge",
    ),
    EntityDescription(
        key="history_dropped",
        platform="sensor",
        name="History dropped",
        # Counted since the bridge started, as API calls are.
        state_class="total_increasing",
        entity_category="diagnostic",
        icon="mdi:database-alert-outline",
        precision=0,
        state_topic="bridge_history",
        state_field="dropped",
        availability="bridge",
    ),
    EntityDescription(
        key="push_last_delivery",
        platform="sensor",
        name="Last push",
        device_class="timestamp",
        entity_category="diagnostic",
        icon="mdi:webhook",
        state_topic="bridge_state",
        availability="bridge",
    ),
    # From the health topic (bridge/health.py), refreshed every minute.
    EntityDescription(
        key="uptime",
        platform="sensor",
        name="Uptime",
        device_class="duration",
        state_class="measurement",
        unit="s",
        entity_category="diagnostic",
        precision=0,
        state_topic="bridge_health",
        state_field="uptime_s",
        availability="bridge",
    ),
    EntityDescription(
        key="memory",
        platform="sensor",
        name="Memory",
        device_class="data_size",
        state_class="measurement",
        unit="MB",
        entity_category="diagnostic",
        icon="mdi:memory",
        precision=1,
        state_topic="bridge_health",
        state_field="rss_mb",
        availability="bridge",
    ),
    EntityDescription(
        key="mqtt_reconnects",
        platform="sensor",
        name="MQTT reconnects",
        # Counted since the bridge started, as API calls are.
        state_class="total_increasing",
        entity_category="diagnostic",
        icon="mdi:lan-disconnect",
        precision=0,
        state_topic="bridge_health",
        state_field="mqtt.reconnects",
        availability="bridge",
    ),
    EntityDescription(
        key="mqtt_sent",
        platform="sensor",
        name="MQTT messages sent",
        state_class="total_increasing",
        entity_category="diagnostic",
        icon="mdi:upload-network-outline",
        precision=0,
        state_topic="bridge_health",
        state_field="mqtt.sent",
        availability="bridge",
    ),
    # The API budget (bridge/budget.py), from the health topic: every account's calls summed,
    # the least budget left and the longest poll interval (each account's: the health JSON).
    EntityDescription(
        key="api_calls_hour",
        platform="sensor",
        name="API calls, last hour",
        state_class="measurement",
        entity_category="diagnostic",
        icon="mdi:api",
        precision=0,
        state_topic="bridge_health",
        state_field="budget.calls_hour",
        availability="bridge",
    ),
    EntityDescription(
        key="api_calls_today",
        platform="sensor",
        name="API calls today",
        state_class="total_increasing",
        entity_category="diagnostic",
        icon="mdi:api",
        precision=0,
        state_topic="bridge_health",
        state_field="budget.calls_today",
        availability="bridge",
    ),
    EntityDescription(
        key="api_calls_month",
        platform="sensor",
        name="API calls this month",
        state_class="total_increasing",
        entity_category="diagnostic",
        icon="mdi:api",
        precision=0,
        state_topic="bridge_health",
        state_field="budget.calls_month",
        availability="bridge",
    ),
    EntityDescription(
        key="api_budget_left",
        platform="sensor",
        name="API budget left",
        state_class="measurement",
        entity_category="diagnostic",
        icon="mdi:gauge",
        precision=0,
        state_topic="bridge_health",
        state_field="budget.left",
        availability="bridge",
    ),
    EntityDescription(
        key="poll_interval",
        platform="sensor",
        name="Poll interval",
        device_class="duration",
        state_class="measurement",
        unit="s",
        entity_category="diagnostic",
        icon="mdi:timer-sync-outline",
        precision=0,
        state_topic="bridge_health",
        state_field="budget.poll_interval_s",
        availability="bridge",
    ),
)

# Control name -> accepted payload (upper case, see discovery.parse_command) -> command.
CONTROLS: Mapping[str, Mapping[str, Command]] = MappingProxyType(
    {
        "charging": MappingProxyType({"ON": Command.START_CHARGING, "OFF": Command.STOP_CHARGING}),
        "refresh": MappingProxyType({"PRESS": Command.REFRESH}),
        "smart_charging": MappingProxyType(
            {"ON": Command.ENABLE_SMART_CHARGING, "OFF": Command.DISABLE_SMART_CHARGING}
        ),
        # One control, two buttons: a newer press supersedes the older one's action.
        "charge_now": MappingProxyType(
            {"START": Command.CHARGE_NOW, "END": Command.END_CHARGE_NOW}
        ),
    }
)

# Control name -> the setting it takes a value for (number, text and time entities).
SETTINGS: Mapping[str, Setting] = MappingProxyType(
    {row.control: row.setting for row in VEHICLE_ENTITIES if row.control and row.setting}
)

# The capability a vehicle must report before the bridge sends it a command.
COMMAND_CAPABILITY: Mapping[Command, Capability] = MappingProxyType(
    {
        Command.START_CHARGING: Capability.START_CHARGING,
        Command.STOP_CHARGING: Capability.STOP_CHARGING,
        Command.REFRESH: Capability.REFRESH,
        Command.SET_MAX_CURRENT: Capability.SET_MAX_CURRENT,
        Command.ENABLE_SMART_CHARGING: Capability.SMART_CHARGING,
        Command.DISABLE_SMART_CHARGING: Capability.SMART_CHARGING,
        Command.SET_MIN_CHARGE_LIMIT: Capability.SMART_CHARGING,
        Command.SET_CHARGE_DEADLINE: Capability.SMART_CHARGING,
        Command.CHARGE_NOW: Capability.SMART_CHARGING,
        Command.END_CHARGE_NOW: Capability.SMART_CHARGING,
    }
)
