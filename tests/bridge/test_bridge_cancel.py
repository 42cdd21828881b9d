"""Stopping the bridge when a library loses the cancellation on the way."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.bridge.conftest import TOPICS, bridge_for
from tests.mqtt_support import Mosquitto
from tests.support import Sim

pytestmark = pytest.mark.asyncio


async def test_a_cancel_lost_inside_a_publish_still_stops_the_poll_loop(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # aiomqtt waits for a publish's ack with asyncio.wait_for, which on Python 3.11 returns
    # normally when the cancel arrives together with the ack. This publish loses the cancel
    # that way, once, in the poll loop's end-of-poll `bridge/state`.
    async with bridge_for(sim, mosquitto, tmp_path) as harness:
        run, lost = harness.running, asyncio.Event()
        publish = run.link.publish

        async def losing_the_cancel(
            topic: str, payload: bytes | str, *, retain: bool = False, qos: int = 1
        ) -> bool:
            task = asyncio.current_task()
            assert task is not None
            poller = task.get_name().startswith("poll-")
            if topic == TOPICS.bridge_state and poller and not lost.is_set():
                run.task.cancel()  # reaches this task through both task groups
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    lost.set()  # and nothing re-raises it
            return await publish(topic, payload, retain=retain, qos=qos)

        run.bridge.attach(losing_the_cancel)
        await lost.wait()
        # Leaving the block waits for the bridge to stop. Before the fix the poll loop ran on,
        # polling, and this block never ended (pytest-timeout ends the test).
    assert run.task.cancelled()
