"""Run a bridge: the MQTT link and the Bridge under one TaskGroup, closed cleanly on exit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from car2mqtt.bridge.publisher import Publishing
from car2mqtt.bridge.root import Bridge
from car2mqtt.bridge.timing import Timing
from car2mqtt.clock import Clock, SystemClock
from car2mqtt.config import Config
from car2mqtt.mqtt.link import BrokerSettings, MqttLink
from car2mqtt.mqtt.topics import Topics
from car2mqtt.providers.base import Provider
from car2mqtt.providers.registry import create_provider
from car2mqtt.store import Store

_LOGGER = logging.getLogger(__name__)
STOP_TIMEOUT_S = 20.0


@dataclass(slots=True)
class Running:
    """A bridge that is running, for callers that watch it (tests, the demo)."""

    bridge: Bridge
    link: MqttLink
    task: asyncio.Task[None]


def build(
    providers: list[Provider],
    *,
    store: Store,
    broker: BrokerSettings,
    topics: Topics,
    clock: Clock | None = None,
    publishing: Publishing | None = None,
    timing: Timing | None = None,
    poll_intervals: dict[str, float] | None = None,
) -> tuple[Bridge, MqttLink]:
    """Wire a bridge to its MQTT link."""
    bridge = Bridge(
        providers,
        store=store,
        clock=clock or SystemClock(),
        topics=topics,
        publishing=publishing,
        timing=timing,
        poll_intervals=poll_intervals,
    )
    link = MqttLink(
        broker,
        availability_topic=topics.bridge_availability,
        subscriptions=[topics.ha_status, topics.command_subscription],
        on_connect=bridge.on_connect,
        on_message=bridge.on_message,
    )
    bridge.attach(
        link.publish, protocol=lambda: link.protocol, retained_payload=link.retained_payload
    )
    return bridge, link


async def serve(providers: list[Provider], **options: Any) -> None:
    """Run the bridge until cancelled (options as for `build`)."""
    bridge, link = build(providers, **options)
    await _run(bridge, link, providers)


async def _run(bridge: Bridge, link: MqttLink, providers: list[Provider]) -> None:
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(link.run(), name="mqtt")
            tg.create_task(bridge.run(), name="bridge")
    finally:
        for provider in providers:
            try:
                await provider.aclose()
            except Exception as exc:
                # Closing connections on the way out; worth a line, not a stop.
                _LOGGER.warning(
                    "account %s: closing its connections failed: %s", provider.account, exc
                )


@contextlib.asynccontextmanager
async def running(providers: list[Provider], **options: Any) -> AsyncIterator[Running]:
    """Run a bridge in the background for the duration of the block."""
    bridge, link = build(providers, **options)
    task = asyncio.create_task(_run(bridge, link, providers), name="car2mqtt")
    try:
        yield Running(bridge, link, task)
    finally:
        task.cancel()
        # asyncio.wait, not a timeout around `await task`: cancelling that await only passes
        # the cancel on to a task that may be ignoring it, so the limit could never fire.
        done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
        if not done:
            msg = f"the bridge did not stop within {STOP_TIMEOUT_S:.0f} s of being cancelled"
            raise RuntimeError(msg)
        if not task.cancelled() and task.exception() is not None:
            await task  # re-raise what ended it


def secrets_of(config: Config) -> list[str]:
    """Every secret in `config`, for the log redactor."""
    found = [secret for account in config.accounts for secret in account.secrets()]
    if config.mqtt.password is not None:
        found.append(config.mqtt.password.get_secret_value())
    return found


def broker_settings(config: Config) -> BrokerSettings:
    """Translate the `mqtt` section into connection settings."""
    mqtt = config.mqtt
    return BrokerSettings.from_url(
        mqtt.url,
        username=mqtt.username,
        password=mqtt.password.get_secret_value() if mqtt.password else None,
        ca_file=str(mqtt.ca_file) if mqtt.ca_file else None,
        tls_insecure=mqtt.tls_insecure,
        client_id=mqtt.client_id,
        protocol=mqtt.protocol,
        keepalive=mqtt.keepalive,
    )


async def run_config(config: Config, *, clock: Clock | None = None) -> None:
    """Run the bridge described by `config` until cancelled."""
    clock = clock or SystemClock()
    store = Store.open(config.store)
    try:
        providers = [
            create_provider(account, clock=clock, persistence=store) for account in config.accounts
        ]
        topics = Topics(
            config.mqtt.base_topic, config.mqtt.discovery_prefix, config.mqtt.ha_status_topic
        )
        await serve(
            providers,
            store=store,
            broker=broker_settings(config),
            topics=topics,
            clock=clock,
            publishing=Publishing(config.mqtt.discovery_mode, config.expose_vin),
            timing=Timing(heartbeat_s=config.heartbeat_s),
            poll_intervals={a.name: float(a.poll_interval_s) for a in config.accounts},
        )
    finally:
        store.close()
