"""The entity table holds to Home Assistant's rules for classes, units and controls."""

from __future__ import annotations

import pytest

from car2mqtt.ha.discovery import applicable_keys
from car2mqtt.ha.entities import (
    BRIDGE_ENTITIES,
    COMMAND_CAPABILITY,
    CONTROLS,
    SETTINGS,
    VEHICLE_ENTITIES,
    EntityDescription,
)
from car2mqtt.models import ChargeState, CommandStatus
from car2mqtt.providers.base import Command
from tests.ha.cars import enode_car, xee_car

ALL_ROWS = VEHICLE_ENTITIES + BRIDGE_ENTITIES
ANY_STATE_CLASS = frozenset({"measurement", "total", "total_increasing"})

# From ha-mqtt-discovery.md §2.9 (HA's DEVICE_CLASS_UNITS / DEVICE_CLASS_STATE_CLASSES):
# device_class -> (allowed units, allowed state classes). None means "must be absent".
SENSOR_RULES: dict[str, tuple[frozenset[str | None], frozenset[str | None]]] = {
    "battery": (frozenset({"%"}), frozenset({"measurement"})),
    "distance": (
        frozenset({"km", "m", "cm", "mm", "mi", "nmi", "yd", "in", "ft"}),
        ANY_STATE_CLASS,
    ),
    "power": (
        frozenset({"mW", "W", "kW", "MW", "GW", "TW", "BTU/h"}),
        frozenset({"measurement"}),
    ),
    "energy": (frozenset({"Wh", "kWh", "MWh"}), frozenset({"total", "total_increasing"})),
    "energy_storage": (frozenset({"Wh", "kWh", "MWh"}), frozenset({"measurement"})),
    "energy_distance": (
        frozenset({"kWh/100km", "Wh/km", "mi/kWh", "km/kWh"}),
        frozenset({"measurement"}),
    ),
    "voltage": (frozenset({"V", "mV"}), frozenset({"measurement"})),
    "current": (frozenset({"A", "mA"}), frozenset({"measurement"})),
    "duration": (frozenset({"d", "h", "min", "s"}), ANY_STATE_CLASS),
    "temperature": (frozenset({"°C", "°F", "K"}), frozenset({"measurement"})),
    "pressure": (frozenset({"bar", "kPa", "psi"}), frozenset({"measurement"})),
    "speed": (frozenset({"km/h", "mph"}), frozenset({"measurement"})),
    "volume_storage": (frozenset({"L", "gal"}), frozenset({"measurement"})),
    "data_size": (frozenset({"B", "kB", "MB", "GB", "KiB", "MiB", "GiB"}), ANY_STATE_CLASS),
    "timestamp": (frozenset({None}), frozenset({None})),
    "enum": (frozenset({None}), frozenset({None})),
}
# §2.10: binary sensor classes and what "on" means for each.
BINARY_SENSOR_CLASSES = frozenset(
    {
        "battery_charging",
        "plug",
        "lock",
        "door",
        "window",
        "opening",
        "connectivity",
        "problem",
        "running",
        "update",
    }
)


def ids(row: EntityDescription) -> str:
    return f"{row.platform}.{row.key}"


@pytest.mark.parametrize("rows", [VEHICLE_ENTITIES, BRIDGE_ENTITIES])
def test_keys_are_unique_and_id_safe(rows: tuple[EntityDescription, ...]) -> None:
    keys = [row.key for row in rows]
    assert len(keys) == len(set(keys))
    assert all(key.isidentifier() and key == key.lower() for key in keys)


@pytest.mark.parametrize("row", [r for r in ALL_ROWS if r.platform == "sensor"], ids=ids)
def test_sensor_class_unit_and_state_class_are_a_valid_combination(
    row: EntityDescription,
) -> None:
    if row.device_class is None:
        return
    units, state_classes = SENSOR_RULES[row.device_class]
    assert row.unit in units
    assert row.state_class in state_classes


@pytest.mark.parametrize("row", [r for r in ALL_ROWS if r.platform == "sensor"], ids=ids)
def test_numeric_sensors_keep_statistics(row: EntityDescription) -> None:
    if row.unit is not None:
        assert row.state_class is not None


@pytest.mark.parametrize("row", [r for r in ALL_ROWS if r.device_class == "enum"], ids=ids)
def test_enum_sensors_list_options_and_nothing_numeric(row: EntityDescription) -> None:
    assert row.options
    assert all(isinstance(option, str) for option in row.options)
    assert (row.unit, row.state_class, row.precision) == (None, None, None)


def test_enum_options_cover_every_value() -> None:
    rows = {row.key: row for row in VEHICLE_ENTITIES}
    assert rows["charge_state"].options == tuple(c.value for c in ChargeState)
    assert rows["last_command"].options == tuple(c.value for c in CommandStatus)


@pytest.mark.parametrize(
    "row", [r for r in ALL_ROWS if r.platform not in ("sensor", "number")], ids=ids
)
def test_only_sensors_carry_units_and_state_classes(row: EntityDescription) -> None:
    assert (row.unit, row.state_class, row.options, row.precision) == (None, None, (), None)


# HA's NumberDeviceClass units (DEVICE_CLASS_UNITS of the number domain), for the classes used.
NUMBER_UNITS = {"current": {"A", "mA"}, "battery": {"%"}}


@pytest.mark.parametrize("row", [r for r in ALL_ROWS if r.platform == "number"], ids=ids)
def test_numbers_take_a_setting_in_a_unit_their_class_allows(row: EntityDescription) -> None:
    assert row.unit in NUMBER_UNITS[str(row.device_class)]
    assert (row.state_class, row.options) == (None, ())
    assert row.setting is not None
    assert row.setting.kind == "number"
    assert row.setting.minimum is not None
    assert row.setting.maximum is not None
    assert row.setting.minimum < row.setting.maximum
    assert row.control in SETTINGS


@pytest.mark.parametrize("row", [r for r in ALL_ROWS if r.platform in ("text", "time")], ids=ids)
def test_times_take_a_time_setting(row: EntityDescription) -> None:
    assert row.setting is not None
    assert row.setting.kind == "time"
    assert SETTINGS[str(row.control)] is row.setting


@pytest.mark.parametrize("row", [r for r in ALL_ROWS if r.platform == "binary_sensor"], ids=ids)
def test_binary_sensor_classes_are_known(row: EntityDescription) -> None:
    assert row.device_class in BINARY_SENSOR_CLASSES


@pytest.mark.parametrize("row", [r for r in ALL_ROWS if r.options], ids=ids)
def test_options_only_on_enums(row: EntityDescription) -> None:
    assert row.device_class == "enum"


@pytest.mark.parametrize("row", ALL_ROWS, ids=ids)
def test_unnamed_rows_take_their_device_class_name(row: EntityDescription) -> None:
    if row.name is None:
        assert row.device_class is not None
        assert row.device_class != "enum"


@pytest.mark.parametrize("ha_version", [None, (2026, 4)])
def test_friendly_names_all_differ(ha_version: tuple[int, int] | None) -> None:
    # The charging switch and the charging binary sensor once were both "Charging". Rows
    # that never appear together (the max current sensor and number) may share a name.
    class_names = {"battery": "Battery", "battery_charging": "Charging", "lock": "Lock"}
    class_names["speed"] = "Speed"
    for car in (enode_car(), xee_car(), enode_car(capabilities=frozenset())):
        keys = applicable_keys(car, ha_version)
        shown = [row for row in VEHICLE_ENTITIES if row.key in keys]
        names = [row.name or class_names[str(row.device_class)] for row in shown]
        assert {name for name in names if names.count(name) > 1} == set()
    rows = {row.key: row for row in VEHICLE_ENTITIES}
    assert rows["charging_control"].name == "Charging control"


def test_rows_with_values_feed_the_state_topic() -> None:
    for row in VEHICLE_ENTITIES:
        if row.value is not None:
            assert row.state_topic == "state", row.key
            assert row.state_field is None, row.key


def test_every_state_field_read_is_a_field_written() -> None:
    writers = {row.key for row in VEHICLE_ENTITIES if row.value is not None}
    for row in VEHICLE_ENTITIES:
        if row.state_topic == "state":
            assert (row.state_field or row.key) in writers, row.key


def test_bridge_rows_read_the_bridge_state() -> None:
    assert [row.key for row in BRIDGE_ENTITIES] == [
        "version",
        "vehicles",
        "api_calls",
        "problem",
        "push",
        "history_dropped",
        "push_last_delivery",
        "uptime",
        "memory",
        "mqtt_reconnects",
        "mqtt_sent",
        "api_calls_hour",
        "api_calls_today",
        "api_calls_month",
        "api_budget_left",
        "poll_interval",
    ]
    for row in BRIDGE_ENTITIES:
        assert row.state_topic in ("bridge_state", "bridge_history", "bridge_health")
        assert row.value is None
        assert row.control is None
        assert row.availability == "bridge"


def test_controls_name_their_commands() -> None:
    control_rows = [row for row in VEHICLE_ENTITIES if row.platform in ("switch", "button")]
    assert {row.control for row in control_rows} == set(CONTROLS)
    setting_rows = [row for row in VEHICLE_ENTITIES if row.setting is not None]
    assert {row.control for row in setting_rows} == set(SETTINGS)
    assert not set(SETTINGS) & set(CONTROLS)
    for control, payloads in CONTROLS.items():
        # One control may be several buttons (charge now: START and END), each one payload.
        rows = [row for row in control_rows if row.control == control]
        declared = [p for r in rows for p in (r.payload_on, r.payload_off, r.payload_press) if p]
        assert sorted(declared) == sorted(payloads), control
        assert all(payload == payload.upper() for payload in payloads)


def test_charging_switch_starts_on_on_and_stops_on_off() -> None:
    (switch,) = [row for row in VEHICLE_ENTITIES if row.key == "charging_control"]
    assert switch.control is not None
    assert switch.payload_on is not None
    assert switch.payload_off is not None
    assert CONTROLS[switch.control][switch.payload_on] is Command.START_CHARGING
    assert CONTROLS[switch.control][switch.payload_off] is Command.STOP_CHARGING
    assert switch.state_field == "charging"


def test_every_command_needs_a_capability() -> None:
    commands = {command for payloads in CONTROLS.values() for command in payloads.values()}
    commands |= {setting.command for setting in SETTINGS.values()}
    assert commands == set(Command)
    assert set(COMMAND_CAPABILITY) == set(Command)


def test_device_tracker_reads_the_location_topic() -> None:
    (tracker,) = [row for row in VEHICLE_ENTITIES if row.platform == "device_tracker"]
    assert tracker.state_topic is None
    assert tracker.attributes_topic == "location"
    assert tracker.source_type == "gps"


@pytest.mark.parametrize("row", ALL_ROWS, ids=ids)
def test_diagnostics_are_read_only(row: EntityDescription) -> None:
    if row.entity_category == "diagnostic":
        assert row.platform in ("sensor", "binary_sensor")
