"""A real Home Assistant reads what the bridge publishes: devices, entities, updates, control.

The scenarios share one stack and run in this order; each leaves it as it found it.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import replace
from typing import Any

import pytest

from car2mqtt.bridge.budget import BudgetLimits
from car2mqtt.bridge.privacy import Privacy
from car2mqtt.bridge.publisher import Publishing
from car2mqtt.clock import SystemClock
from car2mqtt.ha.discovery import slugify
from car2mqtt.history.model import ZoneArea
from car2mqtt.models import LocationMode
from car2mqtt.mqtt.topics import Topics
from car2mqtt.providers.registry import load_config
from tests.bridge.conftest import budget_of
from tests.e2e.conftest import E2E_TIMING, BridgeThread, Stack, wait_until
from tests.mqtt_support import free_port, publish, retained
from tests.support import running_sim

pytestmark = pytest.mark.e2e

TESLA, VW, XPENG, KIA = "tesla_model_3", "volkswagen_id_4", "xpeng_g6", "kia_ev6"


def ids(e2e: Stack) -> dict[str, str]:
    tesla, vw, xpeng, kia = e2e.sim.vehicle_ids()
    return {TESLA: tesla, VW: vw, XPENG: xpeng, KIA: kia}


def test_one_device_per_vehicle_linked_to_the_bridge(e2e: Stack) -> None:
    def devices() -> dict[str, dict[str, Any]] | None:
        found = {
            ident[1]: d
            for d in e2e.ha.devices()
            for ident in d["identifiers"]
            if ident[0] == "mqtt"
        }
        return found if len(found) >= 5 else None

    found = wait_until(devices, 60, "five devices (four cars and the bridge)")
    bridge = found["car2mqtt_bridge"]
    assert bridge["name"] == "car2mqtt"
    for slug, vehicle_id in ids(e2e).items():
        device = found[f"car2mqtt_enode_{vehicle_id}"]
        assert device["via_device_id"] == bridge["id"]
        expected = {
            TESLA: ("Tesla", "Model 3"),
            VW: ("Volkswagen", "ID.4"),
            XPENG: ("XPENG", "G6"),
            KIA: ("Kia", "EV6"),
        }[slug]
        assert (device["manufacturer"], device["model"]) == expected
        assert device["name"] == " ".join(expected)


EXPECTED: list[tuple[str, str | None, str | None, str | None]] = [
    # entity suffix, device_class, unit, state_class
    ("sensor.{}_battery", "battery", "%", "measurement"),
    ("sensor.{}_range", "distance", "km", "measurement"),
    ("binary_sensor.{}_charging", "battery_charging", None, None),
    ("binary_sensor.{}_plugged_in", "plug", None, None),
    ("sensor.{}_charge_state", "enum", None, None),
    ("sensor.{}_charge_rate", "power", "kW", "measurement"),
    ("sensor.{}_charge_time_remaining", "duration", "min", "measurement"),
    ("sensor.{}_charge_limit", "battery", "%", "measurement"),
    ("sensor.{}_battery_capacity", "energy_storage", "kWh", "measurement"),
    # A Tesla sets its max current (Enode's setMaxCurrent): a number, in place of the sensor.
    ("number.{}_max_current_setting", "current", "A", None),
    ("sensor.{}_last_seen", "timestamp", None, None),
    ("binary_sensor.{}_reachable", "connectivity", None, None),
    ("sensor.{}_data_age", "duration", "min", "measurement"),
    ("binary_sensor.{}_relink_required", "problem", None, None),
    ("sensor.{}_last_command", "enum", None, None),
]


def test_entities_states_units_and_classes(e2e: Stack) -> None:
    ha = e2e.ha
    ha.wait_state(f"sensor.{TESLA}_battery", lambda s: s["state"] not in ("unknown", "unavailable"))
    states = ha.states()
    for pattern, device_class, unit, state_class in EXPECTED:
        entity = pattern.format(TESLA)
        assert entity in states, f"{entity} missing; have {sorted(k for k in states if TESLA in k)}"
        attributes = states[entity]["attributes"]
        assert attributes.get("device_class") == device_class, entity
        assert attributes.get("unit_of_measurement") == unit, entity
        assert attributes.get("state_class") == state_class, entity
    assert float(states[f"sensor.{TESLA}_battery"]["state"]) > 0
    assert states[f"binary_sensor.{TESLA}_plugged_in"]["state"] == "off"
    assert states[f"sensor.{TESLA}_charge_state"]["state"] == "unplugged"
    assert states[f"binary_sensor.{TESLA}_relink_required"]["state"] == "off"
    odometer = states[f"sensor.{TESLA}_odometer"]
    assert odometer["attributes"]["state_class"] == "total"
    assert float(odometer["state"]) > 1000
    assert states[f"switch.{TESLA}_charging_control"]["state"] == "off"
    # The switch and the binary sensor no longer share a name.
    switch_name = states[f"switch.{TESLA}_charging_control"]["attributes"]["friendly_name"]
    sensor_name = states[f"binary_sensor.{TESLA}_charging"]["attributes"]["friendly_name"]
    assert switch_name == "Tesla Model 3 Charging control"
    assert sensor_name == "Tesla Model 3 Charging"
    assert f"button.{TESLA}_refresh" in states
    # XPENG reports no odometer; the Kia cannot be controlled.
    assert f"sensor.{XPENG}_odometer" not in states
    assert f"switch.{KIA}_charging_control" not in states
    assert f"sensor.{KIA}_battery" in states
    # The charging Volkswagen.
    assert states[f"binary_sensor.{VW}_plugged_in"]["state"] == "on"


def _id_from_name(platform: str, device: str, name: str) -> str:
    """The id Home Assistant would make up from the device's and the entity's names."""
    return f"{platform}." + re.sub(r"[^a-z0-9]+", "_", f"{device} {name}".lower()).strip("_")


def test_entity_ids_come_from_the_bridge_not_from_the_names(e2e: Stack) -> None:
    """2025.4 reads `object_id`, 2026.4 and later only `default_entity_id`: both give our ids.

    Every entity of every device the bridge announced gets the id the bridge chose, including
    those whose names would give another one (say "Re-link needed": `..._re_link_needed`).
    """
    kept = asyncio.run(retained(e2e.broker.port, "homeassistant/device/#", settle=0.5))
    wanted: dict[str, tuple[str, str]] = {}  # unique_id: (the bridge's id, the name-made id)
    for payload in kept.values():
        config = json.loads(payload)
        for component in config["components"].values():
            platform, bridge_id = component["platform"], component["default_entity_id"]
            assert bridge_id.startswith(f"{platform}.")
            assert bridge_id == f"{platform}.{component['object_id']}"
            by_name = _id_from_name(platform, config["device"]["name"], component.get("name", ""))
            wanted[component["unique_id"]] = (bridge_id, by_name)
    assert len(wanted) > 50, "the cars and the bridge announced their entities"

    def registry() -> dict[str, str] | None:
        found = {e["unique_id"]: e["entity_id"] for e in e2e.ha.entity_registry()}
        return found if wanted.keys() <= found.keys() else None

    found = wait_until(registry, 30, "every announced entity in the registry")
    assert {uid: found[uid] for uid in wanted} == {uid: pair[0] for uid, pair in wanted.items()}
    renamed = [bridge for bridge, by_name in wanted.values() if bridge != by_name]
    assert f"binary_sensor.{TESLA}_relink_required" in renamed  # so the check can fail


def test_device_tracker_home_and_away(e2e: Stack) -> None:
    ha, sim = e2e.ha, e2e.sim
    tesla = ids(e2e)[TESLA]
    tracker = ha.wait_state(
        f"device_tracker.{TESLA}_location", lambda s: "latitude" in s["attributes"]
    )
    assert tracker["attributes"]["source_type"] == "gps"
    assert tracker["state"] == "not_home"  # the car is in Oslo, Home Assistant's home in Berlin
    sim.admin_call(
        "PUT", f"/enode/vehicles/{tesla}/location", {"latitude": 52.52, "longitude": 13.40}
    )
    sim.refresh(tesla)
    home = ha.wait_state(f"device_tracker.{TESLA}_location", lambda s: s["state"] == "home")
    assert (home["attributes"]["latitude"], home["attributes"]["longitude"]) == (52.52, 13.4)
    sim.admin_call(
        "PUT", f"/enode/vehicles/{tesla}/location", {"latitude": 52.6, "longitude": 13.5}
    )
    sim.refresh(tesla)
    ha.wait_state(f"device_tracker.{TESLA}_location", lambda s: s["state"] == "not_home")


def test_simulator_changes_show_up(e2e: Stack) -> None:
    ha, sim = e2e.ha, e2e.sim
    tesla = ids(e2e)[TESLA]
    sim.admin_call("PUT", f"/enode/vehicles/{tesla}/battery", {"level": 33})
    sim.refresh(tesla)
    ha.wait_state(f"sensor.{TESLA}_battery", lambda s: s["state"] == "33")
    sim.admin_call("POST", f"/enode/vehicles/{tesla}/plug-in", {"startCharging": False})
    sim.refresh(tesla)
    ha.wait_state(f"binary_sensor.{TESLA}_plugged_in", lambda s: s["state"] == "on")
    ha.wait_state(f"sensor.{TESLA}_charge_state", lambda s: s["state"] == "stopped")


XEE_EXPECTED: list[tuple[str, str | None, str | None]] = [
    # entity, device_class, unit
    ("sensor.{}_speed", "speed", "km/h"),
    ("sensor.{}_battery_voltage", "voltage", "V"),
    ("binary_sensor.{}_lock", "lock", None),
    ("binary_sensor.{}_ignition", "running", None),
    ("sensor.{}_odometer", "distance", "km"),
    ("device_tracker.{}_location", None, None),
    ("binary_sensor.{}_relink_required", "problem", None),
]
GOLF, ZOE = "volkswagen_golf", "renault_zoe"  # the simulator's Xee cars for seed 0


def xee_cars(e2e: Stack) -> dict[str, str]:
    """Xee vehicle id by entity slug, from the simulator."""
    found = {}
    for vehicle_id in next(iter(e2e.sim.info["xee"]["users"].values())):
        car = e2e.sim.admin_call("GET", f"/xee/vehicles/{vehicle_id}").json()
        found[GOLF if car["kind"] == "combustion" else ZOE] = vehicle_id
    return found


def test_xee_cars_have_their_entities(e2e: Stack) -> None:
    ha = e2e.ha
    ha.wait_state(
        f"sensor.{GOLF}_fuel_level", lambda s: s["state"] not in ("unknown", "unavailable")
    )
    ha.wait_state(f"sensor.{ZOE}_battery", lambda s: s["state"] not in ("unknown", "unavailable"))
    states = ha.states()
    for slug in (GOLF, ZOE):
        for pattern, device_class, unit in XEE_EXPECTED:
            entity = pattern.format(slug)
            assert entity in states, (
                f"{entity} missing; have {sorted(k for k in states if slug in k)}"
            )
            attributes = states[entity]["attributes"]
            assert attributes.get("device_class") == device_class, entity
            assert attributes.get("unit_of_measurement") == unit, entity
        # Xee cannot be controlled: no switch, no refresh button, no command to follow.
        assert f"switch.{slug}_charging_control" not in states
        assert f"button.{slug}_refresh" not in states
        assert f"sensor.{slug}_last_command" not in states
    fuel = states[f"sensor.{GOLF}_fuel_level"]
    assert fuel["attributes"]["unit_of_measurement"] == "L"
    assert fuel["attributes"]["device_class"] == "volume_storage"
    assert f"sensor.{ZOE}_fuel_level" not in states
    assert f"sensor.{GOLF}_battery" not in states
    assert states[f"sensor.{ZOE}_range"]["attributes"]["unit_of_measurement"] == "km"
    assert states[f"binary_sensor.{GOLF}_lock"]["state"] == "off"  # parked: locked
    devices = {
        ident[1]: d for d in ha.devices() for ident in d["identifiers"] if ident[0] == "mqtt"
    }
    golf = [
        d
        for k, d in devices.items()
        if k.startswith("car2mqtt_xee_") and d["name"] == "Volkswagen Golf"
    ]
    assert len(golf) == 1
    assert golf[0]["manufacturer"] == "Volkswagen"
    assert golf[0]["via_device_id"] == devices["car2mqtt_bridge"]["id"]


def test_xee_car_driving_shows_up(e2e: Stack) -> None:
    ha, sim = e2e.ha, e2e.sim
    golf = xee_cars(e2e)[GOLF]
    assert sim.admin_call("POST", f"/xee/vehicles/{golf}/drive", {"speedKmh": 50}).is_success
    ha.wait_state(f"binary_sensor.{GOLF}_ignition", lambda s: s["state"] == "on")
    ha.wait_state(f"binary_sensor.{GOLF}_lock", lambda s: s["state"] == "on")  # unlocked
    ha.wait_state(f"sensor.{GOLF}_speed", lambda s: s["state"] == "50")
    assert sim.admin_call("POST", f"/xee/vehicles/{golf}/park").is_success
    ha.wait_state(f"sensor.{GOLF}_speed", lambda s: s["state"] == "0")
    ha.wait_state(f"binary_sensor.{GOLF}_ignition", lambda s: s["state"] == "off")


def test_switch_turn_on_starts_charging(e2e: Stack) -> None:
    ha, sim = e2e.ha, e2e.sim
    tesla = ids(e2e)[TESLA]  # plugged in, not charging (previous scenario)
    ha.call_service("switch", "turn_on", entity_id=f"switch.{TESLA}_charging_control")
    ha.wait_state(f"sensor.{TESLA}_last_command", lambda s: s["state"] == "pending")
    sim.advance(130)  # the vendor acts; Enode confirms from device data
    command = ha.wait_state(f"sensor.{TESLA}_last_command", lambda s: s["state"] == "confirmed")
    assert command["attributes"]["command"] == "start_charging"
    ha.wait_state(f"switch.{TESLA}_charging_control", lambda s: s["state"] == "on")
    ha.wait_state(f"binary_sensor.{TESLA}_charging", lambda s: s["state"] == "on")
    assert sim.live(tesla)["chargeMode"] == "CHARGING"


def test_malformed_command_changes_nothing_and_is_reported(e2e: Stack) -> None:
    ha, sim = e2e.ha, e2e.sim
    tesla = ids(e2e)[TESLA]
    before = sim.live(tesla)["chargeMode"]
    topics = Topics()
    asyncio.run(publish(e2e.broker.port, f"car2mqtt/enode/{tesla}/charging/set", b"PLEASE"))
    command = ha.wait_state(f"sensor.{TESLA}_last_command", lambda s: s["state"] == "rejected")
    assert "PLEASE" in command["attributes"]["reason"]
    assert sim.live(tesla)["chargeMode"] == before
    assert ha.state(f"switch.{TESLA}_charging_control")["state"] == "on"  # type: ignore[index]
    assert topics.base == "car2mqtt"


def test_charging_controls_reach_the_simulator(e2e: Stack) -> None:
    """Max current, the smart charging deadline, minimum and switch, set from Home Assistant."""
    ha, sim = e2e.ha, e2e.sim
    tesla = ids(e2e)[TESLA]
    last = f"sensor.{TESLA}_last_command"

    def confirmed(command: str) -> dict[str, Any]:
        return ha.wait_state(
            last,
            lambda s: s["state"] == "confirmed" and s["attributes"]["command"] == command,
        )

    number = f"number.{TESLA}_max_current_setting"
    shown = ha.wait_state(number, lambda s: s["state"] not in ("unknown", "unavailable"))
    assert (shown["attributes"]["min"], shown["attributes"]["max"]) == (6, 48)
    assert float(shown["state"]) == 16
    ha.call_service("number", "set_value", entity_id=number, value=10)
    ha.wait_state(last, lambda s: s["state"] == "pending" and s["attributes"].get("value") == "10")
    sim.advance(130)  # the vendor acts; Enode confirms once the car reports 10 A
    assert confirmed("set_max_current")["attributes"]["value"] == "10"
    ha.wait_state(
        number, lambda s: s["state"] not in ("unknown", "unavailable") and float(s["state"]) == 10
    )
    assert sim.live(tesla)["maxCurrent"] == 10
    ha.call_service("number", "set_value", entity_id=number, value=16)
    ha.wait_state(last, lambda s: s["state"] == "pending" and s["attributes"].get("value") == "16")
    sim.advance(130)
    ha.wait_state(
        number, lambda s: s["state"] not in ("unknown", "unavailable") and float(s["state"]) == 16
    )

    # The deadline is a time entity where Home Assistant has the platform (2026.4), else text.
    if e2e.bridge.publishing.ha_version and e2e.bridge.publishing.ha_version >= (2026, 4):
        deadline = f"time.{TESLA}_charge_deadline"
        assert f"text.{TESLA}_charge_deadline_text" not in ha.states()
        ha.call_service("time", "set_value", entity_id=deadline, time="06:30:00")
        expected = "06:30:00"
    else:
        deadline = f"text.{TESLA}_charge_deadline_text"
        assert f"time.{TESLA}_charge_deadline" not in ha.states()
        ha.call_service("text", "set_value", entity_id=deadline, value="06:30")
        expected = "06:30"
    confirmed("set_charge_deadline")
    ha.wait_state(deadline, lambda s: s["state"] == expected)
    minimum = f"number.{TESLA}_min_charge_limit"
    ha.call_service("number", "set_value", entity_id=minimum, value=30)
    confirmed("set_min_charge_limit")
    switch = f"switch.{TESLA}_smart_charging"
    assert ha.state(switch)["state"] == "off"  # type: ignore[index]
    ha.call_service("switch", "turn_on", entity_id=switch)
    confirmed("enable_smart_charging")
    ha.wait_state(switch, lambda s: s["state"] == "on")
    policy = sim.live(tesla)["smartChargingPolicy"]
    assert policy == {"isEnabled": True, "deadline": "06:30", "minimumChargeLimit": 30}
    status = ha.wait_state(
        f"sensor.{TESLA}_smart_charging_status",
        lambda s: s["state"] not in ("disabled", "unknown", "unavailable"),
    )
    assert status["attributes"]["device_class"] == "enum"
    assert f"button.{TESLA}_charge_now" in ha.states()
    ha.call_service("switch", "turn_off", entity_id=switch)
    confirmed("disable_smart_charging")
    ha.wait_state(f"sensor.{TESLA}_smart_charging_status", lambda s: s["state"] == "disabled")
    # The Kia cannot be controlled: none of these controls.
    assert not [e for e in ha.states() if e.startswith(f"switch.{KIA}")]


def test_bridge_stop_and_start(e2e: Stack) -> None:
    ha = e2e.ha
    entity = f"sensor.{TESLA}_battery"
    e2e.bridge.stop()
    ha.wait_state(entity, lambda s: s["state"] == "unavailable")
    e2e.bridge.start()
    ha.wait_state(entity, lambda s: s["state"] not in ("unavailable", "unknown"))


def test_mosquitto_restart_brings_everything_back(e2e: Stack) -> None:
    ha = e2e.ha
    e2e.broker.stop()  # retained messages die with it: persistence is off
    ha.wait_state(f"sensor.{TESLA}_battery", lambda s: s["state"] == "unavailable")
    e2e.broker.start()
    ha.wait_state(
        f"sensor.{TESLA}_battery", lambda s: s["state"] not in ("unavailable", "unknown"), 60
    )
    ha.wait_state(f"switch.{TESLA}_charging_control", lambda s: s["state"] == "on", 60)


def test_home_assistant_restart_brings_entities_back(e2e: Stack) -> None:
    ha = e2e.ha
    ha.stop()
    ha.start()
    ha.wait_state(
        f"sensor.{TESLA}_battery", lambda s: s["state"] not in ("unavailable", "unknown"), 60
    )
    ha.wait_state(f"binary_sensor.{VW}_plugged_in", lambda s: s["state"] == "on", 60)


def test_vehicle_removal_removes_its_entities(e2e: Stack) -> None:
    ha, sim = e2e.ha, e2e.sim
    xpeng = ids(e2e)[XPENG]
    assert ha.state(f"sensor.{XPENG}_battery") is not None
    assert sim.admin_call("DELETE", f"/enode/vehicles/{xpeng}").status_code == 204
    ha.wait_gone(f"sensor.{XPENG}_battery")
    wait_until(
        lambda: (
            not [
                d
                for d in ha.devices()
                if ["mqtt", f"car2mqtt_enode_{xpeng}"] in [list(i) for i in d["identifiers"]]
            ]
        ),
        30,
        "the XPENG device to leave the registry",
    )
    kept = asyncio.run(retained(e2e.broker.port, settle=0.5))
    assert not [t for t in kept if xpeng in t], "nothing of the removed car stays retained"


def test_per_entity_discovery_gives_the_same_entities(e2e: Stack, tmp_path: Any) -> None:
    ha = e2e.ha
    with running_sim(vehicles=0, seed=9) as sim:
        r = sim.admin_call(
            "POST",
            "/enode/vehicles",
            {"userId": "demo", "vendor": "TESLA", "displayName": "Legacy Car"},
        )
        assert r.status_code == 201
        legacy = BridgeThread(
            sim,
            e2e.broker,
            tmp_path / "legacy.db",
            publishing=Publishing(mode="entity"),
            topics=Topics(base="car2mqtt_legacy"),
            xee=False,
        )
        legacy.start()
        try:
            battery = ha.wait_state(
                "sensor.legacy_car_battery", lambda s: s["state"] not in ("unknown", "unavailable")
            )
            assert battery["attributes"]["device_class"] == "battery"
            states = ha.states()
            for pattern, device_class, unit, _ in EXPECTED:
                entity = pattern.format("legacy_car")
                assert entity in states, entity
                assert states[entity]["attributes"].get("device_class") == device_class
                assert states[entity]["attributes"].get("unit_of_measurement") == unit
            assert "switch.legacy_car_charging_control" in states
            kept = asyncio.run(retained(e2e.broker.port, "homeassistant/#", settle=0.5))
            assert any(t.startswith("homeassistant/sensor/car2mqtt_enode_") for t in kept)
            # A second bridge on the same broker is a device of its own, not the first one's.
            devices = {
                ident[1]: d
                for d in ha.devices()
                for ident in d["identifiers"]
                if ident[0] == "mqtt"
            }
            assert devices["car2mqtt_bridge_car2mqtt_legacy"]["name"] == "car2mqtt car2mqtt_legacy"
            assert devices["car2mqtt_bridge"]["name"] == "car2mqtt"
            assert "sensor.car2mqtt_car2mqtt_legacy_version" in ha.states()
        finally:
            legacy.stop()
    # Home Assistant still answers its API, and the first bridge's device is still there.
    assert "sensor.car2mqtt_version" in ha.states()


def test_two_cars_of_one_model_get_distinct_entity_ids(e2e: Stack, tmp_path: Any) -> None:
    """Two Kia EV6 once both asked for sensor.kia_ev6_battery; HA then made _2 ids in order."""
    ha = e2e.ha
    with running_sim(vehicles=0, seed=11) as sim:
        cars = []
        for _ in range(2):
            r = sim.admin_call("POST", "/enode/vehicles", {"userId": "demo", "vendor": "KIA"})
            assert r.status_code == 201
            cars.append(r.json()["id"])
        fleet = BridgeThread(
            sim, e2e.broker, tmp_path / "fleet.db", topics=Topics(base="car2mqtt_fleet"), xee=False
        )
        fleet.start()
        try:

            def batteries() -> dict[str, str] | None:
                registry = {e["unique_id"]: e["entity_id"] for e in ha.entity_registry()}
                found = {v: registry.get(f"car2mqtt_enode_{v}_battery") for v in cars}
                return found if all(found.values()) else None  # type: ignore[return-value]

            found = wait_until(batteries, 60, "both cars' battery sensors")
            kept = asyncio.run(retained(e2e.broker.port, "homeassistant/device/#", settle=0.5))
            names = {
                v: json.loads(kept[f"homeassistant/device/car2mqtt_enode_{v}/config"])["device"][
                    "name"
                ]
                for v in cars
            }
        finally:
            fleet.stop()
    assert len(set(found.values())) == 2
    for vehicle_id, entity_id in found.items():
        # Each id is the bridge's own, from a name made unique with the vehicle id's tail.
        assert entity_id == f"sensor.{slugify(names[vehicle_id])}_battery", entity_id
        assert names[vehicle_id].startswith("Kia EV6 ")
        tail = names[vehicle_id].removeprefix("Kia EV6 ")
        assert vehicle_id.replace("-", "").endswith(tail)


def test_the_push_sensor_follows_the_webhooks(e2e: Stack, tmp_path: Any) -> None:
    """A bridge on Enode webhooks: Push is active, then degraded once deliveries stop."""
    ha = e2e.ha
    port = free_port()
    account = {
        "name": "home",
        "provider": "enode",
        "api_url": "http://127.0.0.1:1/unused",
        "token_url": "http://127.0.0.1:1/unused",
        "client_id": "unused",
        "client_secret": "unused",
        "user_id": "demo",
    }
    document = {"web": {"host": "127.0.0.1", "port": port}, "accounts": [account]}
    (tmp_path / "push.yaml").write_text(json.dumps(document))
    web = load_config(tmp_path / "push.yaml", env={})  # what the web server answers with
    with running_sim(vehicles=0, seed=13) as sim:
        r = sim.admin_call("POST", "/enode/vehicles", {"userId": "demo", "vendor": "TESLA"})
        assert r.status_code == 201
        pushed = BridgeThread(
            sim,
            e2e.broker,
            tmp_path / "push.db",
            topics=Topics(base="car2mqtt_push"),
            xee=False,
            push=web,
            timing=replace(E2E_TIMING, push_watchdog_s=3.0),
        )
        pushed.start()
        try:
            entity = "sensor.car2mqtt_car2mqtt_push_push"
            state = ha.wait_state(entity, lambda s: s["state"] == "active", timeout=60)
            assert state["attributes"]["device_class"] == "enum"
            assert state["attributes"]["options"] == ["active", "degraded", "off"]
            last = ha.wait_state(
                "sensor.car2mqtt_car2mqtt_push_push_last_delivery",
                lambda s: s["state"] not in ("unknown", "unavailable"),
            )
            assert last["attributes"]["device_class"] == "timestamp"
            assert sim.admin_call("PUT", "/enode/webhook-delivery", {"paused": True}).is_success
            ha.wait_state(entity, lambda s: s["state"] == "degraded", timeout=60)
        finally:
            pushed.stop()
    # The main bridge pushes nothing: its sensor says so.
    assert ha.state("sensor.car2mqtt_push")["state"] == "off"  # type: ignore[index]


def test_zone_privacy_shows_the_zone_and_the_budget_sensors_count(
    e2e: Stack, tmp_path: Any
) -> None:
    """A bridge in `zone` mode with a budget: HA's tracker is the zone's name, no coordinates."""
    ha = e2e.ha
    office = ZoneArea("Office", 59.91, 10.75, 500.0)
    privacy = {"home": Privacy(LocationMode.ZONE, zones=(office,))}
    # Big enough for the test's 1 s polls to fit a real month: a smaller cap stretches them.
    budget = budget_of("home", SystemClock(), BudgetLimits(per_vehicle_month=10_000_000))
    with running_sim(vehicles=0, seed=15) as sim:
        r = sim.admin_call(
            "POST", "/enode/vehicles", {"userId": "demo", "vendor": "TESLA", "displayName": "Zoned"}
        )
        assert r.status_code == 201
        car = r.json()["id"]
        sim.admin_call(
            "PUT", f"/enode/vehicles/{car}/location", {"latitude": 59.912, "longitude": 10.751}
        )
        sim.refresh(car)
        zoned = BridgeThread(
            sim,
            e2e.broker,
            tmp_path / "zone.db",
            topics=Topics(base="car2mqtt_zone"),
            xee=False,
            privacy=privacy,
            budget=budget,
            timing=replace(E2E_TIMING, health_s=0.5),
        )
        zoned.start()
        try:
            tracker = ha.wait_state(
                "device_tracker.zoned_location", lambda s: s["state"] == "Office", timeout=60
            )
            assert "latitude" not in tracker["attributes"]
            assert "longitude" not in tracker["attributes"]
            moved = sim.admin_call(
                "PUT", f"/enode/vehicles/{car}/location", {"latitude": 60.5, "longitude": 11.5}
            )
            assert moved.status_code == 200, moved.text
            sim.refresh(car)
            topic = f"car2mqtt_zone/enode/{car}/location"

            def published() -> bytes | None:
                found = asyncio.run(retained(e2e.broker.port, topic, settle=0.3)).get(topic)
                return found if found == b"not_home" else None

            wait_until(published, 30, f"not_home on {topic}")
            away = ha.wait_state(
                "device_tracker.zoned_location", lambda s: s["state"] == "not_home"
            )
            assert "latitude" not in away["attributes"]
            kept = asyncio.run(retained(e2e.broker.port, "car2mqtt_zone/#", settle=0.5))
            assert not any(b"59.91" in p or b"60.5" in p for p in kept.values())
            # The budget's sensors on this bridge's device.
            prefix = "sensor.car2mqtt_car2mqtt_zone"
            month = ha.wait_state(
                f"{prefix}_api_calls_month",
                lambda s: s["state"] not in ("unknown", "unavailable") and int(s["state"]) > 0,
            )
            assert month["attributes"]["state_class"] == "total_increasing"
            left = ha.wait_state(
                f"{prefix}_api_budget_left", lambda s: s["state"] not in ("unknown", "unavailable")
            )
            assert 9_000_000 < int(left["state"]) < 10_000_000
            interval = ha.state(f"{prefix}_poll_interval")
            assert interval is not None
            assert interval["attributes"]["device_class"] == "duration"
            assert float(interval["state"]) >= 0.5  # E2E_TIMING's active interval, at least
            for name in ("api_calls_hour", "api_calls_today"):
                assert int(ha.state(f"{prefix}_{name}")["state"]) > 0  # type: ignore[index]
        finally:
            zoned.stop()


def test_history_sensors_feed_the_energy_dashboard(e2e: Stack) -> None:
    """Energy charged per car (energy, kWh, total_increasing) and the last session and trip.

    Last in the module: it lets simulated time run on, which the scenarios before it would feel.
    """
    ha, sim = e2e.ha, e2e.sim
    energy = ha.wait_state(
        f"sensor.{VW}_energy_charged",
        lambda s: s["state"] not in ("unknown", "unavailable"),
        timeout=60,
    )
    attributes = energy["attributes"]
    assert (attributes["device_class"], attributes["unit_of_measurement"]) == ("energy", "kWh")
    assert attributes["state_class"] == "total_increasing"  # what the Energy dashboard takes
    before = float(energy["state"])
    sim.advance(1800)  # the charging Volkswagen takes energy meanwhile
    ha.wait_state(
        f"sensor.{VW}_energy_charged",
        lambda s: s["state"] not in ("unknown", "unavailable") and float(s["state"]) > before,
        timeout=60,
    )
    states = ha.states()
    for suffix, device_class, unit in (
        ("last_session_energy", None, "kWh"),
        ("last_session_duration", "duration", "min"),
        ("last_trip_distance", "distance", "km"),
    ):
        entity = states[f"sensor.{TESLA}_{suffix}"]["attributes"]
        assert (entity.get("device_class"), entity["unit_of_measurement"]) == (device_class, unit)
    assert states["sensor.car2mqtt_history_dropped"]["state"] == "0"
