"""Small clients for the command line: watch and publish on MQTT, call the simulator's admin API.

They do what mosquitto_sub, mosquitto_pub and curl do in the demo's instructions, so every
command the demo prints works on a machine that has none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Callable, Sequence

import aiomqtt
import httpx

from car2mqtt.errors import ConfigError, MqttError, SimulatorError
from car2mqtt.mqtt.link import BrokerSettings, tls_context


def _client(settings: BrokerSettings) -> aiomqtt.Client:
    tls = tls_context(settings)
    return aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password,
        # Never the bridge's own id: the broker would disconnect the bridge for it.
        identifier=f"car2mqtt-cli-{secrets.token_hex(4)}",
        # Every broker that speaks MQTT 5 also speaks 3.1.1, and these clients need nothing newer.
        protocol=aiomqtt.ProtocolVersion.V311,
        tls_context=tls,
        timeout=10,
    )


def _unreachable(settings: BrokerSettings, exc: aiomqtt.MqttError) -> MqttError:
    return MqttError(f"MQTT broker {settings.describe()}: {exc}")


def _text(payload: object) -> str:
    if isinstance(payload, bytes):
        return payload.decode("utf-8", "replace")
    return "" if payload is None else str(payload)


async def watch(
    settings: BrokerSettings,
    patterns: Sequence[str],
    show: Callable[[str], None],
    count: int | None = None,
) -> None:
    """Print `topic payload` for every message on `patterns`, as `mosquitto_sub -v` does."""
    try:
        async with _client(settings) as client:
            for pattern in patterns:
                await client.subscribe(pattern, qos=1)
            seen = 0
            async for message in client.messages:
                show(f"{message.topic} {_text(message.payload)}")
                seen += 1
                if count is not None and seen >= count:
                    return
    except aiomqtt.MqttError as exc:
        raise _unreachable(settings, exc) from None


async def publish(settings: BrokerSettings, topic: str, payload: str, *, retain: bool) -> None:
    """Publish one message with QoS 1, as `mosquitto_pub -q 1` does."""
    try:
        async with _client(settings) as client:
            await client.publish(topic, payload, qos=1, retain=retain)
    except aiomqtt.MqttError as exc:
        raise _unreachable(settings, exc) from None


async def retained(
    settings: BrokerSettings, topics: Sequence[str], *, timeout_s: float = 2.0
) -> dict[str, bytes]:
    """Return what the broker keeps retained on `topics`, read within `timeout_s` in all.

    A topic with nothing retained is missing from the answer; a broker that cannot be reached
    in time is an `MqttError`.
    """
    found: dict[str, bytes] = {}
    try:
        async with asyncio.timeout(timeout_s), _client(settings) as client:
            for topic in topics:
                await client.subscribe(topic, qos=1)
            # Retained messages come right after each SUBACK; what is not here soon is none.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(0.5, timeout_s / 2)):
                    async for message in client.messages:
                        if message.retain:
                            found[str(message.topic)] = _text(message.payload).encode()
                        if set(found) >= set(topics):
                            break
    except aiomqtt.MqttError as exc:
        raise _unreachable(settings, exc) from None
    except TimeoutError:
        msg = f"MQTT broker {settings.describe()}: no answer within {timeout_s:g} s"
        raise MqttError(msg) from None
    return found


def admin_call(url: str, body: str | None) -> str:
    """GET `url`, or POST `body` (JSON) to it; return the answer, pretty when it is JSON."""
    data = None
    if body is not None:
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            msg = f"the body is not JSON: {exc.msg} at character {exc.pos}"
            raise ConfigError(msg) from None
    try:
        with httpx.Client(timeout=30) as http:
            answer = http.request("GET" if body is None else "POST", url, json=data)
    except httpx.InvalidURL as exc:
        msg = f"{url!r} is not a URL: {exc}"
        raise ConfigError(msg) from None
    except httpx.UnsupportedProtocol:
        msg = f"{url!r} is not an http:// or https:// URL"
        raise ConfigError(msg) from None
    except httpx.HTTPError as exc:
        msg = f"cannot reach {url}: {exc or type(exc).__name__} (is the simulator or demo running?)"
        raise SimulatorError(msg) from None
    try:
        text = json.dumps(answer.json(), indent=2)
    except ValueError:
        text = answer.text
    if answer.status_code >= 400:
        msg = f"{url} answered {answer.status_code}: {text}"
        raise SimulatorError(msg)
    return text
