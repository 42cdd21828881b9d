"""Commands in over MQTT: Home Assistant's command topics, checked, then handed on.

A retained command is never acted on: MQTT 5 shows the flag; under MQTT 3.1.1 the broker is
asked on a side line whether it keeps the payload retained. Anything else that is wrong (an
unknown car or control, a bad payload) gets a rejection on the car's `error` topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from car2mqtt.bridge.commands import CommandService
from car2mqtt.bridge.hub import VehicleHub
from car2mqtt.bridge.outbox import Outbox, encode
from car2mqtt.bridge.tasks import Spawner
from car2mqtt.clock import Clock
from car2mqtt.errors import CommandRejected, MqttError
from car2mqtt.ha import discovery
from car2mqtt.mqtt.topics import Topics

_LOGGER = logging.getLogger(__name__)


class MqttCommands:
    """Turns messages on command topics into commands for the command service."""

    def __init__(
        self,
        hub: VehicleHub,
        commands: CommandService,
        *,
        outbox: Outbox,
        spawner: Spawner,
        clock: Clock,
        topics: Topics,
    ) -> None:
        self._hub = hub
        self._commands = commands
        self._outbox = outbox
        self._spawner = spawner
        self._clock = clock
        self._topics = topics
        self.protocol: Callable[[], str | None] = lambda: "5"
        self.retained_payload: Callable[[str], Awaitable[bytes | None]] | None = None
        self._said: dict[str, float] = {}  # throttled warnings: what -> loop time said

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        """Take a message on a command topic (an empty one only clears a retained command)."""
        if not payload:
            # An empty message on a command topic clears a retained one (ours included): it
            # is not a command, and there is nothing to reject.
            return
        parsed = self._topics.parse_command_topic(topic)
        if parsed is None:
            self._warn_throttled(
                "bad-command-topic",
                "ignoring a command on %s: command topics are "
                "<base>/<provider>/<vehicle>/<control>/set, none of them empty",
                topic,
            )
            return
        if retained:
            self._spawner.spawn(self._refuse_retained(topic))
            return
        if self.protocol() != "5" and self.retained_payload is not None:
            # MQTT 3.1.1 cannot tell a retained message forwarded live from a fresh one: ask
            # the broker on a side line whether it keeps this one retained before acting.
            self._spawner.spawn(self._command_unless_retained(topic, parsed, payload))
            return
        self._spawner.spawn(self._command(*parsed, payload))

    async def _command_unless_retained(
        self, topic: str, parsed: tuple[str, str, str], payload: bytes
    ) -> None:
        assert self.retained_payload is not None
        try:
            held = await self.retained_payload(topic)
        except MqttError as exc:  # not sure it is fresh: do nothing
            provider, key, control = parsed
            await self._reject(
                self._topics.command_error(provider, key),
                f"not carried out: could not check that it was not retained ({exc})",
                control,
                payload,
            )
            return
        if held == payload:
            await self._refuse_retained(topic)
            return
        await self._command(*parsed, payload)

    async def _refuse_retained(self, topic: str) -> None:
        """Ignore a retained command and clear it, so the broker stops handing it out."""
        # A retained command would fire again on every reconnect: never act on one.
        self._warn_throttled(
            f"retained:{topic}",
            "ignoring a retained command on %s and clearing it; commands must not be retained",
            topic,
        )
        await (await self._outbox.send(topic, b"", retain=True))

    async def _command(self, provider: str, segment: str, control: str, payload: bytes) -> None:
        vehicle = self._hub.find(provider, segment)
        error_topic = self._topics.command_error(provider, segment)
        if vehicle is None:
            await self._reject(error_topic, f"no vehicle {provider}/{segment}", control, payload)
            return
        # What a rejection names: the command the payload asked for, else the control.
        asked = discovery.requested_command(control, payload) or control
        try:
            command, value = discovery.parse_command(control, payload, vehicle.state.capabilities)
            self._commands.submit(vehicle, command, value)
        except CommandRejected as exc:
            await self._reject(error_topic, str(exc), control, payload)
            await self._commands.rejected(vehicle, asked, str(exc))

    async def _reject(self, topic: str, message: str, control: str, payload: bytes) -> None:
        shown = payload[:200].decode("utf-8", errors="replace")
        _LOGGER.warning("rejected command %r on %s: %s", shown, control, message)
        at = datetime.fromtimestamp(self._clock.time(), UTC).isoformat()
        body = {"error": message, "control": control, "payload": shown, "at": at}
        await (await self._outbox.send(topic, encode(body), retain=False))

    def _warn_throttled(self, what: str, message: str, *args: object) -> None:
        """Log a warning about input from outside at most once a minute per kind."""
        now = asyncio.get_running_loop().time()
        if now - self._said.get(what, -1e9) < 60.0:
            return
        if len(self._said) > 1000:
            self._said.clear()  # junk topics must not grow this without bound
        self._said[what] = now
        _LOGGER.warning(message, *args)
