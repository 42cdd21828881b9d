"""A real mosquitto for tests, and an MQTT probe that watches what the bridge publishes."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

MOSQUITTO_PATHS = (
    "/usr/sbin/mosquitto",
    "/usr/local/sbin/mosquitto",
    "/opt/homebrew/sbin/mosquitto",
)


def mosquitto_binary() -> str:
    """Find mosquitto, or fail with the command that installs it (never skip)."""
    found = shutil.which("mosquitto") or next(
        (p for p in MOSQUITTO_PATHS if Path(p).exists()), None
    )
    if found is None:
        msg = "mosquitto is not installed; scripts/test installs it (apt-get install mosquitto)"
        raise RuntimeError(msg)
    return found


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Mosquitto:
    """A mosquitto process on loopback that tests can stop and start again on the same port."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    extra_config: str = ""  # e.g. TLS and password settings for this listener

    @property
    def url(self) -> str:
        """The broker URL."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            # Run as whoever runs the tests: as root, mosquitto would otherwise switch to its
            # own user and lose access to the test's private files (certificates, passwords).
            f"user {getpass.getuser()}\n"
            f"listener {self.port} 127.0.0.1\npersistence false\n"
            f"log_dest file {self.workdir / 'mosquitto.log'}\n"
            + (self.extra_config or "allow_anonymous true\n")
        )
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            if self.process.poll() is not None:
                msg = f"mosquitto exited with {self.process.returncode}"
                raise RuntimeError(msg)
            time.sleep(0.02)
        msg = "mosquitto did not start"
        raise RuntimeError(msg)

    def stop(self) -> None:
        """Stop the broker (retained messages are lost: persistence is off)."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


@contextlib.contextmanager
def running_mosquitto(workdir: Path, extra_config: str = "") -> Iterator[Mosquitto]:
    """Run mosquitto for the duration of the block."""
    broker = Mosquitto(workdir, extra_config=extra_config)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@dataclass
class Probe:
    """Everything published on the broker, as a test sees it."""

    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    retained_now: dict[str, bytes] = field(default_factory=dict)

    def last(self, topic: str) -> bytes | None:
        """The last payload seen on `topic`."""
        for t, payload, _ in reversed(self.messages):
            if t == topic:
                return payload
        return None

    def json(self, topic: str) -> Any:
        """The last payload on `topic`, decoded."""
        payload = self.last(topic)
        assert payload, f"nothing published on {topic}"
        return json.loads(payload)

    def topics(self, prefix: str = "") -> set[str]:
        """Every topic seen under `prefix`."""
        return {t for t, _, _ in self.messages if t.startswith(prefix)}

    async def wait_for(
        self, predicate: Callable[[Probe], bool], timeout: float = 10.0, what: str = ""
    ) -> None:
        """Wait until `predicate(self)` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            await asyncio.sleep(0.02)
        seen = sorted(self.topics())
        msg = f"timed out waiting for {what or predicate}; topics seen: {seen}"
        raise AssertionError(msg)

    async def wait_json(
        self, topic: str, check: Callable[[Any], bool], timeout: float = 10.0
    ) -> Any:
        """Wait until the last JSON payload on `topic` satisfies `check`; return it."""

        def ok(probe: Probe) -> bool:
            payload = probe.last(topic)
            return bool(payload) and check(json.loads(payload or b"null"))

        await self.wait_for(ok, timeout, f"{topic} to satisfy the check")
        return self.json(topic)


@contextlib.asynccontextmanager
async def probe(
    port: int, pattern: str = "#", username: str | None = None, password: str | None = None
) -> AsyncIterator[Probe]:
    """Subscribe to `pattern` and record every message until the block ends."""
    seen = Probe()
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=f"probe-{free_port()}",
        timeout=10,
        username=username,
        password=password,
    ) as client:
        await client.subscribe(pattern, qos=1)

        async def collect() -> None:
            async for message in client.messages:
                payload = message.payload
                data = payload if isinstance(payload, bytes) else str(payload).encode()
                seen.messages.append((str(message.topic), data, bool(message.retain)))

        task = asyncio.create_task(collect())
        try:
            yield seen
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def retained(port: int, pattern: str = "#", settle: float = 0.5) -> dict[str, bytes]:
    """Return every retained message under `pattern` (fresh subscription, so only retained)."""
    async with probe(port, pattern) as seen:
        await asyncio.sleep(settle)
    return {t: p for t, p, is_retained in seen.messages if is_retained and p}


async def publish(port: int, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
    """Publish one message as Home Assistant (or a user) would."""
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=f"pub-{free_port()}", timeout=10
    ) as client:
        await client.publish(topic, payload, qos=1, retain=retain)
