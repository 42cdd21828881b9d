"""The pipelined outbox against a real mosquitto: in order, bounded, nothing lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from car2mqtt.bridge.outbox import Outbox
from car2mqtt.bridge.tasks import Spawner
from car2mqtt.mqtt.link import BrokerSettings, MqttLink
from tests.bridge.test_hardening import until
from tests.mqtt_support import Mosquitto, probe


async def nothing(*_: object) -> None:
    return None


Connected = tuple[MqttLink, Spawner, asyncio.Task[None]]


@contextlib.asynccontextmanager
async def connected(
    broker: Mosquitto,
) -> AsyncIterator[tuple[MqttLink, Spawner, asyncio.Task[None]]]:
    """A real link to `broker` and a spawner attached to a task group, until the block ends."""
    link = MqttLink(
        BrokerSettings.from_url(broker.url, client_id="outbox-test"),
        availability_topic="outbox/availability",
        subscriptions=[],
        on_connect=nothing,
        on_message=nothing,
    )
    spawner = Spawner()
    started = asyncio.Event()

    async def run() -> None:
        async with asyncio.TaskGroup() as tg:
            spawner.attach(tg)
            tg.create_task(link.run())
            started.set()

    task = asyncio.create_task(run())
    await started.wait()
    await asyncio.wait_for(link.connected.wait(), 10)
    try:
        yield link, spawner, task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_many_messages_to_one_topic_arrive_all_and_in_order(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with connected(mosquitto) as (link, spawner, _), probe(mosquitto.port, "o/#") as seen:
        in_flight = peak = 0

        async def counting(topic: str, payload: bytes | str, **options: object) -> bool:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await link.publish(topic, payload, retain=False, qos=1)
            finally:
                in_flight -= 1

        outbox = Outbox(spawner.start, window=16)
        outbox.publish_fn = counting
        futures = [await outbox.send("o/one", str(n), retain=False) for n in range(600)]
        await outbox.drain()
        assert all(f.result() for f in futures)
        await seen.wait_for(lambda p: len(p.messages) >= 600, what="600 messages")
    assert [payload for _, payload, _ in seen.messages] == [str(n).encode() for n in range(600)]
    # More than one at a time (pipelined), never more than the window.
    assert 1 < peak <= 16
    # A window of publishes awaiting acks is the design, not something to warn about.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_broker_that_goes_away_fails_the_messages_it_did_not_take(
    mosquitto: Mosquitto,
) -> None:
    async with connected(mosquitto) as (link, spawner, _):
        outbox = Outbox(spawner.start)
        outbox.publish_fn = link.publish
        assert await (await outbox.send("o/a", b"1", retain=True))
        mosquitto.stop()
        await until(lambda: not link.connected.is_set(), 10)
        assert not await (await outbox.send("o/a", b"2", retain=True))


async def test_cancelling_the_task_group_stops_messages_in_flight_at_once(
    mosquitto: Mosquitto,
) -> None:
    async with connected(mosquitto) as (_, spawner, task):
        never = asyncio.Event()

        async def stuck(topic: str, payload: bytes | str, **options: object) -> bool:
            await never.wait()  # a broker that never acks
            return True

        outbox = Outbox(spawner.start, window=4)
        outbox.publish_fn = stuck
        futures = [await outbox.send("o/x", b"x", retain=False) for _ in range(4)]
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done
        assert all(f.done() and not f.result() for f in futures)


async def test_messages_whose_tasks_never_started_still_answer_and_free_their_slots() -> None:
    sent: list[str] = []

    async def publish(topic: str, payload: bytes | str, **options: object) -> bool:
        sent.append(topic)
        return True

    spawner = Spawner()
    outbox = Outbox(spawner.start, window=2)
    outbox.publish_fn = publish
    futures: list[asyncio.Future[bool]] = []

    class Stop(Exception):
        pass

    async def send_then_stop() -> None:
        async with asyncio.TaskGroup() as tg:
            spawner.attach(tg)
            futures.extend([await outbox.send("o/x", b"x", retain=False) for _ in range(2)])
            # The group is cancelled before either task took its first step.
            raise Stop

    with pytest.raises(ExceptionGroup):
        await send_then_stop()
    assert sent == []
    assert [f.result() for f in futures] == [False, False]
    # Both slots are free again: two more go out at once without waiting.
    spawner.attach(None)
    again = [await outbox.send("o/y", b"y", retain=False) for _ in range(2)]
    assert [f.result() for f in again] == [True, True]
