"""Stopping the bridge when a library loses the cancellation on the way."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from car2mqtt.mqtt.link import BrokerSettings, MqttLink
from tests.bridge.conftest import TOPICS, bridge_for
from tests.mqtt_support import Mosquitto
from tests.support import Sim

pytestmark = pytest.mark.asyncio


async def test_a_cancel_lost_inside_a_publish_still_stops_the_poll_loop(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # aiomqtt waits for a publish's ack with asyncio.wait_for, which on Python 3.11 returns
    # normally when the cancel arrives together with the ack. MqttLink delivers such a cancel
    # again; this publish function of someone else's loses it, once, in the poll loop's
    # end-of-poll `bridge/state`, and the poll loop must still stop.
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


class LosingLink(MqttLink):
    """A link whose aiomqtt client loses one cancel, after the broker's ack of `topic`."""

    def __init__(self, broker: Mosquitto, topic: str, payload: bytes) -> None:
        super().__init__(
            BrokerSettings.from_url(broker.url, client_id="car2mqtt-test"),
            availability_topic=TOPICS.bridge_availability,
            subscriptions=[],
            on_connect=self._connected,
            on_message=self._message,
        )
        self.lose = (topic, payload)
        self.victim: asyncio.Task[Any] | None = None  # the task whose cancel is lost
        self.lost = asyncio.Event()

    async def _connected(self) -> None:
        pass

    async def _message(self, topic: str, payload: bytes, retained: bool) -> None:
        pass

    def _make_client(self, version: str, *, checker: bool = False) -> aiomqtt.Client:
        client = super()._make_client(version, checker=checker)
        acked = client.publish

        async def publish(topic: str, payload: bytes, **kwargs: Any) -> None:
            await acked(topic, payload, **kwargs)
            if (topic, payload) == self.lose and not self.lost.is_set():
                # What asyncio.wait_for does on Python 3.11 when the cancel comes with the ack.
                assert self.victim is not None
                self.victim.cancel()
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    self.lost.set()

        client.publish = publish  # type: ignore[method-assign,assignment]
        return client


async def test_a_cancel_lost_inside_the_links_online_publish_still_stops_the_link(
    mosquitto: Mosquitto,
) -> None:
    link = LosingLink(mosquitto, TOPICS.bridge_availability, b"online")
    link.victim = task = asyncio.create_task(link.run())
    await link.lost.wait()
    # Before the fix the link subscribed and waited for messages, and this never ended
    # (pytest-timeout ends the test).
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert link.connections == 1


async def test_a_cancel_lost_inside_a_link_publish_reaches_its_caller(
    mosquitto: Mosquitto,
) -> None:
    link = LosingLink(mosquitto, "car2mqtt/test", b"x")
    running = asyncio.create_task(link.run())
    try:
        await link.connected.wait()
        link.victim = caller = asyncio.create_task(link.publish("car2mqtt/test", b"x"))
        # Before the fix the publish returned True and the caller ran on.
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert link.lost.is_set()
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


class LosingConnectLink(LosingLink):
    """A link whose aiomqtt client loses one cancel, after the broker's CONNACK."""

    def _make_client(self, version: str, *, checker: bool = False) -> aiomqtt.Client:
        client = super()._make_client(version, checker=checker)
        link = self

        class Losing(type(client)):  # type: ignore[misc]
            async def __aenter__(self) -> aiomqtt.Client:
                entered = await super().__aenter__()
                if not link.lost.is_set():
                    # What asyncio.wait_for does on Python 3.11 when the cancel comes with the
                    # CONNACK: aiomqtt waits for it so.
                    assert link.victim is not None
                    link.victim.cancel()
                    try:
                        await asyncio.Event().wait()
                    except asyncio.CancelledError:
                        link.lost.set()
                return entered  # type: ignore[no-any-return]

        client.__class__ = Losing
        return client


async def test_a_cancel_lost_inside_the_connect_still_stops_the_link(
    mosquitto: Mosquitto,
) -> None:
    link = LosingConnectLink(mosquitto, "", b"")
    link.victim = task = asyncio.create_task(link.run())
    await link.lost.wait()
    # Before the fix the link said online, subscribed and waited for messages, and this never
    # ended: a bridge stopped just as it connected hung (pytest-timeout ends the test).
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert task.cancelled()


async def test_a_stop_while_waiting_for_the_connack_closes_the_connection() -> None:
    # A broker that takes the TCP connection and never answers the CONNECT.
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await accepted.put((reader, writer))

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = MqttLink(
        BrokerSettings.from_url(f"mqtt://127.0.0.1:{port}", client_id="car2mqtt-test"),
        availability_topic=TOPICS.bridge_availability,
        subscriptions=[],
        on_connect=_nothing,
        on_message=_nothing,
    )
    task = asyncio.create_task(link.run())
    try:
        reader, _ = await asyncio.wait_for(accepted.get(), 10)
        await asyncio.wait_for(reader.readexactly(2), 10)  # the CONNECT is on its way
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        # Before the fix the socket stayed open until garbage collection (a ResourceWarning
        # that failed whichever test was running then).
        assert await asyncio.wait_for(reader.read(), 5) is not None  # EOF: the link closed it
        assert reader.at_eof()
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def _nothing(*_: object) -> None:
    return None
