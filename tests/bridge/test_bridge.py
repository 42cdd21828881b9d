"""The bridge end to end: the real simulator over HTTP, a real mosquitto, the bridge in-process."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from car2mqtt.bridge.publisher import Publishing
from car2mqtt.clock import SimClock
from car2mqtt.ha.discovery import DiscoveryMode
from car2mqtt.models import VehicleRef
from tests.bridge.conftest import TOPICS, bridge_for
from tests.enode_spec import EnodeSpec
from tests.mqtt_support import Mosquitto, probe, publish, retained
from tests.support import START, EnodeClient, Sim, running_sim

pytestmark = pytest.mark.asyncio


def ref(vehicle_id: str, account: str = "home") -> VehicleRef:
    return VehicleRef("enode", account, vehicle_id)


def device_topic(vehicle_id: str) -> str:
    return TOPICS.device_config(ref(vehicle_id))


async def wait_retained(
    port: int, check: Any, *, timeout: float = 10.0, pattern: str = "#"
) -> dict[str, bytes]:
    """Poll the broker's retained set until `check(retained)` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: dict[str, bytes] = {}
    while loop.time() < deadline:
        last = await retained(port, pattern, settle=0.2)
        if check(last):
            return last
    msg = f"retained messages never satisfied the check; have {sorted(last)}"
    raise AssertionError(msg)


async def test_vehicles_appear_with_discovery_and_state(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla, vw, xpeng = sim.vehicle_ids()
    async with bridge_for(sim, mosquitto, tmp_path):
        topics = {device_topic(v) for v in (tesla, vw, xpeng)}
        kept = await wait_retained(mosquitto.port, lambda r: topics <= set(r))
        assert kept[TOPICS.bridge_availability] == b"online"
    after = await retained(mosquitto.port)
    assert after[TOPICS.bridge_availability] == b"offline"  # said on a clean stop
    config = json.loads(kept[device_topic(tesla)])
    device = config["device"]
    assert device["identifiers"] == [f"car2mqtt_enode_{tesla}"]
    assert device["manufacturer"] == "Tesla"
    assert device["model"] == "Model 3"
    assert device["via_device"] == "car2mqtt_bridge"
    assert "serial_number" not in device  # VINs are personal data: opt-in
    assert config["origin"]["name"] == "car2mqtt"
    assert config["availability_mode"] == "all"
    assert [a["topic"] for a in config["availability"]] == [
        TOPICS.bridge_availability,
        TOPICS.availability(ref(tesla)),
    ]
    components = config["components"]
    battery = components["battery"]
    assert battery["platform"] == "sensor"
    assert battery["unique_id"] == f"car2mqtt_enode_{tesla}_battery"
    assert battery["device_class"] == "battery"
    assert battery["unit_of_measurement"] == "%"
    assert battery["state_class"] == "measurement"
    assert battery["state_topic"] == TOPICS.state(ref(tesla))
    assert battery["default_entity_id"].startswith("sensor.")
    assert battery["object_id"]
    assert components["odometer"]["state_class"] == "total"
    assert components["location"]["platform"] == "device_tracker"
    assert components["charging_control"]["platform"] == "switch"
    assert components["refresh"]["platform"] == "button"
    # XPENG reports no odometer: no odometer entity at all.
    assert "odometer" not in json.loads(kept[device_topic(xpeng)])["components"]

    state = json.loads(kept[TOPICS.state(ref(vw))])
    assert state["plugged_in"] == "ON"
    assert state["charge_state"] == "initializing"
    assert isinstance(state["battery"], (int, float))
    assert state["relink_required"] == "OFF"
    location = json.loads(kept[TOPICS.location(ref(tesla))])
    assert {"latitude", "longitude", "gps_accuracy"} <= set(location)
    bridge_state = json.loads(kept[TOPICS.bridge_state])
    assert bridge_state["vehicles"] == 3
    assert bridge_state["problem"] == "OFF"


async def test_uncontrollable_vehicle_gets_no_switch(mosquitto: Mosquitto, tmp_path: Path) -> None:
    with running_sim(vehicles=4) as sim:
        kia = sim.vehicle_ids()[3]
        async with bridge_for(sim, mosquitto, tmp_path):
            kept = await wait_retained(mosquitto.port, lambda r: device_topic(kia) in r)
    components = json.loads(kept[device_topic(kia)])["components"]
    assert "charging_control" not in components
    assert "battery" in components


async def test_republishes_on_home_assistant_birth(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla = sim.vehicle_ids()[0]
    async with bridge_for(sim, mosquitto, tmp_path):
        await wait_retained(mosquitto.port, lambda r: device_topic(tesla) in r)
        # Someone wipes the retained config (as a broker without persistence would).
        await publish(mosquitto.port, device_topic(tesla), b"", retain=True)
        await wait_retained(mosquitto.port, lambda r: device_topic(tesla) not in r)
        await publish(mosquitto.port, TOPICS.ha_status, b"online")
        kept = await wait_retained(mosquitto.port, lambda r: device_topic(tesla) in r)
        assert TOPICS.state(ref(tesla)) in kept


async def test_recovers_after_broker_restart_with_nothing_missing(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    ids = sim.vehicle_ids()
    async with bridge_for(sim, mosquitto, tmp_path) as harness:
        before = await wait_retained(
            mosquitto.port, lambda r: all(device_topic(v) in r for v in ids)
        )
        mosquitto.stop()
        await asyncio.sleep(0.5)
        mosquitto.start()  # same port, empty: persistence is off
        after = await wait_retained(mosquitto.port, lambda r: set(before) <= set(r))
        assert after[TOPICS.bridge_availability] == b"online"
        assert harness.running.link.connections == 2
    assert set(after) >= set(before)


async def test_command_round_trip_through_the_action_lifecycle(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla = sim.vehicle_ids()[0]
    sim.admin_call("POST", f"/enode/vehicles/{tesla}/plug-in", {"startCharging": False})
    sim.refresh(tesla)
    command_topic = TOPICS.command_result(ref(tesla))
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        await seen.wait_json(TOPICS.state(ref(tesla)), lambda s: s["plugged_in"] == "ON")
        await publish(mosquitto.port, TOPICS.command(ref(tesla), "charging"), b"ON")
        pending = await seen.wait_json(command_topic, lambda c: c["status"] == "pending")
        assert pending["command"] == "start_charging"
        assert pending["action_id"]
        sim.advance(130)  # the vendor acts and Enode confirms from device data
        await seen.wait_json(command_topic, lambda c: c["status"] == "confirmed")
        state = await seen.wait_json(
            TOPICS.state(ref(tesla)), lambda s: s["charging"] == "ON", timeout=10
        )
        assert state["charge_state"] == "charging"
        statuses = [json.loads(p)["status"] for t, p, _ in seen.messages if t == command_topic]
        assert statuses == ["sent", "pending", "confirmed"]
        retained_cmds = [t for t, _, r in seen.messages if r and t.endswith("/set")]
        assert retained_cmds == []  # command topics are never retained


async def test_rejected_command_is_reported(sim: Sim, mosquitto: Mosquitto, tmp_path: Path) -> None:
    tesla = sim.vehicle_ids()[0]  # unplugged: Enode answers 400
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        await seen.wait_json(TOPICS.state(ref(tesla)), lambda s: s["plugged_in"] == "OFF")
        await publish(mosquitto.port, TOPICS.command(ref(tesla), "charging"), b"ON")
        result = await seen.wait_json(
            TOPICS.command_result(ref(tesla)), lambda c: c["status"] == "rejected"
        )
        assert "not plugged in" in result["reason"]


@pytest.mark.parametrize(
    ("control", "payload", "needle"),
    [
        ("charging", b"MAYBE", "MAYBE"),
        ("charging", b"\xff\xfe", "UTF-8"),
        ("teleport", b"ON", "teleport"),
        ("refresh", b"ON", "PRESS"),
    ],
)
async def test_invalid_command_payloads_change_nothing(
    sim: Sim,
    mosquitto: Mosquitto,
    tmp_path: Path,
    control: str,
    payload: bytes,
    needle: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tesla = sim.vehicle_ids()[0]
    caplog.set_level(logging.WARNING)
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        await seen.wait_json(TOPICS.state(ref(tesla)), lambda s: "battery" in s)
        await publish(mosquitto.port, TOPICS.command(ref(tesla), control), payload)
        error = await seen.wait_json(TOPICS.error(ref(tesla)), lambda e: "error" in e)
        assert needle in error["error"]
        last = await seen.wait_json(
            TOPICS.command_result(ref(tesla)), lambda c: c["status"] == "rejected"
        )
        assert needle in last["reason"]
    assert any("rejected command" in r.getMessage() for r in caplog.records)
    live = sim.live(tesla)
    assert live["chargeMode"] == "UNPLUGGED"


async def test_retained_commands_are_ignored(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    vw = sim.vehicle_ids()[1]  # charging: a STOP would be accepted
    await publish(mosquitto.port, TOPICS.command(ref(vw), "charging"), b"OFF", retain=True)
    caplog.set_level(logging.WARNING)
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        await seen.wait_json(TOPICS.state(ref(vw)), lambda s: "battery" in s)
        await asyncio.sleep(0.5)
        assert seen.last(TOPICS.command_result(ref(vw))) is None
    assert any("retained command" in r.getMessage() for r in caplog.records)
    assert sim.live(vw)["chargeMode"] in ("INITIALIZING", "CHARGING")


async def test_pagination_beyond_fifty_vehicles(mosquitto: Mosquitto, tmp_path: Path) -> None:
    with running_sim(vehicles=60) as sim:
        ids = sim.vehicle_ids()
        async with bridge_for(sim, mosquitto, tmp_path) as harness:
            kept = await wait_retained(
                mosquitto.port, lambda r: all(device_topic(v) in r for v in ids), timeout=20
            )
            bridge = harness.running.bridge
            calls, polls = bridge.api_calls, bridge.polls
    assert len([t for t in kept if t.startswith("homeassistant/device/car2mqtt_enode_")]) == 60
    # Two pages per poll and nothing per vehicle: list calls only, in steady state.
    assert calls <= 2 * polls + 2


async def test_vehicle_removed_clears_its_entities(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla = sim.vehicle_ids()[0]
    async with bridge_for(sim, mosquitto, tmp_path):
        await wait_retained(mosquitto.port, lambda r: device_topic(tesla) in r)
        assert sim.admin_call("DELETE", f"/enode/vehicles/{tesla}").status_code == 204
        # Nothing of the removed car stays retained: config, state, availability, location.
        kept = await wait_retained(mosquitto.port, lambda r: not [t for t in r if tesla in t])
    assert device_topic(sim.vehicle_ids()[1]) in kept


@pytest.mark.parametrize(
    ("rule", "status"),
    [({"rateLimit": 1.0, "retryAfter": 1}, "429"), ({"unavailable": 1.0}, "503")],
)
async def test_cloud_errors_back_off_mark_stale_and_recover(
    sim: Sim,
    mosquitto: Mosquitto,
    tmp_path: Path,
    rule: dict[str, Any],
    status: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tesla = sim.vehicle_ids()[0]
    availability = TOPICS.availability(ref(tesla))
    caplog.set_level(logging.INFO)
    async with bridge_for(sim, mosquitto, tmp_path) as harness, probe(mosquitto.port) as seen:
        await seen.wait_for(lambda p: p.last(availability) == b"online", what="online")
        polls_before = harness.running.bridge.polls
        sim.admin_call("PUT", "/faults", {"classes": {"read": rule}})
        await seen.wait_for(lambda p: p.last(availability) == b"offline", what="stale")
        await asyncio.sleep(2.0)
        polls_during = harness.running.bridge.polls - polls_before
        sim.admin_call("PUT", "/faults", {"profile": "none"})
        await seen.wait_for(lambda p: p.last(availability) == b"online", timeout=10, what="back")
    # Backing off: far fewer polls than the 0.4 s interval would make in the same time.
    assert polls_during <= 8
    warnings = [r for r in caplog.records if "backing off" in r.getMessage()]
    assert len(warnings) == 1, "one log line per change of state, not per attempt"
    assert any("answers again" in r.getMessage() for r in caplog.records)


async def test_one_failing_account_does_not_stop_another(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla = sim.vehicle_ids()[0]
    accounts = [{}, {"account": "broken", "secret": "not-the-secret"}]
    async with (
        bridge_for(sim, mosquitto, tmp_path, accounts=accounts),
        probe(mosquitto.port) as seen,
    ):
        bridge_state = await seen.wait_json(
            TOPICS.bridge_state, lambda b: b["accounts"]["broken"]["link"] == "relink_required"
        )
        await seen.wait_json(TOPICS.state(ref(tesla)), lambda s: "battery" in s)
    assert bridge_state["problem"] == "ON"
    assert "invalid_client" in bridge_state["accounts"]["broken"]["problem"]
    assert bridge_state["accounts"]["home"]["link"] == "ok"


async def test_invalidated_credentials_show_relink_needed(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tesla = sim.vehicle_ids()[0]
    caplog.set_level(logging.ERROR)
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        await seen.wait_json(TOPICS.state(ref(tesla)), lambda s: s["relink_required"] == "OFF")
        sim.admin_call("POST", "/enode/users/demo/invalidate-credentials", {"vendor": "TESLA"})
        await seen.wait_json(TOPICS.state(ref(tesla)), lambda s: s["relink_required"] == "ON")
    lines = [r.getMessage() for r in caplog.records]
    assert any("car2mqtt link enode --account home" in line for line in lines)


async def test_deauthorized_user_shows_relink_needed(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, spec: EnodeSpec
) -> None:
    tesla = sim.vehicle_ids()[0]
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        await seen.wait_json(TOPICS.state(ref(tesla)), lambda s: s["relink_required"] == "OFF")
        client = EnodeClient(sim, spec)
        try:
            assert client.request("DELETE", "/users/demo/authorization").status_code == 204
        finally:
            client.close()
        sim.advance(10 * 60)  # the cars' next refreshes find no credentials
        state = await seen.wait_json(
            TOPICS.state(ref(tesla)), lambda s: s["relink_required"] == "ON"
        )
        assert state["reachable"] == "OFF"


async def test_token_renewed_before_expiry_on_an_accelerated_clock(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # Half a simulated hour per real second on both sides: an hour-long token lives 2 s.
    with running_sim(time_factor=1800.0) as sim:
        clock = SimClock(START, 1800.0)
        clock.advance(max(0.0, sim_now(sim) - clock.time()))
        async with bridge_for(sim, mosquitto, tmp_path, clock=clock) as harness:
            provider = harness.running.bridge.provider("home")
            await asyncio.sleep(5.5)  # about 2.75 simulated hours
            renewals = provider.tokens.renewals  # type: ignore[attr-defined]
            failures = harness.running.bridge.failures("home")
            polls = harness.running.bridge.polls
    assert renewals >= 3  # the first token and at least two renewals before expiry
    assert failures == 0
    assert polls >= 5  # polling went on throughout (fewer on a loaded machine)


async def test_token_renewed_after_a_401_when_clocks_disagree(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # The bridge runs on real time, the cloud ages tokens 600x faster: only the 401 path
    # (renew once, retry once) keeps the data flowing.
    with running_sim(time_factor=1800.0) as sim:
        tesla = sim.vehicle_ids()[0]
        async with bridge_for(sim, mosquitto, tmp_path) as harness, probe(mosquitto.port) as seen:
            await asyncio.sleep(4.5)
            sim.admin_call("PUT", f"/enode/vehicles/{tesla}/battery", {"level": 17})
            await seen.wait_json(TOPICS.state(ref(tesla)), lambda s: s["battery"] == 17, 15)
            provider = harness.running.bridge.provider("home")
            assert provider.tokens.renewals >= 2  # type: ignore[attr-defined]


async def test_per_entity_discovery_mode(sim: Sim, mosquitto: Mosquitto, tmp_path: Path) -> None:
    tesla = sim.vehicle_ids()[0]
    battery_topic = TOPICS.entity_config("sensor", ref(tesla), "battery")
    async with bridge_for(sim, mosquitto, tmp_path, publishing=Publishing(mode="entity")):
        kept = await wait_retained(mosquitto.port, lambda r: battery_topic in r)
    config = json.loads(kept[battery_topic])
    assert config["unique_id"] == f"car2mqtt_enode_{tesla}_battery"
    assert config["device"]["identifiers"] == [f"car2mqtt_enode_{tesla}"]
    assert device_topic(tesla) not in kept


async def test_mqtt_311(sim: Sim, mosquitto: Mosquitto, tmp_path: Path) -> None:
    tesla = sim.vehicle_ids()[0]
    async with bridge_for(sim, mosquitto, tmp_path, protocol="3.1.1") as harness:
        await wait_retained(mosquitto.port, lambda r: device_topic(tesla) in r)
        # test_hardening.py checks the version in mosquitto's own log as well.
        assert harness.running.link.protocol == "3.1.1"


def sim_now(sim: Sim) -> float:
    now = sim.admin_call("GET", "/").json()["now"]
    return datetime.fromisoformat(now.replace("Z", "+00:00")).timestamp()


async def test_a_bug_in_one_poll_does_not_stop_the_bridge(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tesla = sim.vehicle_ids()[0]
    caplog.set_level(logging.ERROR)
    async with bridge_for(sim, mosquitto, tmp_path) as harness, probe(mosquitto.port) as seen:
        provider = harness.running.bridge.provider("home")
        real_pages = provider.pages
        calls = {"n": 0}

        async def pages_with_a_bug() -> Any:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("a bug")
            async for page in real_pages():
                yield page

        provider.pages = pages_with_a_bug  # type: ignore[method-assign]
        harness.running.bridge.provider("home")  # still there
        await asyncio.sleep(0.1)
        sim.admin_call("PUT", f"/enode/vehicles/{tesla}/battery", {"level": 21})
        sim.refresh(tesla)
        await seen.wait_json(TOPICS.state(ref(tesla)), lambda s: s["battery"] == 21, 15)
        assert not harness.running.task.done()
    assert any("unexpected error while polling" in r.getMessage() for r in caplog.records)


async def test_after_a_restart_known_cars_go_stale_while_the_cloud_is_down(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla = sim.vehicle_ids()[0]
    availability = TOPICS.availability(ref(tesla))
    async with bridge_for(sim, mosquitto, tmp_path):
        await wait_retained(mosquitto.port, lambda r: r.get(availability) == b"online")
    sim.admin_call("PUT", "/faults", {"classes": {"read": {"unavailable": 1.0}}})
    async with bridge_for(sim, mosquitto, tmp_path):  # same state file: the car is known
        await wait_retained(mosquitto.port, lambda r: r.get(availability) == b"offline")
        kept = await retained(mosquitto.port)
        # Known from the last run, but nothing is invented while the cloud is away.
        config = json.loads(kept[device_topic(tesla)])
        assert config["device"]["name"] == "Tesla Model 3"


async def test_a_car_removed_while_the_broker_is_down_is_cleared_once_it_is_back(
    sim: Sim, tmp_path: Path
) -> None:
    # A broker that keeps retained messages on disk, as Home Assistant's add-on does: the
    # removed car's discovery comes back with it and must then be cleared, or HA keeps a ghost.
    workdir = tmp_path / "broker"
    workdir.mkdir()
    broker = Mosquitto(
        workdir,
        extra_config=f"persistence true\npersistence_location {workdir}/\nallow_anonymous true\n",
    )
    tesla, marker = sim.vehicle_ids()[0], "test/persisted"
    broker.start()
    try:
        async with bridge_for(sim, broker, tmp_path) as harness:
            await wait_retained(broker.port, lambda r: device_topic(tesla) in r)
            await publish(broker.port, marker, b"kept", retain=True)
            broker.stop()
            assert sim.admin_call("DELETE", f"/enode/vehicles/{tesla}").status_code == 204
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while ref(tesla) in harness.store.known_vehicles("home"):
                assert loop.time() < deadline, "no poll noticed the removal"
                await asyncio.sleep(0.05)
            broker.start()
            # The marker proves the broker kept its retained messages across the restart.
            kept = await wait_retained(
                broker.port,
                lambda r: (
                    marker in r
                    and not [t for t in r if tesla in t]
                    and not harness.store.pending_removals()
                ),
                timeout=20,
            )
            assert not [t for t in harness.store.published() if tesla in t]
            assert tesla not in json.dumps(harness.store.load_states())
        assert device_topic(sim.vehicle_ids()[1]) in kept
    finally:
        broker.stop()


def enode_api_calls(sim: Sim) -> int:
    calls: int = sim.admin_call("GET", "/").json()["apiCalls"]["enode"]
    return calls


async def test_a_command_during_backoff_waits_for_retry_after(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla = sim.vehicle_ids()[0]
    sim.admin_call("POST", f"/enode/vehicles/{tesla}/plug-in", {"startCharging": False})
    sim.refresh(tesla)
    retry_after = 3.0
    async with bridge_for(sim, mosquitto, tmp_path) as harness, probe(mosquitto.port) as seen:
        bridge, loop = harness.running.bridge, asyncio.get_running_loop()
        await seen.wait_json(TOPICS.state(ref(tesla)), lambda s: s["plugged_in"] == "ON")
        rule = {"rateLimit": 1.0, "retryAfter": int(retry_after)}
        sim.admin_call("PUT", "/faults", {"classes": {"read": rule}})
        await seen.wait_for(lambda _: bridge.failures("home") > 0, what="a refused poll")
        refused_at = loop.time()
        # The cloud answers again at once, so any call before Retry-After is counted below.
        sim.admin_call("PUT", "/faults", {"profile": "none"})
        before = enode_api_calls(sim)
        await publish(mosquitto.port, TOPICS.command(ref(tesla), "charging"), b"ON")
        await seen.wait_json(TOPICS.command_result(ref(tesla)), lambda c: c["status"] == "pending")
        # The command's wake-up (after_command_poll_s, 0.2 s) and its status checks come due
        # well inside the window; none of them may read from the cloud before it ends.
        await asyncio.sleep(refused_at + retry_after - 0.5 - loop.time())
        assert enode_api_calls(sim) == before + 2  # the charging action and its refresh hint
        assert bridge.failures("home") == 1
        await seen.wait_for(lambda _: bridge.failures("home") == 0, what="recovery")
        # refused_at is when this test saw the failure, a little after the bridge started its
        # backoff; without Retry-After the bridge would have polled again after ~0.2 s.
        assert loop.time() >= refused_at + retry_after - 0.25
        sim.advance(130)
        await seen.wait_json(
            TOPICS.command_result(ref(tesla)), lambda c: c["status"] == "confirmed"
        )


async def test_a_newer_command_supersedes_the_one_in_flight(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tesla = sim.vehicle_ids()[0]
    sim.admin_call("POST", f"/enode/vehicles/{tesla}/plug-in", {"startCharging": False})
    sim.refresh(tesla)
    command_topic, charging = (
        TOPICS.command_result(ref(tesla)),
        TOPICS.command(ref(tesla), "charging"),
    )
    caplog.set_level(logging.INFO)
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        await seen.wait_json(TOPICS.state(ref(tesla)), lambda s: s["plugged_in"] == "ON")
        await publish(mosquitto.port, charging, b"ON")
        await publish(mosquitto.port, charging, b"OFF")
        await seen.wait_json(
            command_topic, lambda c: (c["command"], c["status"]) == ("stop_charging", "pending")
        )
        sim.advance(130)  # Enode cancelled the START for the newer STOP, and carries that out
        last = await seen.wait_json(command_topic, lambda c: c["status"] == "confirmed")
        state = await seen.wait_json(TOPICS.state(ref(tesla)), lambda s: s["charging"] == "OFF")
        await asyncio.sleep(0.5)  # anything the older command still had to say would be here
        steps = [json.loads(p) for t, p, _ in seen.messages if t == command_topic]
    assert [(s["command"], s["status"]) for s in steps] == [
        ("start_charging", "sent"),
        ("start_charging", "pending"),
        ("start_charging", "cancelled"),
        ("stop_charging", "sent"),
        ("stop_charging", "pending"),
        ("stop_charging", "confirmed"),
    ]
    assert "superseded" in steps[2]["reason"]
    assert steps[2]["action_id"] == steps[1]["action_id"] != last["action_id"]
    assert last["command"] == "stop_charging"
    assert state["charge_state"] != "charging"
    assert sim.live(tesla)["chargeMode"] != "CHARGING"
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize(("before", "after"), [("entity", "device"), ("device", "entity")])
async def test_switching_discovery_mode_migrates_the_old_topics(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, before: DiscoveryMode, after: DiscoveryMode
) -> None:
    tesla = sim.vehicle_ids()[0]
    car = f"car2mqtt_enode_{tesla}"

    def configs(kept: dict[str, bytes]) -> set[str]:
        return {t for t in kept if t.startswith("homeassistant/") and car in t}

    async with bridge_for(sim, mosquitto, tmp_path, publishing=Publishing(mode=before)):
        old = configs(await wait_retained(mosquitto.port, lambda r: bool(configs(r))))
    async with (
        probe(mosquitto.port) as seen,
        bridge_for(sim, mosquitto, tmp_path, publishing=Publishing(mode=after)) as harness,
    ):
        kept = await wait_retained(mosquitto.port, lambda r: bool(configs(r)) and not old & set(r))
        published = set(harness.store.published())
    new = configs(kept)
    assert new
    assert not new & old
    assert all(json.loads(kept[t])["device"]["identifiers"] == [car] for t in new)
    assert not old & published  # forgotten once cleared, so never cleared again
    # Home Assistant's order: mark every old topic, announce the new ones, then clear the old.
    steps = [(t, p) for t, p, retain in seen.messages if t in old | new and not retain]
    first_new = next(i for i, (t, _) in enumerate(steps) if t in new)
    marked = steps[:first_new]
    assert sorted(t for t, _ in marked) == sorted(old)
    assert all(json.loads(p) == {"migrate_discovery": True} for _, p in marked)
    cleared = [t for t, p in steps[first_new:] if t in old]
    assert sorted(cleared) == sorted(old)
    assert all(p == b"" for t, p in steps[first_new:] if t in old)
