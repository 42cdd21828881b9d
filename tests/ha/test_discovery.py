"""Discovery, state and command payloads built from the entity table, for cars of each cloud."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from car2mqtt.errors import CommandRejected
from car2mqtt.ha.discovery import (
    BRIDGE_IDENTIFIER,
    applicable_keys,
    bridge_discovery,
    command_from_payload,
    command_payload,
    device_discovery,
    entity_discoveries,
    location_payload,
    migration_markers,
    parse_command,
    removal,
    requested_command,
    slugify,
    state_payload,
)
from car2mqtt.ha.entities import VEHICLE_ENTITIES
from car2mqtt.models import (
    Capability,
    ChargeState,
    CommandResult,
    CommandStatus,
    VehicleState,
)
from car2mqtt.mqtt.topics import Topics
from car2mqtt.providers.base import Command
from tests.ha.cars import NOW, SEEN, charging, enode_car, xee_car, xpeng_car

T = Topics()
ALL_KEYS = frozenset(row.key for row in VEHICLE_ENTITIES)
CHARGE_KEYS = {"charging", "plugged_in", "charge_state", "charge_rate", "charge_time_remaining"}


def dumps(payload: object) -> str:
    """Serialise as the bridge does; NaN or a stray object fails the test."""
    return json.dumps(payload, allow_nan=False)


def device_payload(state: VehicleState, keys: frozenset[str] | None = None) -> dict[str, Any]:
    keys = applicable_keys(state) if keys is None else keys
    _, payload = device_discovery(state, T, keys, origin_version="1.2.3")
    return payload


# ---- which entities a car gets -------------------------------------------------------------


def test_a_full_enode_car_gets_every_entity_but_the_obd_signals() -> None:
    obd = {"speed", "fuel_level", "battery_voltage", "lock", "ignition"}
    # A car that sets its max current gets the number in place of the sensor; the deadline
    # is a time entity on a Home Assistant that has them, else a text entity.
    # History's entities come with the recorder.
    history = {"energy_charged", "last_session_energy", "last_session_duration"}
    history.add("last_trip_distance")
    expected = ALL_KEYS - obd - {"max_current", "charge_deadline"}
    assert applicable_keys(enode_car()) == expected - history
    assert applicable_keys(enode_car(), history=True) == expected
    on_new_ha = applicable_keys(enode_car(), (2026, 4))
    assert on_new_ha == ALL_KEYS - obd - history - {"max_current", "charge_deadline_text"}
    assert applicable_keys(enode_car(), (2026, 3)) == applicable_keys(enode_car())


def test_a_xpeng_without_odometer_or_location_gets_neither() -> None:
    keys = applicable_keys(xpeng_car())
    assert "odometer" not in keys
    assert "location" not in keys
    assert "refresh" not in keys
    assert {"battery", "range", "charging_control", "relink_required", "last_command"} <= keys
    assert "odometer" not in device_payload(xpeng_car())["components"]


def test_a_xee_car_gets_signals_and_no_charging_entities() -> None:
    keys = applicable_keys(xee_car())
    assert {"speed", "fuel_level", "battery_voltage", "lock", "ignition"} <= keys
    assert {"odometer", "location"} <= keys
    assert not keys & (CHARGE_KEYS | {"battery", "charging_control", "refresh"})
    # Read-only: no command ever reaches the car, so there is no command to follow.
    assert "last_command" not in keys
    assert "last_command" not in device_payload(xee_car())["components"]


def test_a_car_that_takes_only_a_refresh_still_follows_its_commands() -> None:
    assert "last_command" in applicable_keys(enode_car(capabilities={Capability.REFRESH}))
    assert "last_command" not in applicable_keys(enode_car(capabilities=frozenset()))


def test_a_name_given_by_the_bridge_names_the_device_and_its_entity_ids() -> None:
    state = enode_car()
    payload = device_discovery(state, T, applicable_keys(state), origin_version="1", name="Kia 1a")
    assert payload[1]["device"]["name"] == "Kia 1a"
    battery = payload[1]["components"]["battery"]
    assert battery["default_entity_id"] == "sensor.kia_1a_battery"
    assert battery["object_id"] == "kia_1a_battery"


@pytest.mark.parametrize(
    "capabilities",
    [
        frozenset(),
        frozenset({Capability.START_CHARGING}),
        frozenset({Capability.STOP_CHARGING, Capability.REFRESH}),
    ],
)
def test_no_charging_switch_without_both_start_and_stop(
    capabilities: frozenset[Capability],
) -> None:
    state = enode_car(capabilities=capabilities)
    assert "charging_control" not in applicable_keys(state)
    assert "charging_control" not in device_payload(state)["components"]


def test_capabilities_alone_bring_odometer_and_location() -> None:
    state = xpeng_car().replace(capabilities=frozenset({Capability.ODOMETER, Capability.LOCATION}))
    assert {"odometer", "location"} <= applicable_keys(state)


def test_charge_entities_do_not_come_and_go_as_the_car_charges() -> None:
    parked = enode_car()
    lifecycle = [
        parked.replace(plugged_in=False, charge_state=ChargeState.UNPLUGGED),
        parked,
        charging(parked),
        parked.replace(charge_state=ChargeState.COMPLETE),
    ]
    key_sets = {applicable_keys(state) for state in lifecycle}
    assert len(key_sets) == 1
    (keys,) = key_sets
    assert keys >= CHARGE_KEYS


# ---- device discovery ----------------------------------------------------------------------


def test_device_payload_names_the_car_and_its_bridge() -> None:
    state = enode_car()
    topic, payload = device_discovery(state, T, applicable_keys(state), origin_version="1.2.3")
    key = state.ref.key
    assert topic == f"homeassistant/device/car2mqtt_{key}/config"
    assert payload["device"] == {
        "identifiers": [f"car2mqtt_{key}"],
        "name": "Tesla Model Y",
        "manufacturer": "Tesla",
        "model": "Model Y",
        "via_device": BRIDGE_IDENTIFIER,
    }
    assert payload["origin"] == {"name": "car2mqtt", "sw_version": "1.2.3"}
    assert payload["availability"] == [
        {"topic": T.bridge_availability},
        {"topic": T.availability(state.ref)},
    ]
    assert payload["availability_mode"] == "all"
    dumps(payload)


def test_vin_is_exposed_only_on_request() -> None:
    state = enode_car()
    assert "serial_number" not in device_payload(state)["device"]
    _, shown = device_discovery(
        state, T, {"battery"}, origin_version="1", expose_vin=True, support_url="https://x.test"
    )
    assert shown["device"]["serial_number"] == "5YJYGDEE1LF000001"
    assert shown["origin"]["support_url"] == "https://x.test"


def test_manufacturer_falls_back_to_the_vendor() -> None:
    assert device_payload(xpeng_car())["device"]["manufacturer"] == "Xpeng"


def test_components_carry_ids_for_every_home_assistant_version() -> None:
    state = enode_car()
    components = device_payload(state)["components"]
    assert set(components) == applicable_keys(state)
    for key, component in components.items():
        platform = component["platform"]
        assert component["unique_id"] == f"car2mqtt_{state.ref.key}_{key}"
        assert component["default_entity_id"] == f"{platform}.tesla_model_y_{key}"
        assert component["object_id"] == f"tesla_model_y_{key}"
        assert component["qos"] == 1


def test_unique_ids_are_unique_and_survive_renames_and_new_data() -> None:
    first = device_payload(enode_car(), ALL_KEYS)["components"]
    renamed = enode_car(info=dataclasses.replace(enode_car().info, display_name="Blixten"))
    later = device_payload(charging(renamed), ALL_KEYS)["components"]
    first_ids = [c["unique_id"] for c in first.values()]
    assert len(set(first_ids)) == len(first_ids) == len(VEHICLE_ENTITIES)
    assert first_ids == [c["unique_id"] for c in later.values()]
    bridge_ids = {
        c["unique_id"]
        for _, p in bridge_discovery(T, "1", "device")
        for c in p["components"].values()
    }
    assert not bridge_ids & set(first_ids)
    assert later["battery"]["default_entity_id"] == "sensor.blixten_battery"


def test_the_slug_falls_back_to_the_vehicle_key() -> None:
    assert slugify("Mum's Clio") == "mum_s_clio"
    assert slugify("Škoda Enyaq iV") == "skoda_enyaq_iv"
    state = xpeng_car().replace(info=dataclasses.replace(xpeng_car().info, display_name="小鹏"))
    component = device_payload(state, frozenset({"battery"}))["components"]["battery"]
    assert component["object_id"] == "enode_xp_1_battery"


def test_components_cover_what_was_published_before_even_if_it_no_longer_applies() -> None:
    state = xpeng_car()
    previously = frozenset({"odometer", "no_such_entity"})
    components = device_payload(state, applicable_keys(state) | previously)["components"]
    assert "odometer" in components
    assert "no_such_entity" not in components


def test_sensor_components_carry_classes_and_read_their_state_field() -> None:
    state = charging(enode_car())
    components = device_payload(state)["components"]
    assert components["battery"] == {
        "platform": "sensor",
        "unique_id": f"car2mqtt_{state.ref.key}_battery",
        "default_entity_id": "sensor.tesla_model_y_battery",
        "object_id": "tesla_model_y_battery",
        "device_class": "battery",
        "state_class": "measurement",
        "unit_of_measurement": "%",
        "suggested_display_precision": 0,
        "state_topic": T.state(state.ref),
        "value_template": "{{ value_json.battery }}",
        "qos": 1,
    }
    assert components["odometer"]["state_class"] == "total"
    assert components["charge_state"]["options"] == [c.value for c in ChargeState]
    assert "unit_of_measurement" not in components["charge_state"]
    assert components["last_seen"]["entity_category"] == "diagnostic"
    assert "state_class" not in components["last_seen"]
    assert components["relink_required"]["name"] == "Re-link needed"
    assert components["relink_required"]["device_class"] == "problem"


def test_every_field_a_component_reads_is_in_the_state_payload() -> None:
    for state in (enode_car(), charging(enode_car()), xpeng_car(), xee_car()):
        payload = state_payload(state, NOW)
        for component in device_payload(state)["components"].values():
            if component.get("state_topic") == T.state(state.ref):
                field = component["value_template"].removeprefix("{{ value_json.")
                assert field.removesuffix(" }}").removesuffix(" or ''") in payload


def test_charging_switch_commands_the_car_and_shows_its_real_state() -> None:
    state = enode_car()
    switch = device_payload(state)["components"]["charging_control"]
    assert switch["platform"] == "switch"
    assert switch["name"] == "Charging control"
    # The entity id keeps the row's key, as announced before the rename.
    assert switch["default_entity_id"].startswith("switch.")
    assert switch["default_entity_id"].endswith("_charging_control")
    assert switch["command_topic"] == T.command(state.ref, "charging")
    assert (switch["payload_on"], switch["payload_off"]) == ("ON", "OFF")
    assert switch["state_topic"] == T.state(state.ref)
    assert switch["value_template"] == "{{ value_json.charging }}"
    assert switch["retain"] is False
    provider, _, control = T.parse_command_topic(switch["command_topic"]) or ("", "", "")
    assert provider == "enode"
    on = parse_command(control, switch["payload_on"].encode(), state.capabilities)
    off = parse_command(control, switch["payload_off"].encode(), state.capabilities)
    assert (on, off) == ((Command.START_CHARGING, None), (Command.STOP_CHARGING, None))


def test_refresh_button_presses_refresh() -> None:
    state = enode_car()
    button = device_payload(state)["components"]["refresh"]
    assert button["command_topic"] == T.command(state.ref, "refresh")
    assert "state_topic" not in button
    _, _, control = T.parse_command_topic(button["command_topic"]) or ("", "", "")
    assert parse_command(control, button["payload_press"].encode(), state.capabilities) == (
        Command.REFRESH,
        None,
    )


def test_tracker_and_last_command_read_their_own_topics() -> None:
    state = enode_car()
    components = device_payload(state)["components"]
    tracker = components["location"]
    assert tracker["platform"] == "device_tracker"
    assert tracker["source_type"] == "gps"
    assert tracker["json_attributes_topic"] == T.location(state.ref)
    assert "state_topic" not in tracker
    last = components["last_command"]
    assert last["state_topic"] == T.command_result(state.ref)
    assert last["json_attributes_topic"] == T.command_result(state.ref)
    assert last["value_template"] == "{{ value_json.status }}"
    assert last["options"] == [c.value for c in CommandStatus]


def test_link_health_entities_stay_available_when_the_car_is_not() -> None:
    components = device_payload(enode_car())["components"]
    bridge_only = [{"topic": T.bridge_availability}]
    for key in ("relink_required", "last_command", "last_seen", "data_age"):
        assert components[key]["availability"] == bridge_only
    assert "availability" not in components["battery"]


# ---- per-entity discovery, removal, migration ------------------------------------------------


def test_entity_mode_publishes_the_same_entities_one_topic_each() -> None:
    state = enode_car()
    keys = applicable_keys(state)
    components = device_payload(state)["components"]
    pairs = entity_discoveries(state, T, keys, origin_version="1.2.3")
    assert len(pairs) == len(components)
    root = device_payload(state)
    for topic, payload in pairs:
        key = topic.split("/")[-2]
        component = components[key]
        assert topic == T.entity_config(component["platform"], state.ref, key)
        assert "platform" not in payload
        assert payload["unique_id"] == component["unique_id"]
        assert payload["device"] == root["device"]
        assert payload["origin"] == root["origin"]
        assert payload["availability_mode"] == "all"
        expected = {k: v for k, v in component.items() if k != "platform"}
        assert {k: payload[k] for k in expected} == expected
        dumps(payload)
    assert pairs[0][1]["availability"] == root["availability"]


def test_removal_empties_the_device_or_every_entity_topic() -> None:
    state = enode_car()
    keys = applicable_keys(state)
    assert removal(T, state.ref, keys, "device") == [(T.device_config(state.ref), b"")]
    cleared = removal(T, state.ref, keys, "entity")
    published = [topic for topic, _ in entity_discoveries(state, T, keys, origin_version="1")]
    assert [topic for topic, _ in cleared] == published
    assert {payload for _, payload in cleared} == {b""}


def test_migration_markers_point_at_the_old_topics() -> None:
    state = enode_car()
    keys = frozenset({"battery", "refresh"})
    to_device = migration_markers(T, state.ref, keys, "device")
    assert [topic for topic, _ in to_device] == [
        T.entity_config("sensor", state.ref, "battery"),
        T.entity_config("button", state.ref, "refresh"),
    ]
    assert all(payload == {"migrate_discovery": True} for _, payload in to_device)
    assert migration_markers(T, state.ref, keys, "entity") == [
        (T.device_config(state.ref), {"migrate_discovery": True})
    ]


# ---- the bridge device -----------------------------------------------------------------------


def test_bridge_device_depends_on_the_bridge_alone() -> None:
    ((topic, payload),) = bridge_discovery(T, "1.2.3", "device")
    assert topic == T.bridge_device_config
    assert payload["device"] == {
        "identifiers": [BRIDGE_IDENTIFIER],
        "name": "car2mqtt",
        "sw_version": "1.2.3",
    }
    assert payload["availability"] == [{"topic": T.bridge_availability}]
    components = payload["components"]
    assert set(components) == {
        "version",
        "vehicles",
        "api_calls",
        "problem",
        "push",
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
    }
    health = {"uptime": "uptime_s", "memory": "rss_mb"}
    health |= {"mqtt_reconnects": "mqtt.reconnects", "mqtt_sent": "mqtt.sent"}
    health |= {f"api_calls_{n}": f"budget.calls_{n}" for n in ("hour", "today", "month")}
    health |= {"api_budget_left": "budget.left", "poll_interval": "budget.poll_interval_s"}
    assert components["poll_interval"]["device_class"] == "duration"
    assert components["poll_interval"]["unit_of_measurement"] == "s"
    assert components["api_calls"]["state_class"] == "total_increasing"
    assert components["problem"]["device_class"] == "problem"
    assert components["push"]["device_class"] == "enum"
    assert components["push"]["options"] == ["active", "degraded", "off"]
    assert components["push_last_delivery"]["device_class"] == "timestamp"
    assert components["memory"]["unit_of_measurement"] == "MB"
    for key, component in components.items():
        topic, field = (T.bridge_health, health[key]) if key in health else (T.bridge_state, key)
        assert component["state_topic"] == topic
        assert component["value_template"] == f"{{{{ value_json.{field} }}}}"
        assert component["unique_id"] == f"car2mqtt_bridge_{key}"
        assert component["default_entity_id"] == f"{component['platform']}.car2mqtt_{key}"
        assert "availability" not in component
    dumps(payload)


def test_a_second_bridge_under_another_base_topic_is_its_own_device() -> None:
    other = Topics(base="garage", discovery_prefix=T.discovery_prefix)
    ((topic, payload),) = bridge_discovery(other, "1.2.3", "device")
    assert topic == "homeassistant/device/car2mqtt_bridge_garage/config"
    assert topic != T.bridge_device_config
    assert payload["device"]["identifiers"] == ["car2mqtt_bridge_garage"]
    assert payload["device"]["name"] == "car2mqtt garage"
    version = payload["components"]["version"]
    assert version["unique_id"] == "car2mqtt_bridge_garage_version"
    assert version["default_entity_id"] == "sensor.car2mqtt_garage_version"
    assert payload["availability"] == [{"topic": "garage/bridge/availability"}]
    car = device_discovery(xee_car(), other, applicable_keys(xee_car()), origin_version="1.2.3")[1]
    assert car["device"]["via_device"] == "car2mqtt_bridge_garage"


def test_bridge_entity_mode() -> None:
    pairs = bridge_discovery(T, "1.2.3", "entity")
    assert [topic for topic, _ in pairs] == [
        T.bridge_entity_config("sensor", "version"),
        T.bridge_entity_config("sensor", "vehicles"),
        T.bridge_entity_config("sensor", "api_calls"),
        T.bridge_entity_config("binary_sensor", "problem"),
        T.bridge_entity_config("sensor", "push"),
        T.bridge_entity_config("sensor", "push_last_delivery"),
        T.bridge_entity_config("sensor", "uptime"),
        T.bridge_entity_config("sensor", "memory"),
        T.bridge_entity_config("sensor", "mqtt_reconnects"),
        T.bridge_entity_config("sensor", "mqtt_sent"),
        T.bridge_entity_config("sensor", "api_calls_hour"),
        T.bridge_entity_config("sensor", "api_calls_today"),
        T.bridge_entity_config("sensor", "api_calls_month"),
        T.bridge_entity_config("sensor", "api_budget_left"),
        T.bridge_entity_config("sensor", "poll_interval"),
    ]
    assert all(payload["device"]["identifiers"] == [BRIDGE_IDENTIFIER] for _, payload in pairs)


# ---- state, location and command payloads ----------------------------------------------------


def test_state_of_a_charging_car() -> None:
    state = charging(enode_car())
    payload = state_payload(state, NOW)
    assert payload == {
        "battery": 62,
        "range": 301,
        "charging": "ON",
        "plugged_in": "ON",
        "charge_state": "charging",
        "charge_rate": 7.4,
        "charge_time_remaining": 85,
        "charge_limit": 80,
        "battery_capacity": 75.0,
        "max_current": 16.0,
        "odometer": 12345.7,
        "last_seen": "2025-06-01T10:30:00+00:00",
        "reachable": "ON",
        "data_age": 90,
        "relink_required": "OFF",
        "smart_charging": "ON",
        "min_charge_limit": 40,
        "charge_deadline": "07:30",
        "smart_charging_status": "stopped",
        "smart_charging_start": "2025-06-01T15:30:00+00:00",
        "smart_charging_finish": "2025-06-01T18:30:00+00:00",
        "charge_now_active": "OFF",
    }
    assert datetime.fromisoformat(payload["last_seen"]) == SEEN
    dumps(payload)


def test_state_of_a_parked_car_keeps_unknowns_null() -> None:
    payload = state_payload(enode_car(), NOW, relink_required=True)
    assert payload["charging"] == "OFF"
    assert payload["charge_state"] == "stopped"
    assert payload["charge_rate"] is None
    assert payload["charge_time_remaining"] is None
    assert payload["relink_required"] == "ON"


def test_state_of_a_xee_car() -> None:
    payload = state_payload(xee_car(), NOW)
    assert payload["lock"] == "OFF"  # locked
    assert payload["ignition"] == "OFF"
    assert payload["speed"] == 0
    assert payload["fuel_level"] == 23.5
    assert payload["battery_voltage"] == 12.62
    assert "battery" not in payload
    assert "charging" not in payload


def test_previously_published_fields_turn_null() -> None:
    state = xpeng_car()
    assert "odometer" not in state_payload(state, NOW)
    assert state_payload(state, NOW, keys={"odometer"})["odometer"] is None


def test_data_age_counts_minutes_since_last_seen() -> None:
    state = enode_car()
    assert state_payload(state, SEEN)["data_age"] == 0
    assert state_payload(state, SEEN + timedelta(hours=3, seconds=20))["data_age"] == 180
    assert state_payload(state, SEEN - timedelta(minutes=5))["data_age"] == 0  # clock skew
    naive = state.replace(last_seen=SEEN.replace(tzinfo=None))
    assert state_payload(naive, NOW)["data_age"] == 90
    assert state_payload(naive, NOW)["last_seen"] == "2025-06-01T10:30:00+00:00"
    unseen = state.replace(last_seen=None)
    assert "data_age" not in state_payload(unseen, NOW)
    assert state_payload(unseen, NOW, keys={"data_age"})["data_age"] is None


def test_non_finite_numbers_publish_as_null() -> None:
    payload = state_payload(enode_car(battery_pct=float("nan"), range_km=float("inf")), NOW)
    assert payload["battery"] is None
    assert payload["range"] is None
    dumps(payload)


def test_location_payload() -> None:
    assert location_payload(enode_car()) == {
        "latitude": 59.9139,
        "longitude": 10.7522,
        "gps_accuracy": 10,
        "heading": 90.0,
        "updated_at": "2025-06-01T10:30:00+00:00",
    }
    assert location_payload(xee_car()) == {"latitude": 48.85, "longitude": 2.35, "gps_accuracy": 10}
    assert location_payload(xpeng_car()) is None


def test_command_payload() -> None:
    result = CommandResult("start_charging", CommandStatus.FAILED, NOW, "a-1", "car asleep")
    payload = command_payload(result)
    assert payload == {
        "command": "start_charging",
        "status": "failed",
        "at": "2025-06-01T12:00:00+00:00",
        "action_id": "a-1",
        "reason": "car asleep",
    }
    dumps(payload)


# ---- commands from Home Assistant ------------------------------------------------------------

EVERYTHING = frozenset(Capability)


@pytest.mark.parametrize(
    ("control", "payload", "command"),
    [
        ("charging", b"ON", Command.START_CHARGING),
        ("charging", b"OFF", Command.STOP_CHARGING),
        ("charging", b" on\n", Command.START_CHARGING),
        ("charging", b"Off", Command.STOP_CHARGING),
        ("refresh", b"PRESS", Command.REFRESH),
        ("refresh", b"press", Command.REFRESH),
    ],
)
def test_parse_command_accepts(control: str, payload: bytes, command: Command) -> None:
    assert parse_command(control, payload, EVERYTHING) == (command, None)


@pytest.mark.parametrize(
    ("control", "payload", "capabilities", "message"),
    [
        (
            "honk",
            b"ON",
            EVERYTHING,
            "unknown control 'honk'; known controls: charge_deadline, charge_now, charging, "
            "max_current, min_charge_limit, refresh, smart_charging",
        ),
        ("charging", b"\xff\xfe", EVERYTHING, "not UTF-8"),
        ("charging", b"true", EVERYTHING, "expected one of: ON, OFF"),
        ("charging", b"1", EVERYTHING, "expected one of: ON, OFF"),
        ("charging", b"", EVERYTHING, "payload '' is not valid for 'charging'"),
        ("refresh", b"ON", EVERYTHING, "expected one of: PRESS"),
        ("charging", b"ON", frozenset({Capability.STOP_CHARGING}), "cannot start charging"),
        ("charging", b"OFF", frozenset({Capability.START_CHARGING}), "cannot stop charging"),
        ("refresh", b"PRESS", frozenset(), "lacks 'refresh'"),
    ],
)
def test_parse_command_rejects(
    control: str, payload: bytes, capabilities: frozenset[Capability], message: str
) -> None:
    with pytest.raises(CommandRejected, match=message):
        parse_command(control, payload, capabilities)


def test_rejections_quote_long_payloads_briefly() -> None:
    with pytest.raises(CommandRejected) as caught:
        parse_command("charging", b"x" * 10_000, EVERYTHING)
    assert len(str(caught.value)) < 200


def test_the_requested_command_is_named_whether_or_not_the_car_can_do_it() -> None:
    assert requested_command("charging", b" off ") == "stop_charging"
    assert requested_command("refresh", b"PRESS") == "refresh"
    assert requested_command("charging", b"MAYBE") is None
    assert requested_command("teleport", b"ON") is None
    assert requested_command("charging", b"\xff") is None


def test_a_command_payload_reads_back_as_the_same_result() -> None:
    result = CommandResult(
        "start_charging",
        CommandStatus.PENDING,
        datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
        action_id="a-1",
        reason=None,
    )
    assert command_from_payload(command_payload(result)) == result
    assert command_from_payload({"command": "x", "status": "nonsense", "at": "now"}) is None
    assert command_from_payload({}) is None
