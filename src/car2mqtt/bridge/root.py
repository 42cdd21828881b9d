"""The composition root of the bridge: builds every part and runs them under one TaskGroup.

It is the only module that knows them all: one poller per account and the push source (the
sources), the vehicle hub, the Home Assistant publisher (the first sink), the command service
and the MQTT command intake. Further sinks attach with `add_sink`, without any change to the
parts already here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from car2mqtt.bridge.budget import Budget, CallKeeper
from car2mqtt.bridge.commands import CommandService
from car2mqtt.bridge.events import Sink
from car2mqtt.bridge.health import Health
from car2mqtt.bridge.hub import VehicleHub
from car2mqtt.bridge.intake import MqttCommands
from car2mqtt.bridge.outbox import Outbox, PublishFn
from car2mqtt.bridge.pace import Pace
from car2mqtt.bridge.poller import Poller
from car2mqtt.bridge.privacy import Privacy
from car2mqtt.bridge.publisher import HaPublisher, Publishing
from car2mqtt.bridge.push import PushSource
from car2mqtt.bridge.saving import Saver
from car2mqtt.bridge.tasks import Spawner
from car2mqtt.bridge.timing import Timing
from car2mqtt.clock import Clock
from car2mqtt.mqtt.topics import Topics
from car2mqtt.providers.base import Provider
from car2mqtt.store import Store

_LOGGER = logging.getLogger(__name__)


class Bridge:
    """Every account's polling, the hub, its sinks and the command handling, wired together."""

    def __init__(
        self,
        providers: list[Provider],
        *,
        store: Store,
        clock: Clock,
        topics: Topics,
        publishing: Publishing | None = None,
        timing: Timing | None = None,
        poll_intervals: Mapping[str, float] | None = None,
        receiver_base_path: str = "",
        privacy: Mapping[str, Privacy] | None = None,
        budgets: Mapping[str, Budget] | None = None,
    ) -> None:
        timing = timing or Timing()
        intervals = dict(poll_intervals or {})
        # Built with the providers (their meters feed them), so handed in rather than made here.
        budgets = dict(budgets or {})
        self._topics = topics
        self._connect_hooks: list[Callable[[], Awaitable[None]]] = []
        self._spawner = Spawner()
        self._outbox = Outbox(self._spawner.start)
        # Every write of the bridge, its further sinks' included: one throttled error report.
        self.saver = saver = Saver(store, error_every_s=timing.store_error_every_s)
        self.hub = VehicleHub(
            [(p.account, p.spec, _calls_of(p, budgets.get(p.account))) for p in providers],
            saver=saver,
            stale_after_failures=timing.stale_after_failures,
            privacy=privacy,
        )
        self._providers = {p.account: p for p in providers}
        self._paces = paces = {p.account: Pace() for p in providers}
        self._pollers = [
            Poller(
                p,
                self.hub,
                pace=paces[p.account],
                saver=saver,
                timing=timing,
                clock=clock,
                interval_s=intervals.get(p.account),
                budget=budgets.get(p.account),
            )
            for p in providers
        ]
        self.publisher = HaPublisher(
            self.hub,
            outbox=self._outbox,
            saver=saver,
            clock=clock,
            topics=topics,
            publishing=publishing,
            spawner=self._spawner,
            heartbeat_s=timing.heartbeat_s,
            birth_jitter_s=timing.birth_jitter_s,
        )
        self.hub.subscribe(self.publisher)
        self.commands = CommandService(
            self.hub,
            self._providers,
            paces=paces,
            spawner=self._spawner,
            clock=clock,
            timing=timing,
        )
        # The second source: webhook deliveries of the accounts whose cloud pushes.
        self.push = PushSource(
            self._providers,
            self.hub,
            self.commands,
            paces=paces,
            saver=saver,
            clock=clock,
            timing=timing,
            base_path=receiver_base_path,
        )
        self._calls = CallKeeper(budgets, saver, every_s=timing.health_s)
        self._calls.load()
        # Not a sink: it reads the counters of the parts above on its own cadence.
        self.health = Health(
            self.hub,
            self._pollers,
            outbox=self._outbox,
            topics=topics,
            interval_s=timing.health_s,
            budgets=budgets,
        )
        self._intake = MqttCommands(
            self.hub,
            self.commands,
            outbox=self._outbox,
            spawner=self._spawner,
            clock=clock,
            topics=topics,
        )

    # ---- wiring ----------------------------------------------------------------------------

    def add_sink(self, sink: Sink) -> None:
        """Attach a further sink: it gets every change of the hub from now on."""
        self.hub.subscribe(sink)

    def on_connected(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Call `hook` after each (re)connect, once the publisher republished its topics."""
        self._connect_hooks.append(hook)

    @property
    def outbox(self) -> Outbox:
        """The way out to the broker that every sink shares (in order, pipelined)."""
        return self._outbox

    def attach(
        self,
        publish: PublishFn,
        *,
        protocol: Callable[[], str | None] | None = None,
        retained_payload: Callable[[str], Awaitable[bytes | None]] | None = None,
    ) -> None:
        """Give the bridge its way out: `await publish(topic, payload, retain=..., qos=...)`.

        `protocol` says which MQTT version the link speaks now: with 3.1.1 a retained message
        forwarded live does not show as retained, so before acting on a command the bridge
        asks `retained_payload(topic)` what the broker keeps retained there.
        """
        self._outbox.publish_fn = publish
        if protocol is not None:
            self._intake.protocol = protocol
        self._intake.retained_payload = retained_payload

    async def run(self) -> None:
        """Run until cancelled: one poller per account, the heartbeat, and command tasks."""
        try:
            async with asyncio.TaskGroup() as tg:
                self._spawner.attach(tg)
                self.commands.resume()
                for poller in self._pollers:
                    tg.create_task(poller.run(), name=f"poll-{poller.name}")
                tg.create_task(self.publisher.run(), name="heartbeat")
                tg.create_task(self.push.run(), name="push")
                tg.create_task(self.health.run(), name="health")
                tg.create_task(self._calls.run(), name="api-calls")
        finally:
            self._spawner.attach(None)

    async def on_connect(self) -> None:
        """Republish everything retained after each (re)connect to the broker."""
        await self.publisher.on_connect()
        self.health.request()
        for hook in self._connect_hooks:
            try:
                await hook()
            except Exception:
                # A further sink's bug must not cost the connection.
                _LOGGER.exception("unexpected error in a sink's reconnect")

    async def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        """Route a message: Home Assistant's birth to the publisher, the rest to the intake."""
        if topic == self._topics.ha_status:
            self.publisher.on_ha_status(payload)
            return
        if topic == self._topics.bridge_health_request:
            if not retained:  # a retained request would be acted on at every reconnect
                self.health.request()
            return
        self._intake.on_message(topic, payload, retained)

    async def republish(self) -> None:
        """Publish everything retained again, and wait until the broker took it."""
        await self.publisher.republish()
        await self._outbox.drain()

    def pace_of(self, account: str) -> Pace:
        """Return the pace `account`'s reads keep."""
        return self._paces[account]

    def poll_now(self, account: str) -> None:
        """Read `account` now rather than at its next turn (a backoff the cloud asked for stays)."""
        self._paces[account].wake.set()

    # ---- what tests and status readers ask -------------------------------------------------

    def provider(self, account: str) -> Provider:
        """Return the provider behind `account`."""
        return self._providers[account]

    def poller(self, account: str) -> Poller:
        """Return the poller reading `account`."""
        return next(poller for poller in self._pollers if poller.name == account)

    def failures(self, account: str) -> int:
        """Return how many polls of `account` have failed in a row."""
        return self.hub.account(account).failures

    @property
    def polls(self) -> int:
        """Polls started so far, over every account."""
        return sum(poller.polls for poller in self._pollers)

    @property
    def api_calls(self) -> int:
        """Cloud API calls made so far, over every account."""
        return self.hub.api_calls


def _calls_of(provider: Provider, budget: Budget | None) -> Callable[[], int]:
    """Return a counter of `provider`'s API calls (0 for one that does not count them)."""
    if budget is not None:
        ledger = budget.ledger
        return lambda: ledger.total

    def calls() -> int:
        client = getattr(provider, "client", None)
        return int(getattr(client, "calls", 0))

    return calls
