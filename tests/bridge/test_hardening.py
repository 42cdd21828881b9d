"""What a new user and a hostile tester hit (issue 9), against the real simulator and mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import resource
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from iotcore import Broker

from car2mqtt.bridge.root import Bridge
from car2mqtt.ha.discovery import slugify
from car2mqtt.models import (
    CommandResult,
    CommandStatus,
    VehicleInfo,
    VehicleRef,
    VehicleState,
)
from car2mqtt.providers.base import Command, CommandValue, Grant, ProviderSpec
from car2mqtt.store import Store
from tests.bridge.conftest import TOPICS, bridge_for, enode_provider, xee_provider
from tests.bridge.test_bridge import device_topic, ref, wait_retained
from tests.bridge.test_cli import write_config
from tests.mqtt_support import Mosquitto, Probe, free_port, probe, publish, retained
from tests.support import Sim, run_cli, running_sim, started_cli


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait until `check()` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.05)
    msg = f"timed out waiting for {check}"
    raise AssertionError(msg)


def polled(bridge: Bridge, times: int) -> bool:
    """Whether `bridge` has polled `times` times."""
    return bridge.polls >= times


def plugged_in_tesla(sim: Sim) -> str:
    """Plug the parked Tesla in (not charging) and let Enode see it; return its id."""
    tesla = sim.vehicle_ids()[0]
    sim.admin_call("POST", f"/enode/vehicles/{tesla}/plug-in", {"startCharging": False})
    sim.refresh(tesla)
    return tesla


async def pending_start(seen: Probe, port: int, tesla: str) -> None:
    """Send ON to the plugged-in Tesla, as Home Assistant would; wait until it is pending."""
    await seen.wait_json(TOPICS.state(ref(tesla)), lambda s: s["plugged_in"] == "ON")
    await publish(port, TOPICS.command(ref(tesla), "charging"), b"ON")
    await seen.wait_json(TOPICS.command_result(ref(tesla)), lambda c: c["status"] == "pending")


def commands_log(records: Sequence[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if "retained command" in r.getMessage()]


# ---- retained commands -----------------------------------------------------------------------


async def test_a_command_retained_while_the_bridge_is_connected_is_refused_and_cleared(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    vw = sim.vehicle_ids()[1]  # charging: a retained OFF would stop it
    topic = TOPICS.command(ref(vw), "charging")
    caplog.set_level(logging.WARNING)
    async with bridge_for(sim, mosquitto, tmp_path) as harness, probe(mosquitto.port) as seen:
        await seen.wait_json(TOPICS.state(ref(vw)), lambda s: "battery" in s)
        assert harness.running.link.protocol == "5"
        await publish(mosquitto.port, topic, b"OFF", retain=True)
        # The bridge clears it: the broker hands it to no one any more.
        await seen.wait_for(lambda p: (topic, b"", True) in p.messages or p.last(topic) == b"")
        assert topic not in await retained(mosquitto.port, topic)
        await asyncio.sleep(0.5)
        assert seen.last(TOPICS.command_result(ref(vw))) is None
        assert seen.last(TOPICS.error(ref(vw))) is None  # the clearing is not a bad command
    assert commands_log(caplog.records)
    assert sim.live(vw)["chargeMode"] in ("INITIALIZING", "CHARGING")


@pytest.mark.parametrize("broker_kind", ["mosquitto", "embedded"])
async def test_under_mqtt_311_a_live_retained_command_is_refused_and_a_fresh_one_works(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, broker_kind: str
) -> None:
    vw = sim.vehicle_ids()[1]  # charging: a retained OFF would stop it
    topic = TOPICS.command(ref(vw), "charging")
    result = TOPICS.command_result(ref(vw))
    with contextlib.ExitStack() as stack:
        # mosquitto forced to 3.1.1, or the demo's own broker, which speaks nothing else.
        broker = (
            mosquitto
            if broker_kind == "mosquitto"
            else stack.enter_context(only_311_broker(tmp_path))
        )
        async with (
            bridge_for(
                sim, broker, tmp_path, protocol="auto" if broker_kind != "mosquitto" else "3.1.1"
            ) as harness,
            probe(broker.port) as seen,
        ):
            await seen.wait_json(TOPICS.state(ref(vw)), lambda s: "battery" in s)
            assert harness.running.link.protocol == "3.1.1"
            # 3.1.1 forwards it with the retain flag cleared: it looks like any command.
            await publish(broker.port, topic, b"OFF", retain=True)
            await wait_retained(broker.port, lambda r: topic not in r)  # cleared by the bridge
            await asyncio.sleep(0.5)
            assert seen.last(result) is None
            assert sim.live(vw)["chargeMode"] in ("INITIALIZING", "CHARGING")
            # The same command, not retained, is carried out.
            await publish(broker.port, topic, b"OFF")
            done = await seen.wait_json(result, lambda c: c["status"] != "sent", timeout=15)
    assert done["command"] == "stop_charging"
    assert done["status"] in ("pending", "confirmed")


async def test_an_empty_message_on_a_command_topic_is_not_rejected(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tesla = sim.vehicle_ids()[0]
    caplog.set_level(logging.WARNING)
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        await seen.wait_json(TOPICS.state(ref(tesla)), lambda s: "battery" in s)
        await publish(mosquitto.port, TOPICS.command(ref(tesla), "charging"), b"")
        await publish(mosquitto.port, TOPICS.command(ref(tesla), "charging"), b"MAYBE")
        # The bad one is reported; the empty one, sent first, left no trace.
        error = await seen.wait_json(TOPICS.error(ref(tesla)), lambda e: "error" in e)
        assert "MAYBE" in error["error"]
        errors = [p for t, p, _ in seen.messages if t == TOPICS.error(ref(tesla))]
        assert len(errors) == 1
    assert not [r for r in caplog.records if "rejected command ''" in r.getMessage()]


async def test_a_command_with_an_empty_vehicle_id_is_logged(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        await seen.wait_for(lambda p: bool(p.topics("car2mqtt/enode/")))
        await publish(mosquitto.port, "car2mqtt/enode//charging/set", b"ON")
        await asyncio.sleep(0.3)
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("car2mqtt/enode//charging/set" in m and "none of them empty" in m for m in said)


# ---- MQTT version ---------------------------------------------------------------------------


def mosquitto_protocols(broker: Mosquitto) -> list[str]:
    """The protocol versions mosquitto logged for each client connection of the bridge."""
    log = (broker.workdir / "mosquitto.log").read_text()
    return [
        line.split("(", 1)[1].split(",", 1)[0]
        for line in log.splitlines()
        if "as car2mqtt-test (" in line
    ]


async def test_mqtt_311_forced_is_what_the_broker_sees(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla = sim.vehicle_ids()[0]
    async with bridge_for(sim, mosquitto, tmp_path, protocol="3.1.1") as harness:
        await wait_retained(mosquitto.port, lambda r: device_topic(tesla) in r)
        assert harness.running.link.protocol == "3.1.1"
    assert mosquitto_protocols(mosquitto) == ["p2"]  # mosquitto's name for MQTT 3.1.1


async def test_auto_speaks_mqtt_5_to_a_broker_that_can(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla = sim.vehicle_ids()[0]
    async with bridge_for(sim, mosquitto, tmp_path, protocol="auto") as harness:
        await wait_retained(mosquitto.port, lambda r: device_topic(tesla) in r)
        assert harness.running.link.protocol == "5"
    assert mosquitto_protocols(mosquitto) == ["p5"]


@contextlib.contextmanager
def only_311_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """The demo's embedded broker (rumqttd), which answers no MQTT 5 CONNECT."""
    port = free_port()
    broker = Broker(port=port, listen="127.0.0.1").start()
    try:
        yield Mosquitto(tmp_path / "unused", port=port)  # only its address is used
    finally:
        broker.stop()


async def test_auto_falls_back_to_311_on_a_broker_that_speaks_only_that(
    sim: Sim, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The demo's embedded broker answers no MQTT 5 CONNECT: once a silent timeout for ever.
    caplog.set_level(logging.INFO)
    with only_311_broker(tmp_path) as broker:
        async with bridge_for(sim, broker, tmp_path, protocol="auto") as harness:
            await asyncio.wait_for(harness.running.link.connected.wait(), 30)
            assert harness.running.link.protocol == "3.1.1"
    messages = [r.getMessage() for r in caplog.records]
    assert any("did not accept MQTT 5" in m for m in messages)
    assert any("(MQTT 3.1.1)" in m and "connected" in m for m in messages)


async def test_a_forced_mqtt_5_on_a_311_broker_names_the_likely_cause(
    sim: Sim, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with only_311_broker(tmp_path) as broker:
        async with bridge_for(sim, broker, tmp_path, protocol="5") as harness:
            await until(lambda: any("mqtt.protocol" in r.getMessage() for r in caplog.records))
            assert not harness.running.link.connected.is_set()
    hint = next(r.getMessage() for r in caplog.records if "mqtt.protocol" in r.getMessage())
    assert 'set mqtt.protocol to "3.1.1"' in hint


# ---- an unreadable car is never gone -----------------------------------------------------------


async def test_garbled_xee_answers_after_restarts_never_remove_a_car(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with running_sim() as sim:

        def providers(store: Store) -> list[Any]:
            return [xee_provider(sim, store)]

        async with bridge_for(sim, mosquitto, tmp_path, providers=providers) as harness:
            kept = await wait_retained(
                mosquitto.port,
                lambda r: (
                    len([t for t in r if t.startswith("homeassistant/device/car2mqtt_xee")]) == 2
                ),
            )
            cars = {t for t in kept if t.startswith("homeassistant/device/car2mqtt_xee")}
            assert harness.running.bridge.polls >= 1
        fault = {"classes": {"read": {"malformed": 0.5}}}
        assert sim.admin_call("PUT", "/xee/faults", fault).status_code == 200
        async with probe(mosquitto.port) as seen:
            for _ in range(8):
                async with bridge_for(sim, mosquitto, tmp_path, providers=providers) as harness:
                    await until(functools.partial(polled, harness.running.bridge, 3))
        cleared = [t for t, p, _ in seen.messages if t in cars and p == b""]
        assert cleared == []
        assert cars <= set(await retained(mosquitto.port))


class OneShotCloud:
    """A provider of the test suite's own: lists what the test says, marks what it says."""

    spec = ProviderSpec(
        name="tiny",
        title="Tiny",
        grant=Grant.CLIENT_CREDENTIALS,
        poll_interval_s=0.3,
        active_poll_interval_s=0.3,
        min_poll_interval_s=0.1,
        commands=frozenset(),
    )

    def __init__(self, account: str, ids: list[str]) -> None:
        self.account = account
        self.link_problem: str | None = None
        self.unreadable: frozenset[str] = frozenset()
        self.ids = ids
        self.calls = 0

    async def poll(self) -> list[VehicleState]:
        self.calls += 1
        return [
            VehicleState(
                info=VehicleInfo(
                    ref=VehicleRef("tiny", self.account, vid), vendor="tiny", model="One"
                ),
                battery_pct=50.0,
                last_seen=datetime.now(UTC),
            )
            for vid in self.ids
            if vid not in self.unreadable
        ]

    async def pages(self) -> AsyncIterator[list[VehicleState]]:
        yield await self.poll()

    async def send_command(
        self, ref: VehicleRef, command: Command, value: CommandValue = None
    ) -> CommandResult:
        raise NotImplementedError

    async def command_status(self, ref: VehicleRef, result: CommandResult) -> CommandResult:
        return result

    async def reload_credentials(self) -> bool:
        return False

    async def aclose(self) -> None:
        return None


def tiny_device(vid: str) -> str:
    return TOPICS.device_config(VehicleRef("tiny", "t", vid))


async def test_a_car_marked_unreadable_keeps_its_device(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cloud = OneShotCloud("t", ["a", "b"])
    async with bridge_for(sim, mosquitto, tmp_path, providers=lambda _: [cloud]):
        await wait_retained(
            mosquitto.port, lambda r: {tiny_device("a"), tiny_device("b")} <= set(r)
        )
        cloud.unreadable = frozenset({"b"})
        start = cloud.calls
        await until(lambda: cloud.calls >= start + 3)
        assert tiny_device("b") in await retained(mosquitto.port)
        cloud.unreadable = frozenset()
        cloud.ids = ["a"]  # now the clean list says it is gone
        await wait_retained(mosquitto.port, lambda r: tiny_device("b") not in r)


async def test_removing_a_car_leaves_a_car_whose_id_it_prefixes(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cloud = OneShotCloud("t", ["v1", "v10"])
    async with bridge_for(sim, mosquitto, tmp_path, providers=lambda _: [cloud]):
        await wait_retained(
            mosquitto.port, lambda r: {tiny_device("v1"), tiny_device("v10")} <= set(r)
        )
    # Restarted, the bridge knows both from its state file and must find v1's topics only.
    cloud = OneShotCloud("t", ["v10"])
    async with bridge_for(sim, mosquitto, tmp_path, providers=lambda _: [cloud]):
        await wait_retained(mosquitto.port, lambda r: tiny_device("v1") not in r)
        kept = await retained(mosquitto.port)
    assert tiny_device("v10") in kept
    assert json.loads(kept[tiny_device("v10")])["components"]


# ---- names and entity ids --------------------------------------------------------------------


async def test_cars_of_one_model_get_distinct_stable_names_and_entity_ids(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with running_sim(vehicles=12) as sim:
        ids = sim.vehicle_ids()

        async def announced() -> dict[str, tuple[str, set[str]]]:
            kept = await wait_retained(
                mosquitto.port, lambda r: all(device_topic(v) in r for v in ids), timeout=20
            )
            found = {}
            for vid in ids:
                config = json.loads(kept[device_topic(vid)])
                entity_ids = {c["default_entity_id"] for c in config["components"].values()}
                found[vid] = (config["device"]["name"], entity_ids)
            return found

        with Store.open(tmp_path / "probe.db") as store:
            cloud = enode_provider(sim, store)
            cloud_names = [s.info.name for s in await cloud.poll()]
            await cloud.aclose()
        # The fleet does have cars of one model: the case this test is about.
        assert len(set(cloud_names)) < len(cloud_names), cloud_names
        async with bridge_for(sim, mosquitto, tmp_path):
            first = await announced()
        names = [name for name, _ in first.values()]
        assert len({slugify(n) for n in names}) == len(names), names
        every_id = [e for _, ents in first.values() for e in ents]
        assert len(every_id) == len(set(every_id))
        async with bridge_for(sim, mosquitto, tmp_path):
            again = await announced()
        assert again == first


# ---- state file -------------------------------------------------------------------------------


@contextlib.contextmanager
def no_room_for_writes() -> Iterator[None]:
    """Make every file write of this process fail, as on a full disk (RLIMIT_FSIZE of 0)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # Past the limit the kernel sends SIGXFSZ, which kills by default; ignored, write() fails.
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


async def test_a_state_file_that_cannot_be_written_is_one_line_and_publishing_goes_on(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tesla = sim.vehicle_ids()[0]
    caplog.set_level(logging.INFO)
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        await seen.wait_json(TOPICS.state(ref(tesla)), lambda s: s["plugged_in"] == "OFF")
        with no_room_for_writes():
            for vid in sim.vehicle_ids():
                sim.admin_call("POST", f"/enode/vehicles/{vid}/plug-in", {"startCharging": False})
                sim.refresh(vid)
            # Every save fails from here on; the cars keep coming through from memory.
            await seen.wait_json(TOPICS.state(ref(tesla)), lambda s: s["plugged_in"] == "ON")
            await asyncio.sleep(1.0)
            failing = [r for r in caplog.records if "cannot save" in r.getMessage()]
        await asyncio.sleep(1.0)  # room again: the next save goes through
    assert len(failing) == 1, [r.getMessage() for r in failing]
    assert "Still publishing from memory" in failing[0].getMessage()
    assert any("can be written again" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.exc_info]


# ---- commands across a restart ---------------------------------------------------------------


async def test_a_pending_action_left_by_a_stopped_bridge_is_followed_to_its_end(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla = plugged_in_tesla(sim)
    result = TOPICS.command_result(ref(tesla))
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        await pending_start(seen, mosquitto.port, tesla)
        # Junk on the same control is refused, and must not hide the pending one from a restart.
        await publish(mosquitto.port, TOPICS.command(ref(tesla), "charging"), b"MAYBE")
        await seen.wait_json(result, lambda c: c["status"] == "rejected")
        # A refresh is another control: kept beside it.
        await publish(mosquitto.port, TOPICS.command(ref(tesla), "refresh"), b"PRESS")
        await seen.wait_json(result, lambda c: c["command"] == "refresh")
    sim.advance(130)  # the vendor acts while no bridge runs
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        done = await seen.wait_json(
            result,
            lambda c: c["command"] == "start_charging" and c["status"] == "confirmed",
            timeout=15,
        )
    assert done["action_id"]


async def test_a_refused_command_names_the_command_it_asked_for(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with running_sim(vehicles=4) as fleet:
        kia = fleet.vehicle_ids()[3]  # cannot be controlled
        async with bridge_for(fleet, mosquitto, tmp_path), probe(mosquitto.port) as seen:
            await seen.wait_json(TOPICS.state(ref(kia)), lambda s: "battery" in s)
            await publish(mosquitto.port, TOPICS.command(ref(kia), "charging"), b"off")
            refused = await seen.wait_json(
                TOPICS.command_result(ref(kia)), lambda c: c["status"] == "rejected"
            )
    assert refused["command"] == "stop_charging"  # not the control's name, "charging"


async def test_a_sent_command_without_an_action_is_failed_on_start(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla = sim.vehicle_ids()[0]
    async with bridge_for(sim, mosquitto, tmp_path) as harness:
        await wait_retained(mosquitto.port, lambda r: device_topic(tesla) in r)
        sent = {"command": "start_charging", "status": "sent", "at": "2026-12-01T10:00:00Z"}
        # What a bridge killed between sending and the cloud's answer leaves behind.
        harness.store.save_command(
            ref(tesla).key, "charging", {**sent, "action_id": None, "reason": None}
        )
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        failed = await seen.wait_json(
            TOPICS.command_result(ref(tesla)), lambda c: c["status"] == "failed"
        )
    assert "stopped before the cloud answered" in failed["reason"]


# ---- status agrees with the bridge ------------------------------------------------------------


async def test_the_state_file_holds_the_link_state_the_bridge_sees(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla = sim.vehicle_ids()[0]
    async with bridge_for(sim, mosquitto, tmp_path) as harness:
        await wait_retained(mosquitto.port, lambda r: device_topic(tesla) in r)
        # A link that was fine all along equals the in-memory default: once never saved.
        assert harness.store.account_statuses()["home"] == ("ok", None)
        harness.store.save_account_status("home", "relink_required", "an earlier run's problem")
    async with bridge_for(sim, mosquitto, tmp_path) as harness:
        await wait_retained(mosquitto.port, lambda r: device_topic(tesla) in r)
        bridge = harness.running.bridge
        await until(lambda: bridge.polls >= 2)
        assert harness.store.account_statuses()["home"] == ("ok", None)


# ---- repeated input -------------------------------------------------------------------------


async def test_a_burst_of_births_is_one_republish(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla = sim.vehicle_ids()[0]
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        await seen.wait_for(lambda p: p.last(device_topic(tesla)) is not None)
        await asyncio.sleep(0.5)
        before = len([t for t, _, _ in seen.messages if t == device_topic(tesla)])
        # A burst, as a misbehaving client (or 50 HA restarts in a row) would send it.
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="births") as client:
            for _ in range(50):
                await client.publish(TOPICS.ha_status, b"online", qos=0)
        await asyncio.sleep(1.0)
        after = len([t for t, _, _ in seen.messages if t == device_topic(tesla)])
    # Once 50 republishes. Now births coalesce while one waits: the one running, the one
    # waiting, and at most one more if the burst outlasts a republish on a loaded machine.
    assert 1 <= after - before <= 3


async def test_refresh_is_limited_to_one_a_minute_per_car(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla = sim.vehicle_ids()[0]
    result = TOPICS.command_result(ref(tesla))
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        await seen.wait_json(TOPICS.state(ref(tesla)), lambda s: "battery" in s)
        for _ in range(10):
            await publish(mosquitto.port, TOPICS.command(ref(tesla), "refresh"), b"PRESS")
        # Any message, not the last: the refresh that went through may settle after the
        # rejections and be the last word on the topic.
        await seen.wait_for(
            lambda p: any(
                t == result and payload and "one a minute" in payload.decode()
                for t, payload, _ in p.messages
            ),
            what=f"a rejection on {result}",
        )
        await asyncio.sleep(1.0)
    outcomes = [json.loads(p) for t, p, _ in seen.messages if t == result and p]
    dropped = [c for c in outcomes if c["status"] == CommandStatus.REJECTED]
    sent = [c for c in outcomes if c["status"] == CommandStatus.SENT]
    assert len(sent) == 1
    assert dropped
    assert all("one a minute" in c["reason"] for c in dropped)


# ---- as a user runs it -------------------------------------------------------------------------


def test_run_on_a_damaged_state_file_is_one_line_and_exit_code_2(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    path = write_config(tmp_path, sim, mosquitto)
    state = tmp_path / "car2mqtt.db"
    with Store.open(state) as store:
        for i in range(300):
            store.save_state(f"k{i}", "t", {"v": "x" * 300})
    data = bytearray(state.read_bytes())
    data[4096 * 5 : 4096 * 6] = b"\x00\xff" * 2048
    state.write_bytes(bytes(data))
    result = run_cli("run", "--config", str(path), timeout=30)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    assert "is damaged" in result.stderr
    assert f"{state}.damaged" in result.stderr.replace("\n", "")


def test_sigkill_while_a_command_is_pending_then_restart_follows_it_to_its_end(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla = plugged_in_tesla(sim)
    path = write_config(tmp_path, sim, mosquitto)
    result = TOPICS.command_result(ref(tesla))

    def command_now() -> dict[str, Any] | None:
        kept = asyncio.run(retained(mosquitto.port, result, settle=0.3))
        return json.loads(kept[result]) if result in kept else None

    with started_cli("run", "--config", str(path)) as proc:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            kept = asyncio.run(retained(mosquitto.port, TOPICS.state(ref(tesla)), settle=0.3))
            if b'"plugged_in":"ON"' in kept.get(TOPICS.state(ref(tesla)), b""):
                break
        asyncio.run(publish(mosquitto.port, TOPICS.command(ref(tesla), "charging"), b"ON"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (command_now() or {}).get("status") != "pending":
            pass
        proc.kill()  # SIGKILL: no goodbye, no cleanup
        proc.wait(timeout=10)
    assert (command_now() or {}).get("status") == "pending"
    sim.advance(130)  # the vendor acts while no bridge runs
    with started_cli("run", "--config", str(path)):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (command_now() or {}).get("status") == "pending":
            pass
        final = command_now()
    assert final is not None
    assert final["status"] == "confirmed", final
    assert final["command"] == "start_charging"


# ---- what a code review found --------------------------------------------------------------------


async def test_a_publish_the_broker_did_not_take_is_sent_again_on_the_next_poll(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla = sim.vehicle_ids()[0]
    state_topic = TOPICS.state(ref(tesla))
    async with bridge_for(sim, mosquitto, tmp_path) as harness, probe(mosquitto.port) as seen:
        await seen.wait_json(state_topic, lambda s: s["plugged_in"] == "OFF")
        link, bridge = harness.running.link, harness.running.bridge
        refused: list[bytes | str] = []

        async def once_refused(topic: str, payload: bytes | str, **options: Any) -> bool:
            # What MqttLink.publish says when the broker fails to ack (aiomqtt's MqttError).
            if topic == state_topic and not refused:
                refused.append(payload)
                return False
            return await link.publish(topic, payload, **options)

        bridge.attach(once_refused, protocol=lambda: link.protocol)
        sim.admin_call("POST", f"/enode/vehicles/{tesla}/plug-in", {"startCharging": False})
        sim.refresh(tesla)
        # The next poll carries the same data: only a digest noted too early would skip it.
        await seen.wait_json(state_topic, lambda s: s["plugged_in"] == "ON")
    assert refused
    assert b'"plugged_in":"ON"' in (
        refused[0] if isinstance(refused[0], bytes) else refused[0].encode()
    )


async def test_an_unreadable_command_status_is_one_warning_then_one_recovery(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tesla = plugged_in_tesla(sim)
    result = TOPICS.command_result(ref(tesla))
    caplog.set_level(logging.INFO)
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        await pending_start(seen, mosquitto.port, tesla)
        down = {"classes": {"read": {"unavailable": 1.0}}}
        assert sim.admin_call("PUT", "/faults", down).status_code == 200
        await until(
            lambda: any("cannot read what became" in r.getMessage() for r in caplog.records)
        )
        await asyncio.sleep(1.0)  # several more status reads fail meanwhile
        assert sim.admin_call("PUT", "/faults", {"profile": "none"}).status_code == 200
        sim.advance(130)
        await seen.wait_json(result, lambda c: c["status"] == "confirmed", timeout=15)
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "cannot read what became" in m]) == 1
    assert len([m for m in messages if "can be read again" in m]) == 1


class FailsToClose(OneShotCloud):
    """A provider whose connections cannot be closed."""

    async def aclose(self) -> None:
        msg = "the socket was already gone"
        raise RuntimeError(msg)


async def test_a_provider_that_fails_to_close_is_one_warning(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    cloud = FailsToClose("t", ["a"])
    async with bridge_for(sim, mosquitto, tmp_path, providers=lambda _: [cloud]):
        await wait_retained(mosquitto.port, lambda r: tiny_device("a") in r)
    said = [r.getMessage() for r in caplog.records if "closing its connections" in r.getMessage()]
    assert said == ["account t: closing its connections failed: the socket was already gone"]


async def test_a_second_birth_later_is_a_second_republish(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla = sim.vehicle_ids()[0]
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        await seen.wait_for(lambda p: p.last(device_topic(tesla)) is not None)

        def configs(probe: Probe) -> int:
            return len([t for t, _, _ in probe.messages if t == device_topic(tesla)])

        for _ in range(3):  # Home Assistant restarting now and then
            before = configs(seen)

            def grew(probe: Probe, before: int = before) -> bool:
                return configs(probe) > before

            await publish(mosquitto.port, TOPICS.ha_status, b"online")
            await seen.wait_for(grew, 10, "a republish after this birth")


async def test_the_last_runs_link_state_holds_until_a_poll_says_otherwise(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with Store.open(tmp_path / "state" / "car2mqtt.db") as store:
        store.save_account_status("home", "relink_required", "an earlier run's problem")
    down = {"classes": {"read": {"unavailable": 1.0}}}
    assert sim.admin_call("PUT", "/faults", down).status_code == 200
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        state = await seen.wait_json(TOPICS.bridge_state, lambda s: "accounts" in s)
        assert state["accounts"]["home"]["link"] == "relink_required"
        assert state["problem"] == "ON"
        assert sim.admin_call("PUT", "/faults", {"profile": "none"}).status_code == 200
        await seen.wait_json(TOPICS.bridge_state, lambda s: s["accounts"]["home"]["link"] == "ok")


async def test_auto_asks_with_mqtt_5_again_when_311_failed_too(
    sim: Sim, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A broker not up yet behind a proxy: the connection is taken, then closed at once.
    caplog.set_level(logging.INFO)
    port = free_port()

    async def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    proxy = await asyncio.start_server(hang_up, "127.0.0.1", port)
    broker = Mosquitto(tmp_path / "broker", port=port)
    broker.workdir.mkdir()
    try:
        async with bridge_for(sim, broker, tmp_path, protocol="auto") as harness:
            await until(
                lambda: any("did not accept MQTT 5" in r.getMessage() for r in caplog.records)
            )
            await until(lambda: harness.running.link.protocol is None)
            proxy.close()
            await proxy.wait_closed()
            broker.start()  # the real broker, which speaks MQTT 5
            await asyncio.wait_for(harness.running.link.connected.wait(), 30)
            assert harness.running.link.protocol == "5"
    finally:
        broker.stop()


async def test_availability_set_offline_by_someone_else_is_said_online_again(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    tesla = sim.vehicle_ids()[0]
    async with bridge_for(sim, mosquitto, tmp_path):
        await wait_retained(mosquitto.port, lambda r: device_topic(tesla) in r)
        # What a second bridge on the same base topic leaves behind when it stops.
        await publish(mosquitto.port, TOPICS.bridge_availability, b"offline", retain=True)
        await wait_retained(
            mosquitto.port, lambda r: r.get(TOPICS.bridge_availability) == b"online"
        )
    assert any("same base_topic or client_id" in r.getMessage() for r in caplog.records)


async def test_two_bridges_with_one_client_id_are_told_so(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    async with (
        bridge_for(sim, mosquitto, tmp_path / "one"),
        bridge_for(sim, mosquitto, tmp_path / "two"),
    ):
        # The broker drops the older connection each time the other one connects.
        await until(lambda: any("same client_id" in r.getMessage() for r in caplog.records), 30)
    said = next(r.getMessage() for r in caplog.records if "same client_id" in r.getMessage())
    assert "'car2mqtt-test'" in said
    assert "mqtt.client_id" in said
