"""The MQTT connection: aiomqtt, a last will, and a reconnect loop outside the client.

`MqttLink` knows topics and bytes, never what a vehicle is. After every (re)connect it calls
`on_connect`, which republishes everything retained, so nothing published while the broker was
away is missing afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import aiomqtt
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from car2mqtt.backoff import backoff_delay
from car2mqtt.errors import ConfigError, MqttError
from car2mqtt.mqtt.url import BadMqttUrl, hide_credentials, parse_mqtt_url

_LOGGER = logging.getLogger(__name__)

OnConnect = Callable[[], Awaitable[None]]
OnMessage = Callable[[str, bytes, bool], Awaitable[None]]
T = TypeVar("T")


def cancel_requests() -> int:
    """Return the cancel requests pending on the current task (0 outside a task)."""
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


async def keeping_cancel(awaitable: Awaitable[T]) -> T:
    """Await `awaitable`; if it swallowed a cancel meant for this task, raise it again."""
    cancels = cancel_requests()
    try:
        return await awaitable
    finally:
        if cancel_requests() > cancels:
            # aiomqtt waits for the broker's ack with asyncio.wait_for, which on Python 3.11
            # returns normally when the cancel arrives just as the ack does (CPython gh-86296):
            # the cancel is lost, and the caller would run on for ever. Deliver it again.
            raise asyncio.CancelledError


async def _entered(stack: contextlib.AsyncExitStack, client: aiomqtt.Client) -> aiomqtt.Client:
    """Connect `client` inside `stack`; a stop meanwhile closes its socket and is kept."""
    cancels = cancel_requests()
    try:
        await stack.enter_async_context(client)
    except asyncio.CancelledError:
        # Stopped before the CONNACK: aiomqtt leaves the socket open (no __aexit__ follows).
        with contextlib.suppress(Exception):
            client._client._sock_close()
        raise
    if cancel_requests() > cancels:
        # The CONNACK wait is an asyncio.wait_for too (see keeping_cancel); the stack's exit
        # disconnects.
        raise asyncio.CancelledError
    return client


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """How to reach the broker."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    tls_insecure: bool = False
    client_id: str = "car2mqtt"
    protocol: str = "auto"  # "auto": MQTT 5, else 3.1.1 if the broker refuses it; or "5", "3.1.1"
    keepalive: int = 60

    @classmethod
    def from_url(cls, url: str, **extra: object) -> BrokerSettings:
        """Parse `mqtt://user:pass@host:port` or `mqtts://...` (`parse_mqtt_url`'s rules)."""
        try:
            parsed = parse_mqtt_url(url, credentials=True)
        except BadMqttUrl as exc:
            # Error messages quote the URL: never with its password.
            shown = hide_credentials(url.strip())
            msg = f"mqtt.url: got {shown!r}; {exc.message}"
            raise ConfigError(msg) from None
        values: dict[str, object] = {"host": parsed.host, "port": parsed.port, "tls": parsed.tls}
        if parsed.username:
            values["username"] = parsed.username
        if parsed.password:
            values["password"] = parsed.password
        values.update({k: v for k, v in extra.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def describe(self) -> str:
        """Where the broker is, without credentials."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


# How long a first MQTT 5 CONNECT may wait for its CONNACK before "auto" tries 3.1.1: some
# 3.1.1-only brokers never answer a CONNECT they cannot read.
PROBE_TIMEOUT_S = 5.0
_TIMED_OUT = "Operation timed out"
# How long, after its SUBACK, a check waits for the broker to hand out a retained message.
RETAINED_WAIT_S = 0.25
# A connection the broker ends this soon after it began, twice in a row, is most likely taken
# over by another client with the same client id (the broker drops the older one).
TAKEN_OVER_S = 5.0
# Publishes awaiting their ack that are normal: the bridge's outbox window, plus headroom.
PENDING_CALLS_EXPECTED = 1000
# CONNACK codes for "unacceptable protocol version": 1 in MQTT 3.1.1, 0x84 in MQTT 5.
_BAD_VERSION = (1, 0x84)


def _version_refused(exc: aiomqtt.MqttError) -> bool:
    """Whether a failed CONNECT looks like the broker not speaking the protocol version."""
    if isinstance(exc, aiomqtt.MqttCodeError):
        code = exc.rc
        value = code.value if isinstance(code, ReasonCode) else code
        return value in _BAD_VERSION
    # A broker that cannot parse the CONNECT may stay silent, or hang up before a CONNACK.
    text = str(exc)
    return _TIMED_OUT in text or "closed" in text.lower() or "reset" in text.lower()


def tls_context(settings: BrokerSettings) -> ssl.SSLContext | None:
    """Return the TLS context `settings` ask for (None without TLS); a bad CA is a ConfigError."""
    if not settings.tls:
        return None
    try:
        context = ssl.create_default_context(cafile=settings.ca_file)
    except (ssl.SSLError, OSError) as exc:
        msg = f"mqtt.ca_file: cannot use {settings.ca_file!r} as a CA bundle ({exc})"
        raise ConfigError(msg) from None
    if settings.tls_insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class MqttLink:
    """A supervised MQTT connection with the bridge's availability as its last will."""

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        availability_topic: str,
        subscriptions: list[str],
        on_connect: OnConnect,
        on_message: OnMessage,
        max_backoff_s: float = 30.0,
    ) -> None:
        self._settings = settings
        self._availability = availability_topic
        self._subscriptions = subscriptions
        self._on_connect = on_connect
        self._on_message = on_message
        self._max_backoff = max_backoff_s
        self._client: aiomqtt.Client | None = None
        self._tls = tls_context(settings)  # up front: a bad CA file is a config error now
        self.connected = asyncio.Event()
        self.connections = 0
        self.published = 0
        self.received = 0  # messages the broker handed us, our own availability included
        # The version the broker accepted ("5" or "3.1.1"); with "auto", None until it answers.
        self.protocol: str | None = None if settings.protocol == "auto" else settings.protocol
        self._publish_failing = False
        self._trying_311 = False  # "auto" fell back and 3.1.1 has not connected yet
        self._short_lived = 0  # connections in a row the broker ended right after they began
        self._said_offline_fix = False

    @property
    def reconnects(self) -> int:
        """Connections made after the first one."""
        return max(0, self.connections - 1)

    def _make_client(self, version: str, *, checker: bool = False) -> aiomqtt.Client:
        s = self._settings
        protocol = MQTTProtocolVersion.MQTTv5 if version == "5" else MQTTProtocolVersion.MQTTv311
        probing = s.protocol == "auto" and self.protocol is None
        client = aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password,
            # A check of its own never takes over the bridge's session, and leaves no will.
            identifier=f"{s.client_id}-check-{random.getrandbits(32):08x}"
            if checker
            else s.client_id,
            protocol=aiomqtt.ProtocolVersion(protocol),
            keepalive=s.keepalive,
            tls_context=self._tls,
            will=None
            if checker
            else aiomqtt.Will(self._availability, b"offline", qos=1, retain=True),
            timeout=PROBE_TIMEOUT_S if probing else 10,
        )
        # The bridge keeps a window of publishes awaiting their acks on purpose (pipelined
        # QoS 1); aiomqtt would log a warning for each one past its default of 10.
        client.pending_calls_threshold = PENDING_CALLS_EXPECTED
        return client

    async def retained_payload(self, topic: str) -> bytes | None:
        """Return what the broker holds retained on `topic` (None if nothing), on a side line.

        MQTT 3.1.1 forwards a retained message to a connected client with the retain flag
        cleared; only a fresh subscription shows whether the broker keeps it retained.
        """
        try:
            async with self._make_client("3.1.1", checker=True) as client:
                await client.subscribe(topic, qos=1)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RETAINED_WAIT_S):
                        async for message in client.messages:
                            if message.retain:
                                payload = message.payload
                                return (
                                    payload if isinstance(payload, bytes) else str(payload).encode()
                                )
        except aiomqtt.MqttError as exc:
            msg = f"the broker could not be asked about {topic}: {exc}"
            raise MqttError(msg) from exc
        return None

    async def run(self) -> None:
        """Stay connected until cancelled, reconnecting with jittered backoff."""
        attempt = 0  # failed connections in a row
        was_down = False
        while True:
            version = self.protocol or "5"
            try:
                async with contextlib.AsyncExitStack() as stack:
                    client = await _entered(stack, self._make_client(version))
                    client.timeout = 10  # the short probe timeout was for the CONNECT only
                    self._client = client
                    self.connections += 1
                    self.protocol, self._trying_311 = version, False
                    where = f"{self._settings.describe()} (MQTT {version})"
                    if was_down:
                        _LOGGER.info("MQTT broker %s is back", where)
                    else:
                        _LOGGER.info("connected to MQTT broker %s", where)
                    was_down, attempt = False, 0
                    await keeping_cancel(
                        client.publish(self._availability, b"online", qos=1, retain=True)
                    )
                    began = asyncio.get_running_loop().time()
                    try:
                        # From the moment it said online, a stop says offline, even mid-way.
                        await keeping_cancel(self._subscribe(client, version))
                        self.connected.set()
                        # A republish waits on many acks: a stop that arrives meanwhile must
                        # not be lost, or the loop below would wait for messages for ever.
                        await keeping_cancel(self._on_connect())
                        async for message in client.messages:
                            payload = message.payload
                            data = payload if isinstance(payload, bytes) else str(payload).encode()
                            self.received += 1
                            if str(message.topic) == self._availability:
                                await self._keep_online(client, data)
                                continue
                            await self._on_message(str(message.topic), data, bool(message.retain))
                    finally:
                        self.connected.clear()
                        self._client = None
                        self._note_lifetime(asyncio.get_running_loop().time() - began)
                        await self._say_offline(client)
            except aiomqtt.MqttError as exc:
                if self.protocol is None and version == "5" and _version_refused(exc):
                    # "auto": the broker did not take an MQTT 5 CONNECT; speak 3.1.1 to it.
                    _LOGGER.info(
                        "MQTT broker %s did not accept MQTT 5 (%s); trying MQTT 3.1.1",
                        self._settings.describe(),
                        exc,
                    )
                    self.protocol, self._trying_311 = "3.1.1", True
                    continue
                if self._trying_311:
                    # 3.1.1 failed too: the broker was away or slow, not picky. Kept, 3.1.1
                    # would stay for good with a broker that speaks 5; ask with 5 again.
                    self.protocol, self._trying_311 = None, False
                if not was_down:
                    _LOGGER.warning(
                        "MQTT broker %s unavailable (%s); retrying with backoff%s",
                        self._settings.describe(),
                        exc,
                        self._hint(version, exc),
                    )
                was_down = True
            attempt += 1
            await asyncio.sleep(backoff_delay(attempt, base_s=1.0, max_s=self._max_backoff))

    async def _subscribe(self, client: aiomqtt.Client, version: str) -> None:
        for topic in [self._availability, *self._subscriptions]:
            # MQTT 5 keeps the retain flag on messages forwarded live ("retain as published"),
            # so a retained command is recognised even then; 3.1.1 clears it, and only
            # messages sent at subscribe time show as retained.
            if version == "5":
                options = SubscribeOptions(qos=1, retainAsPublished=True)
                await client.subscribe(topic, options=options)
            else:
                await client.subscribe(topic, qos=1)

    async def _keep_online(self, client: aiomqtt.Client, payload: bytes) -> None:
        """Say `online` again when someone else set our availability to `offline`."""
        if payload != b"offline":
            return
        if not self._said_offline_fix:
            # Another bridge under the same base topic stopping, or the will of a session the
            # broker dropped for ours (same client id): the cars would show unavailable.
            _LOGGER.warning(
                "%s was set to offline while this bridge is connected: another car2mqtt on the "
                "same broker uses the same base_topic or client_id? Saying online again",
                self._availability,
            )
            self._said_offline_fix = True
        await keeping_cancel(client.publish(self._availability, b"online", qos=1, retain=True))

    def _note_lifetime(self, lived_s: float) -> None:
        """Warn when the broker keeps ending connections right after they began."""
        self._short_lived = self._short_lived + 1 if lived_s < TAKEN_OVER_S else 0
        if self._short_lived == 2:
            _LOGGER.warning(
                "MQTT broker %s keeps ending the connection right after it began: another "
                "client probably uses the same client_id %r (set mqtt.client_id to one of "
                "its own)",
                self._settings.describe(),
                self._settings.client_id,
            )

    def _hint(self, version: str, exc: aiomqtt.MqttError) -> str:
        """Return a likely cause worth naming, when the protocol version may be it."""
        if self._settings.protocol == "auto" or not _version_refused(exc):
            return ""
        other = "3.1.1" if version == "5" else "5"
        return (
            f'. The broker may not speak MQTT {version}: set mqtt.protocol to "{other}", '
            'or to "auto" to let car2mqtt choose'
        )

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        # A clean stop says so itself; the broker sends the will only for a dead connection.
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(2):
                await keeping_cancel(
                    client.publish(self._availability, b"offline", qos=1, retain=True)
                )

    async def publish(
        self, topic: str, payload: bytes | str, *, retain: bool = False, qos: int = 1
    ) -> bool:
        """Publish if connected; return False otherwise (the next connect republishes)."""
        client = self._client
        if client is None:
            return False
        try:
            await keeping_cancel(client.publish(topic, payload, qos=qos, retain=retain))
        except aiomqtt.MqttError as exc:
            if not self._publish_failing:
                # Once per change of state: the bridge sends it again when the broker is back.
                _LOGGER.warning("MQTT publish to %s failed (%s); will send it again", topic, exc)
            self._publish_failing = True
            return False
        if self._publish_failing:
            _LOGGER.info("MQTT publishes go through again")
            self._publish_failing = False
        self.published += 1
        return True
