"""Pipelined QoS 1 publishing: a bounded window of messages in flight, in order.

Waiting for each PUBACK before sending the next message caps throughput at one message per
round trip. The outbox sends at once and lets the acks come back later, with at most `window`
messages in flight. Order holds: each message is its own task, tasks start in the order they
were created, and the first step of each hands the message to the MQTT client, which writes
them to one connection in that order. So nothing for one topic is reordered, and a message
that failed is followed only by messages that were sent after it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Protocol

WINDOW = 32

Payload = Mapping[str, Any] | str | bytes | None


class PublishFn(Protocol):
    """`await publish(topic, payload, retain=..., qos=...)`: whether the broker took it."""

    def __call__(
        self, topic: str, payload: bytes | str, *, retain: bool = ..., qos: int = ...
    ) -> Awaitable[bool]:
        """Publish one message."""
        ...


Starter = Callable[[Coroutine[object, object, None], str], asyncio.Task[None] | None]


class Outbox:
    """Sends through a `PublishFn` with up to `window` messages awaiting their ack."""

    def __init__(self, start: Starter, *, window: int = WINDOW) -> None:
        self._start = start
        self._slots = asyncio.Semaphore(window)
        self._in_flight: set[asyncio.Future[bool]] = set()
        self.publish_fn: PublishFn | None = None

    async def send(
        self, topic: str, payload: bytes | str, *, retain: bool, eager: bool = False
    ) -> asyncio.Future[bool]:
        """Send one message; the future says whether the broker took it (False while away).

        `eager`: hand it to the client before returning, for a message someone waits for
        (a car's new state); a burst (a republish) goes faster without.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()
        publish = self.publish_fn
        if publish is None:
            done.set_result(False)
            return done
        await self._slots.acquire()
        task = self._start(self._one(publish, topic, payload, retain, done), _task_name())
        if task is None:  # no task group (not running, or stopping): send it here, alone
            try:
                await self._one(publish, topic, payload, retain, done)
            finally:
                self._release(done)
            return done
        self._in_flight.add(done)
        done.add_done_callback(self._in_flight.discard)
        # Released when the task ends, however: a task cancelled before its first step never
        # runs `_one`, and its slot and its future must not be lost with it.
        task.add_done_callback(lambda _: self._release(done))
        if eager:
            # Let the message's task run now: it hands the message to the client at once,
            # not after the rest of the sender's work (a page of 50 cars, the next page's parse).
            await asyncio.sleep(0)
        return done

    @property
    def in_flight(self) -> int:
        """Messages sent and awaiting their answer: the part of the window in use."""
        return len(self._in_flight)

    async def drain(self) -> None:
        """Wait until every message sent so far has its answer."""
        while self._in_flight:
            await asyncio.wait(list(self._in_flight))

    def _release(self, done: asyncio.Future[bool]) -> None:
        self._slots.release()
        if not done.done():
            done.set_result(False)

    @staticmethod
    async def _one(
        publish: PublishFn,
        topic: str,
        payload: bytes | str,
        retain: bool,
        done: asyncio.Future[bool],
    ) -> None:
        ok = (await publish(topic, payload, retain=retain, qos=1)) is not False
        if not done.done():
            done.set_result(ok)


def _task_name() -> str:
    # Named after the sender (`poll-home:publish`): a traceback or a test can tell who sent it.
    current = asyncio.current_task()
    return f"{current.get_name() if current is not None else 'bridge'}:publish"


def encode(payload: Payload) -> bytes | str:
    """Return what goes on the wire for `payload`: compact JSON for a mapping, empty for None."""
    if payload is None:
        return b""
    if isinstance(payload, (bytes, str)):
        return payload
    return json.dumps(payload, separators=(",", ":"))
