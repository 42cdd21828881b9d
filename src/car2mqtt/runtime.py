"""Run a bridge: the MQTT link and the Bridge under one TaskGroup, closed cleanly on exit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from car2mqtt.bridge.budget import Budget, BudgetLimits, CallLedger
from car2mqtt.bridge.privacy import Privacy
from car2mqtt.bridge.publisher import Publishing
from car2mqtt.bridge.root import Bridge
from car2mqtt.bridge.timing import Timing
from car2mqtt.clock import Clock, SystemClock
from car2mqtt.config import Config
from car2mqtt.errors import ConfigError
from car2mqtt.history.model import ZoneArea
from car2mqtt.history.recorder import HistoryRecorder, Retention
from car2mqtt.history.records import HistoryBackend
from car2mqtt.history.sqlite import SqliteHistory
from car2mqtt.models import LocationMode
from car2mqtt.mqtt.link import BrokerSettings, MqttLink
from car2mqtt.mqtt.topics import Topics
from car2mqtt.net import base_url, bind
from car2mqtt.providers.base import Provider
from car2mqtt.providers.registry import create_provider, plugin_of
from car2mqtt.serving import embedded_server, serve_http
from car2mqtt.store import Store
from car2mqtt.web.app import BridgeFacts, WebParts, WebUI
from car2mqtt.web.receiver import receiver_app

_LOGGER = logging.getLogger(__name__)
STOP_TIMEOUT_S = 20.0


@dataclass(slots=True)
class Running:
    """A bridge that is running, for callers that watch it (tests, the demo)."""

    bridge: Bridge
    link: MqttLink
    task: asyncio.Task[None]
    web: WebUI | None = None
    web_url: str | None = None  # where the web UI answers, when it runs
    receiver_url: str | None = None  # where webhook deliveries are taken, when they are
    history: HistoryRecorder | None = None


@dataclass(frozen=True, slots=True)
class WebOptions:
    """Serve the web UI beside the bridge: `config` is what its pages show and link."""

    config: Config
    sock: socket.socket | None = None  # bound already (the demo); else bound from config.web


@dataclass(frozen=True, slots=True)
class HistoryOptions:
    """Record history into `backend` (a sink of its own), keeping rows as `retention` says."""

    backend: HistoryBackend
    retention: Retention = field(default_factory=Retention)
    queue_size: int = 10_000
    cloud_delay_s: float = 600.0  # how long after a session a cloud's figure is asked for
    zones: tuple[ZoneArea, ...] = ()  # what sessions and trips are named after


@dataclass(slots=True)
class _Wired:
    bridge: Bridge
    link: MqttLink
    web: WebUI | None = None
    web_socket: socket.socket | None = None
    receiver_socket: socket.socket | None = None  # webhook.port: a listener of its own
    receiver_base: str = ""
    history: HistoryRecorder | None = None


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
    web: WebOptions | None = None,
    history: HistoryOptions | None = None,
    privacy: Mapping[str, Privacy] | None = None,
    budgets: Mapping[str, Budget] | None = None,
) -> _Wired:
    """Wire a bridge to its MQTT link, its web UI if `web` is given, and history."""
    clock = clock or SystemClock()
    base_path = web.config.web.base_path if web is not None else ""
    if history is not None:
        publishing = replace(publishing or Publishing(), history=True)
    bridge = Bridge(
        providers,
        store=store,
        clock=clock,
        topics=topics,
        publishing=publishing,
        timing=timing,
        poll_intervals=poll_intervals,
        receiver_base_path=base_path,
        privacy=privacy,
        budgets=budgets,
    )
    link = MqttLink(
        broker,
        availability_topic=topics.bridge_availability,
        subscriptions=[topics.ha_status, topics.command_subscription, topics.bridge_health_request],
        on_connect=bridge.on_connect,
        on_message=bridge.on_message,
    )
    bridge.attach(
        link.publish, protocol=lambda: link.protocol, retained_payload=link.retained_payload
    )
    bridge.health.mqtt = link
    wired = _Wired(bridge, link, receiver_base=base_path)
    if history is not None:
        wired.history = recorder = HistoryRecorder(
            history.backend,
            clock=clock,
            topics=topics,
            outbox=bridge.outbox,
            providers={p.account: p for p in providers},
            queue_size=history.queue_size,
            retention=history.retention,
            cloud_delay_s=history.cloud_delay_s,
            zones=history.zones,
            privacy=privacy,
        )
        bridge.add_sink(recorder)
        bridge.health.history = recorder
        bridge.on_connected(recorder.on_connect)
    pushing = bridge.push.accounts
    own_receiver = web is not None and web.config.webhook.port is not None
    if pushing and (web is None or not (web.config.web.enabled or own_receiver)):
        msg = (
            f"account {pushing[0]} has webhook.public_url, but nothing would receive the "
            "deliveries: keep web.enabled: true, or set webhook.port"
        )
        raise ConfigError(msg)
    if pushing and own_receiver and web is not None:
        hook = web.config.webhook
        wired.receiver_socket = bind(
            hook.host, hook.port or 0, "is car2mqtt running already? set another webhook.port"
        )
    if web is not None and web.config.web.enabled:
        settings = web.config.web
        # Bound before anything runs: a port in use is a clear error at start, not later.
        wired.web_socket = web.sock or bind(
            settings.host, settings.port, "is car2mqtt running already? set another web.port"
        )
        started = clock.time()
        wired.web = WebUI(
            WebParts(
                hub=bridge.hub,
                commands=bridge.commands,
                providers={p.account: p for p in providers},
                poll_now=bridge.poll_now,
                facts=lambda: BridgeFacts(
                    started, link.connected.is_set(), bridge.publisher.ha_online_at
                ),
                store=store,
                clock=clock,
                config=web.config,
                push=None if own_receiver else bridge.push,
                history=history.backend if history is not None else None,
            ),
            settings,
        )
        bridge.add_sink(wired.web.sink)
    return wired


async def serve(providers: list[Provider], **options: Any) -> None:
    """Run the bridge until cancelled (options as for `build`)."""
    await _run(build(providers, **options), providers)


async def _run(wired: _Wired, providers: list[Provider]) -> None:
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(wired.link.run(), name="mqtt")
            tg.create_task(wired.bridge.run(), name="bridge")
            if wired.history is not None:
                tg.create_task(wired.history.run(), name="history")
            if wired.web is not None and wired.web_socket is not None:
                _LOGGER.info("web UI at %s/", _web_url(wired))
                tg.create_task(wired.web.serve(wired.web_socket), name="web")
            if wired.receiver_socket is not None:
                _LOGGER.info("webhook receiver at %s", _receiver_url(wired))
                app = receiver_app(wired.bridge.push, wired.receiver_base)
                server = embedded_server(app)
                tg.create_task(serve_http(server, wired.receiver_socket), name="receiver")
    finally:
        for sock in (wired.web_socket, wired.receiver_socket):
            if sock is not None:
                sock.close()
        for provider in providers:
            try:
                await provider.aclose()
            except Exception as exc:
                # Closing connections on the way out; worth a line, not a stop.
                _LOGGER.warning(
                    "account %s: closing its connections failed: %s", provider.account, exc
                )


def _receiver_url(wired: _Wired) -> str | None:
    if not wired.bridge.push.accounts:
        return None
    sock = wired.receiver_socket or wired.web_socket
    if sock is None:
        return None
    return base_url(sock) + wired.receiver_base + "/webhooks"


def _web_url(wired: _Wired) -> str | None:
    if wired.web is None or wired.web_socket is None:
        return None
    settings = wired.web.settings
    return base_url(wired.web_socket) + settings.base_path


@contextlib.asynccontextmanager
async def running(providers: list[Provider], **options: Any) -> AsyncIterator[Running]:
    """Run a bridge in the background for the duration of the block."""
    wired = build(providers, **options)
    task = asyncio.create_task(_run(wired, providers), name="car2mqtt")
    try:
        yield Running(
            wired.bridge,
            wired.link,
            task,
            wired.web,
            _web_url(wired),
            _receiver_url(wired),
            wired.history,
        )
    finally:
        task.cancel()
        # asyncio.wait, not a timeout around `await task`: cancelling that await only passes
        # the cancel on to a task that may be ignoring it, so the limit could never fire.
        done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
        if not done:
            msg = f"the bridge did not stop within {STOP_TIMEOUT_S:.0f} s of being cancelled"
            raise RuntimeError(f"{msg}; still waiting:\n{_waiting_tasks()}")
        if not task.cancelled() and task.exception() is not None:
            await task  # re-raise what ended it


def _waiting_tasks() -> str:
    # Where each unfinished task waits: what a hang at stop needs to be understood.
    lines: list[str] = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task() or task.done():
            continue
        lines.append(f"  {task.get_name()}: {' -> '.join(_awaiting(task.get_coro()))}")
    return "\n".join(lines)


def _awaiting(coro: object) -> list[str]:
    # Task.get_stack gives a suspended task's outermost frame only; follow what each awaits.
    chain: list[str] = []
    while coro is not None and len(chain) < 40:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
        if frame is None:
            chain.append(type(coro).__name__)
            break
        name = frame.f_code.co_filename.rsplit("/", 1)[-1]
        chain.append(f"{frame.f_code.co_name} ({name}:{frame.f_lineno})")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return chain


def secrets_of(config: Config) -> list[str]:
    """Every secret in `config`, for the log redactor."""
    found = [secret for account in config.accounts for secret in account.secrets()]
    for secret in (config.mqtt.password, config.web.password):
        if secret is not None:
            found.append(secret.get_secret_value())
    # The database URL, and its password alone: a driver's message may quote either.
    return found + config.history.url_secrets()


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


def providers_of(
    config: Config, clock: Clock, store: Store, budgets: Mapping[str, Budget]
) -> list[Provider]:
    """Return each account's provider, its tokens in `store`, its calls counted by `budgets`."""
    return [
        create_provider(a, clock=clock, persistence=store, meter=budgets[a.name].meter())
        for a in config.accounts
    ]


def budgets_of(config: Config, clock: Clock, *, rate: float = 1.0) -> dict[str, Budget]:
    """Return each account's call ledger and budget, as `config` sets them.

    Days and months are the system's local ones (`TZ`). `rate` is clock seconds per
    event-loop second: 1, but a SimClock's factor in tests.
    """
    budgets: dict[str, Budget] = {}
    for account in config.accounts:
        ledger = CallLedger(account.name, clock, None, plugin_of(account).spec.vehicle_path)
        settings = account.budget
        limits = BudgetLimits(
            settings.calls_per_month,
            settings.calls_per_vehicle_month,
            settings.reserve_pct / 100,
        )
        budgets[account.name] = Budget(ledger, limits, rate=rate)
    return budgets


def _config_options(
    config: Config, clock: Clock, store: Store, budgets: Mapping[str, Budget]
) -> dict[str, Any]:
    """Return `build`'s options for the bridge `config` describes."""
    return {
        "budgets": budgets,
        "store": store,
        "broker": broker_settings(config),
        "topics": Topics(
            config.mqtt.base_topic, config.mqtt.discovery_prefix, config.mqtt.ha_status_topic
        ),
        "clock": clock,
        "publishing": Publishing(
            config.mqtt.discovery_mode, config.expose_vin, config.mqtt.ha_release
        ),
        "timing": Timing(
            heartbeat_s=config.heartbeat_s,
            push_watchdog_s=float(config.webhook.watchdog_s),
            safety_poll_s=float(config.webhook.safety_poll_s),
        ),
        "poll_intervals": {a.name: float(a.poll_interval_s) for a in config.accounts},
        "web": WebOptions(config),
        "history": history_options(config),
        "privacy": privacy_options(config),
    }


def zones_of(config: Config) -> tuple[ZoneArea, ...]:
    """Return the configuration's `zones:`, as privacy and history use them."""
    return tuple(ZoneArea(z.name, z.latitude, z.longitude, z.radius_m) for z in config.zones)


def privacy_options(config: Config) -> dict[str, Privacy]:
    """Return each account's location privacy, as `config` sets it."""
    zones = zones_of(config)
    return {
        a.name: Privacy(
            LocationMode(a.privacy.location),
            float(a.privacy.grid_m),
            MappingProxyType({car: LocationMode(m) for car, m in a.privacy.cars.items()}),
            zones,
        )
        for a in config.accounts
    }


def history_options(config: Config) -> HistoryOptions | None:
    """Return where and how `config` keeps history, None when it keeps none."""
    settings = config.history
    if not settings.enabled:
        return None
    path = settings.sqlite_path(config.store)
    backend: HistoryBackend
    if path is not None:
        backend = SqliteHistory(path)
    else:
        try:
            from car2mqtt.history.postgres import PostgresHistory  # noqa: PLC0415 - when used
        except ImportError:
            msg = (
                "history.url names a PostgreSQL database, but its driver is not installed: "
                "pip install 'car2mqtt[postgresql]'"
            )
            raise ConfigError(msg) from None
        assert settings.url is not None
        backend = PostgresHistory(settings.url.get_secret_value())

    def seconds(days: int | None) -> float | None:
        return None if days is None else days * 86400.0

    retention = Retention(
        samples_s=seconds(settings.keep_samples_days),
        sessions_s=seconds(settings.keep_sessions_days),
        trips_s=seconds(settings.keep_trips_days),
    )
    return HistoryOptions(backend, retention, settings.queue, zones=zones_of(config))


@contextlib.asynccontextmanager
async def running_config(
    config: Config, *, clock: Clock | None = None, **overrides: Any
) -> AsyncIterator[Running]:
    """Run the bridge `config` describes in the background for the duration of the block."""
    clock = clock or SystemClock()
    store = Store.open(config.store)
    try:
        budgets = overrides.pop("budgets", None) or budgets_of(config, clock)
        providers = providers_of(config, clock, store, budgets)
        options = {**_config_options(config, clock, store, budgets), **overrides}
        async with running(providers, **options) as run:
            yield run
    finally:
        store.close()


async def run_config(config: Config, *, clock: Clock | None = None) -> None:
    """Run the bridge described by `config` until cancelled."""
    clock = clock or SystemClock()
    store = Store.open(config.store)
    try:
        budgets = budgets_of(config, clock)
        providers = providers_of(config, clock, store, budgets)
        await serve(providers, **_config_options(config, clock, store, budgets))
    finally:
        store.close()
