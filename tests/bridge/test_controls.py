"""Charging controls end to end: MQTT commands with values reach the simulator and come back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from car2mqtt.models import VehicleRef
from tests.bridge.conftest import TOPICS, bridge_for
from tests.mqtt_support import Mosquitto, Probe, probe, publish
from tests.support import Sim

pytestmark = pytest.mark.asyncio


def ref(vehicle_id: str) -> VehicleRef:
    return VehicleRef("enode", "home", vehicle_id)


async def send(port: int, vehicle_id: str, control: str, payload: bytes) -> None:
    """Publish a command as Home Assistant does (never retained)."""
    await publish(port, TOPICS.command(ref(vehicle_id), control), payload)


async def last_command(seen: Probe, vehicle_id: str, command: str, status: str) -> dict[str, Any]:
    """Wait for the car's *Last command* to be `command` in `status`."""
    found: dict[str, Any] = await seen.wait_json(
        TOPICS.command_result(ref(vehicle_id)),
        lambda c: (c["command"], c["status"]) == (command, status),
        timeout=10,
    )
    return found


async def test_max_current_is_set_through_an_action_and_the_number_follows(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla = sim.vehicle_ids()[0]
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        config = await seen.wait_json(
            TOPICS.device_config(ref(tesla)), lambda c: "max_current_setting" in c["components"]
        )
        number = config["components"]["max_current_setting"]
        assert (number["platform"], number["min"], number["max"]) == ("number", 6, 48)
        await seen.wait_json(TOPICS.state(ref(tesla)), lambda s: s.get("max_current") == 16)
        await send(mosquitto.port, tesla, "max_current", b"10")
        pending = await last_command(seen, tesla, "set_max_current", "pending")
        assert pending["value"] == "10"
        assert pending["action_id"]
        sim.advance(130)  # the vendor acts; Enode confirms once the car reports 10 A
        await last_command(seen, tesla, "set_max_current", "confirmed")
        await seen.wait_json(TOPICS.state(ref(tesla)), lambda s: s.get("max_current") == 10)
    assert sim.live(tesla)["maxCurrent"] == 10


async def test_smart_charging_policy_status_and_charge_now(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla = sim.vehicle_ids()[0]
    sim.admin_call("POST", f"/enode/vehicles/{tesla}/plug-in", {"startCharging": False})
    sim.refresh(tesla)
    state_topic = TOPICS.state(ref(tesla))
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        await seen.wait_json(
            state_topic, lambda s: s["plugged_in"] == "ON" and s["smart_charging"] == "OFF"
        )
        assert seen.json(state_topic)["smart_charging_status"] == "disabled"
        # Enode refuses smart charging without a deadline: set one first, and a minimum.
        await send(mosquitto.port, tesla, "charge_deadline", b"06:30:00")
        await last_command(seen, tesla, "set_charge_deadline", "confirmed")
        await send(mosquitto.port, tesla, "min_charge_limit", b"30")
        await last_command(seen, tesla, "set_min_charge_limit", "confirmed")
        await send(mosquitto.port, tesla, "smart_charging", b"ON")
        await last_command(seen, tesla, "enable_smart_charging", "confirmed")
        policy = sim.live(tesla)["smartChargingPolicy"]
        assert policy == {"isEnabled": True, "deadline": "06:30", "minimumChargeLimit": 30}
        state = await seen.wait_json(
            state_topic,
            lambda s: (
                s["smart_charging"] == "ON"
                and s["charge_deadline"] == "06:30"
                and s["min_charge_limit"] == 30
                and s["smart_charging_status"] not in ("disabled", None)
            ),
        )
        assert state["smart_charging_status"] in ("started", "stopped", "considering")
        # A plain START is Enode's to refuse while smart charging is in control ...
        await send(mosquitto.port, tesla, "charging", b"ON")
        refused = await last_command(seen, tesla, "start_charging", "rejected")
        assert "Smart Charging" in refused["reason"]
        # ... and charge now overrides the plan until it is ended.
        await send(mosquitto.port, tesla, "charge_now", b"START")
        await last_command(seen, tesla, "charge_now", "pending")
        sim.advance(130)
        await last_command(seen, tesla, "charge_now", "confirmed")
        await seen.wait_json(
            state_topic,
            lambda s: s["charge_now_active"] == "ON" and s["smart_charging_status"] == "overridden",
        )
        assert sim.live(tesla)["smartOverride"] is True
        await send(mosquitto.port, tesla, "charge_now", b"END")
        await last_command(seen, tesla, "end_charge_now", "confirmed")
        await seen.wait_json(state_topic, lambda s: s["charge_now_active"] == "OFF")
        assert sim.live(tesla)["smartOverride"] is False
        await send(mosquitto.port, tesla, "charge_now", b"END")  # nothing left to end
        ended = await last_command(seen, tesla, "end_charge_now", "rejected")
        assert ended["reason"] == "no charge now is active"
        await send(mosquitto.port, tesla, "smart_charging", b"OFF")
        await seen.wait_json(
            state_topic,
            lambda s: s["smart_charging"] == "OFF" and s["smart_charging_status"] == "disabled",
        )


@pytest.mark.parametrize(
    ("control", "payload", "needle"),
    [
        ("max_current", b"5", "from 6 to 48"),
        ("max_current", b"lots", "not a number"),
        ("min_charge_limit", b"120", "from 0 to 100"),
        ("charge_deadline", b"7:61", "HH:MM"),
        ("charge_now", b"NOW", "START, END"),
    ],
)
async def test_bad_setting_values_reach_no_cloud(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, control: str, payload: bytes, needle: str
) -> None:
    tesla = sim.vehicle_ids()[0]
    before = sim.live(tesla)
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        await seen.wait_json(TOPICS.state(ref(tesla)), lambda s: "battery" in s)
        await send(mosquitto.port, tesla, control, payload)
        error = await seen.wait_json(TOPICS.error(ref(tesla)), lambda e: "error" in e)
        assert needle in error["error"]
        result = await seen.wait_json(
            TOPICS.command_result(ref(tesla)), lambda c: c["status"] == "rejected"
        )
        assert needle in result["reason"]  # our words: the value was refused before Enode
    after = sim.live(tesla)
    assert (after["maxCurrent"], after["smartChargingPolicy"]) == (
        before["maxCurrent"],
        before["smartChargingPolicy"],
    )


async def test_a_car_without_the_capabilities_gets_no_controls_and_refuses_them(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    vw = sim.vehicle_ids()[1]  # a Volkswagen: smart charging, but no max current
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        config = await seen.wait_json(TOPICS.device_config(ref(vw)), lambda c: "components" in c)
        components = config["components"]
        assert "max_current_setting" not in components
        assert components["max_current"]["platform"] == "sensor"  # read-only, as before
        assert "smart_charging" in components
        await send(mosquitto.port, vw, "max_current", b"10")
        error = await seen.wait_json(TOPICS.error(ref(vw)), lambda e: "error" in e)
        assert "lacks 'set_max_current'" in error["error"]
    assert json.dumps(sim.live(vw)["maxCurrent"]) == "16"
