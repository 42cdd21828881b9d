"""The pipeline's seams: a further sink attaches without changing the hub or the publisher.

Against the real simulator over HTTP and a real mosquitto, as the other bridge tests.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from car2mqtt.bridge.events import (
    AccountChanged,
    CommandProgress,
    Event,
    ListingDone,
    VehicleChanged,
)
from car2mqtt.errors import ProviderUnavailable
from car2mqtt.models import CommandStatus, VehicleRef, VehicleState
from car2mqtt.providers.base import Command
from tests.bridge.conftest import TOPICS, bridge_for
from tests.bridge.test_bridge import ref
from tests.bridge.test_hardening import OneShotCloud, until
from tests.mqtt_support import Mosquitto, probe
from tests.support import Sim


class Recorder:
    """A sink of the test's own: keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.changed = asyncio.Event()

    async def on_event(self, event: Event) -> None:
        self.events.append(event)
        self.changed.set()

    async def until(self, check: Callable[[], bool], timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                self.changed.clear()
                await self.changed.wait()


class Broken:
    """A sink with a bug: every event raises."""

    def __init__(self) -> None:
        self.calls = 0

    async def on_event(self, event: Event) -> None:
        self.calls += 1
        msg = "a bug in a sink"
        raise RuntimeError(msg)


async def test_a_further_sink_sees_reads_listings_and_commands(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla = sim.vehicle_ids()[0]
    sim.admin_call("POST", f"/enode/vehicles/{tesla}/plug-in", {"startCharging": False})
    sim.refresh(tesla)
    recorder = Recorder()
    async with bridge_for(sim, mosquitto, tmp_path) as harness, probe(mosquitto.port) as seen:
        bridge = harness.running.bridge
        bridge.add_sink(recorder)
        await recorder.until(lambda: any(isinstance(e, ListingDone) for e in recorder.events))
        changed = [e for e in recorder.events if isinstance(e, VehicleChanged)]
        assert {e.vehicle.ref.vehicle_id for e in changed} == set(sim.vehicle_ids())
        assert all(e.vehicle.state.ref == e.vehicle.ref for e in changed)
        # A command from another way in than MQTT (the web UI, next) takes the same path:
        # every sink, the Home Assistant publisher included, sees each step.
        vehicle = bridge.hub.find("enode", tesla)
        assert vehicle is not None
        bridge.commands.submit(vehicle, Command.START_CHARGING)
        await recorder.until(
            lambda: any(
                isinstance(e, CommandProgress) and e.result.status is CommandStatus.PENDING
                for e in recorder.events
            )
        )
        await seen.wait_json(TOPICS.command_result(ref(tesla)), lambda c: c["status"] == "pending")
        steps = [e.result.status for e in recorder.events if isinstance(e, CommandProgress)]
        assert steps[:2] == [CommandStatus.SENT, CommandStatus.PENDING]


async def test_a_sink_with_a_bug_does_not_stop_the_others(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tesla = sim.vehicle_ids()[0]
    broken = Broken()
    caplog.set_level(logging.ERROR)
    async with bridge_for(sim, mosquitto, tmp_path) as harness, probe(mosquitto.port) as seen:
        harness.running.bridge.add_sink(broken)
        sim.admin_call("PUT", f"/enode/vehicles/{tesla}/battery", {"level": 23})
        sim.refresh(tesla)
        await seen.wait_json(TOPICS.state(ref(tesla)), lambda s: s["battery"] == 23, 15)
    assert broken.calls > 0
    assert any("unexpected error in Broken" in r.getMessage() for r in caplog.records)


async def test_a_cloud_that_fails_tells_the_sinks_once_it_goes_stale(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    recorder = Recorder()
    async with bridge_for(sim, mosquitto, tmp_path) as harness:
        bridge = harness.running.bridge
        bridge.add_sink(recorder)
        await recorder.until(lambda: any(isinstance(e, ListingDone) for e in recorder.events))
        sim.admin_call("PUT", "/faults", {"classes": {"read": {"unavailable": 1.0}}})
        await recorder.until(
            lambda: any(isinstance(e, AccountChanged) and e.account.stale for e in recorder.events)
        )
        stale = [e for e in recorder.events if isinstance(e, AccountChanged)]
        assert len(stale) == 1
        assert stale[0].account.name == "home"
        assert bridge.failures("home") >= 2


class PagedCloud(OneShotCloud):
    """A tiny cloud with two pages, whose second page can fail, and a link problem to report."""

    def __init__(self, account: str, ids: list[str]) -> None:
        super().__init__(account, ids)
        self.second_page_fails = False
        self.problem: str | None = None

    async def pages(self) -> AsyncIterator[list[VehicleState]]:
        cars = await self.poll()
        self.link_problem = self.problem  # known from the first page on
        yield cars[:1]
        if self.second_page_fails:
            msg = "the second page timed out"
            raise ProviderUnavailable(msg)
        yield cars[1:]


def tiny_availability(vid: str) -> str:
    return TOPICS.availability(VehicleRef("tiny", "t", vid))


async def test_a_listing_that_fails_after_its_first_page_counts_as_failing(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cloud = PagedCloud("t", ["a", "b"])
    caplog.set_level(logging.INFO)
    async with (
        bridge_for(sim, mosquitto, tmp_path, providers=lambda _: [cloud]) as harness,
        probe(mosquitto.port) as seen,
    ):
        bridge = harness.running.bridge
        await seen.wait_for(lambda p: p.last(tiny_availability("b")) == b"online")
        cloud.second_page_fails = True
        # Page 1 keeps answering, page 2 never: the count goes on growing (backoff grows,
        # the cars go stale) instead of starting again at 1 with every first page.
        await until(lambda: bridge.failures("t") >= 3)
        await seen.wait_for(
            lambda p: (
                p.last(tiny_availability("a")) == b"offline"
                and p.last(tiny_availability("b")) == b"offline"
            ),
            what="both cars stale",
        )
        cloud.second_page_fails = False
        await seen.wait_for(lambda p: p.last(tiny_availability("b")) == b"online")
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "backing off" in m]) == 1
    assert len([m for m in messages if "answers again" in m]) == 1


async def test_a_link_problem_reaches_the_first_page_of_cars_with_them(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cloud = PagedCloud("t", ["a", "b"])
    async with (
        bridge_for(sim, mosquitto, tmp_path, providers=lambda _: [cloud]),
        probe(mosquitto.port) as seen,
    ):
        state_a = TOPICS.state(VehicleRef("tiny", "t", "a"))
        await seen.wait_json(state_a, lambda s: s["battery"] == 50)
        seen.messages.clear()
        cloud.problem = "the vendor revoked access"
        await seen.wait_json(TOPICS.bridge_state, lambda s: s["problem"] == "ON")
        # Each car's state went out once, already with the problem, not once without it and
        # again with it.
        sent = [json.loads(p) for t, p, _ in seen.messages if t == state_a]
        assert sent
        assert all(s["relink_required"] == "ON" for s in sent)
