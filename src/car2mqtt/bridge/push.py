"""The push source: webhook deliveries feed the hub beside polling, and a watchdog guards them.

For every account whose provider pushes (`provider.push`), it subscribes at the cloud (its
own subscription, kept in the state file with a random secret), takes the deliveries the web
server receives, checks their signature, applies each event once, and tells the account's
pace whether pushes arrive: while they do, polling is only a safety net; when nothing has
arrived for `push_watchdog_s`, polling takes over at once and a test delivery is asked for.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from car2mqtt.backoff import backoff_delay
from car2mqtt.bridge.commands import CommandService
from car2mqtt.bridge.hub import VehicleHub
from car2mqtt.bridge.known import PushMode
from car2mqtt.bridge.pace import Pace
from car2mqtt.bridge.saving import Saver
from car2mqtt.bridge.timing import Timing
from car2mqtt.clock import Clock
from car2mqtt.errors import AuthError, BadCloudResponse, ConfigError, ProviderError, StoreError
from car2mqtt.logs import REDACTOR
from car2mqtt.models import LinkState
from car2mqtt.providers.base import Provider
from car2mqtt.providers.push import (
    PushBatch,
    PushChannel,
    PushedAction,
    PushedAlive,
    PushedLinkLost,
    PushedRemoval,
    PushedSmart,
    PushedState,
    push_channel,
)
from car2mqtt.store import Store

_LOGGER = logging.getLogger(__name__)

ROUTE = "/webhooks/{provider}/{account}"
MAX_BODY_BYTES = 1_000_000
DEDUPE_WINDOW = 20_000  # event identities remembered (a retry comes within minutes)
DELIVERIES_KEPT = 20  # per account, for `car2mqtt webhook status`
WATCH_EVERY_S = 15.0
COMPLAIN_EVERY_S = 60.0  # one log line per minute at most for bodies that make no sense
ROTATION_GRACE_S = 3600.0  # the old secret still verifies this long after a rotation
RELOAD_EVERY_S = 5.0  # a bad signature re-reads the state file (a rotation?) this often at most


def meta_key(account: str) -> str:
    """Return the state file's key for `account`'s subscription (id and secret)."""
    return f"webhook:{account}"


def deliveries_key(account: str) -> str:
    """Return the state file's key for `account`'s last deliveries."""
    return f"webhook-deliveries:{account}"


def receiver_path(provider: str, account: str, base_path: str = "") -> str:
    """Return the receiver's path for `account`, under the web server's base path."""
    return base_path + ROUTE.format(provider=provider, account=account)


@dataclass(frozen=True, slots=True)
class Registration:
    """car2mqtt's subscription for one account, as the state file keeps it."""

    subscription_id: str | None
    secret: str
    url: str | None = None
    # The secret before the last rotation, accepted for ROTATION_GRACE_S after it (clock
    # time `rotated_at`): deliveries the cloud signed just before it took the new one are
    # not refused, and a leaked old secret stops working soon.
    previous: str | None = None
    rotated_at: float | None = None

    @classmethod
    def load(cls, store: Store, account: str) -> Registration | None:
        """Read it from the state file (None if there is none)."""
        text = store.get_meta(meta_key(account))
        if text is None:
            return None
        try:
            data = json.loads(text)
            return cls(
                data.get("id"),
                str(data["secret"]),
                data.get("url"),
                data.get("previous"),
                data.get("rotated_at"),
            )
        except (ValueError, KeyError, TypeError):
            return None

    def save(self, store: Store, account: str) -> None:
        """Write it to the state file (0600, like every secret car2mqtt keeps)."""
        data = {
            "id": self.subscription_id,
            "secret": self.secret,
            "url": self.url,
            "previous": self.previous,
            "rotated_at": self.rotated_at,
        }
        store.set_meta(meta_key(account), json.dumps(data))

    def secrets(self, now: float) -> list[str]:
        """Return the secrets a delivery may be signed with at `now`: the current one first."""
        fresh = self.rotated_at is not None and now - self.rotated_at < ROTATION_GRACE_S
        return [self.secret, self.previous] if self.previous and fresh else [self.secret]


def new_secret() -> str:
    """Return a new webhook secret: 256 random bits."""
    return secrets.token_hex(32)


@dataclass(slots=True, eq=False)
class _Account:
    provider: Provider
    channel: PushChannel
    pace: Pace
    url: str
    registration: Registration | None = None
    last_delivery: float | None = None  # clock time
    last_test: float | None = None
    last_check: float | None = None  # when the cloud was last asked whether it is active
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)
    deliveries: list[dict[str, object]] = field(default_factory=list)
    complaints: dict[str, float] = field(default_factory=dict)  # kind -> when last said
    last_reload: float = float("-inf")
    refused: int = 0  # deliveries refused for their signature
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)


class PushSource:
    """Webhook deliveries of every pushing account, into the hub and the command service."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        hub: VehicleHub,
        commands: CommandService,
        *,
        paces: Mapping[str, Pace],
        saver: Saver,
        clock: Clock,
        timing: Timing,
        base_path: str = "",
    ) -> None:
        self._hub = hub
        self._commands = commands
        self._saver = saver
        self._store = saver.store
        self._clock = clock
        self._timing = timing
        self._accounts: dict[str, _Account] = {}
        for name, provider in providers.items():
            channel = push_channel(provider)
            if channel is None:
                continue
            url = channel.public_url + receiver_path(provider.spec.name, name, base_path)
            self._accounts[name] = _Account(provider, channel, paces[name], url)

    @property
    def accounts(self) -> list[str]:
        """The accounts that push."""
        return list(self._accounts)

    def url_of(self, account: str) -> str:
        """Where the cloud delivers `account`'s events."""
        return self._accounts[account].url

    # ---- receiving ---------------------------------------------------------------------------

    async def receive(
        self, provider: str, account: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, str]:
        """Handle one delivery; return the HTTP status and a short text for the cloud."""
        entry = self._accounts.get(account)
        if entry is None or entry.provider.spec.name != provider:
            return 404, "no such webhook receiver"
        if not self._verified(entry, headers, body):
            entry.refused += 1
            self._complain(
                entry,
                "signature",
                f"account {account}: refused webhook deliveries with a bad signature "
                f"({entry.refused} so far)",
            )
            return 401, "bad signature"
        now = self._clock.time()
        try:
            batch = entry.channel.parse(body)
        except BadCloudResponse as exc:
            # An error status would make the cloud send it again and again: take it, say so.
            self._complain(entry, "body", f"account {account}: ignored a webhook delivery: {exc}")
            await self._delivered(entry, now, 0, "unreadable")
            return 200, "ignored"
        if batch.unknown:
            names = ", ".join(sorted(set(batch.unknown)))
            self._complain(entry, "events", f"account {account}: ignored webhook events {names}")
        applied = await self._apply(entry, batch)
        await self._delivered(entry, now, applied, "ok")
        return 200, "ok"

    def _verified(self, entry: _Account, headers: Mapping[str, str], body: bytes) -> bool:
        registration = entry.registration
        if registration is not None and self._signed(entry, registration, headers, body):
            return True
        # `car2mqtt webhook rotate` may have changed the secret since: read it again, but
        # not for every forged request (each read takes the state file's lock).
        now = self._clock.time()
        if now - entry.last_reload < RELOAD_EVERY_S:
            return False
        entry.last_reload = now
        try:
            fresh = Registration.load(self._store, entry.provider.account)
        except StoreError:
            return False
        if fresh is None or fresh == registration:
            return False
        REDACTOR.add(fresh.secret)
        entry.registration = fresh
        return self._signed(entry, fresh, headers, body)

    def _signed(
        self,
        entry: _Account,
        registration: Registration,
        headers: Mapping[str, str],
        body: bytes,
    ) -> bool:
        # Every secret is checked (no early exit): the time taken says nothing about which.
        secrets_now = registration.secrets(self._clock.time())
        results = [entry.channel.verify(s, headers, body) for s in secrets_now]
        return any(results)

    async def _apply(self, entry: _Account, batch: PushBatch) -> int:
        name, applied = entry.provider.account, 0
        states = []
        for item in batch.items:
            if item.identity in entry.seen:
                continue  # the cloud sent it again (a retry): applied once
            entry.seen[item.identity] = None
            if len(entry.seen) > DEDUPE_WINDOW:
                entry.seen.popitem(last=False)
            applied += 1
            if isinstance(item, PushedState):
                states.append(item.state)
                continue
            if states:
                await self._hub.apply(name, states)
                states = []
            if isinstance(item, PushedSmart):
                await self._hub.apply_smart(name, item.vehicle_id, item.smart)
            elif isinstance(item, PushedRemoval):
                await self._hub.remove(name, item.vehicle_id)
            elif isinstance(item, PushedAction):
                await self._commands.pushed(name, item.action_id, item.status, item.reason)
            elif isinstance(item, PushedLinkLost):
                _LOGGER.warning("account %s: %s; re-link needed", name, item.problem)
                await self._hub.set_link(name, LinkState.RELINK_REQUIRED, item.problem)
            elif isinstance(item, PushedAlive):
                pass  # its arrival is the news
        if states:
            # One batch to the hub: older data still never overwrites newer.
            await self._hub.apply(name, states)
        return applied

    async def _delivered(self, entry: _Account, now: float, applied: int, outcome: str) -> None:
        entry.last_delivery = now
        name = entry.provider.account
        entry.deliveries = [
            {"at": now, "events": applied, "outcome": outcome},
            *entry.deliveries[: DELIVERIES_KEPT - 1],
        ]
        log, store = json.dumps(entry.deliveries), self._store
        await self._saver.save(
            "the webhook deliveries", lambda: store.set_meta(deliveries_key(name), log)
        )
        mode = self._hub.account(name).push  # before the subscription is done: as it is
        if entry.subscribed.is_set():
            if not entry.pace.pushed:
                _LOGGER.info(
                    "account %s: webhook deliveries arrive; polling only as a safety net", name
                )
            entry.pace.pushed, mode = True, PushMode.ACTIVE
        await self._hub.set_push(name, mode, None, delivered_at=now)

    def _complain(self, entry: _Account, kind: str, line: str) -> None:
        now = self._clock.time()
        if now - entry.complaints.get(kind, float("-inf")) >= COMPLAIN_EVERY_S:
            entry.complaints[kind] = now
            _LOGGER.warning("%s", line)

    # ---- subscribing and watching ------------------------------------------------------------

    async def run(self) -> None:
        """Subscribe every pushing account, then watch its deliveries, until cancelled."""
        if not self._accounts:
            return
        async with asyncio.TaskGroup() as group:
            for name in self._accounts:
                group.create_task(self._run_account(name), name=f"push-{name}")

    async def _run_account(self, name: str) -> None:
        entry = self._accounts[name]
        await self._hub.set_push(name, PushMode.STARTING, "subscribing")
        await self._subscribe(entry)
        while True:
            await asyncio.sleep(min(WATCH_EVERY_S, self._timing.push_watchdog_s / 4))
            await self.watch(name)

    async def _subscribe(self, entry: _Account) -> None:
        name, attempt = entry.provider.account, 0
        while True:
            try:
                await self.subscribe(name)
            except (ProviderError, AuthError, StoreError) as exc:
                attempt += 1
                await self._hub.set_push(name, PushMode.DEGRADED, f"cannot subscribe: {exc}")
                if attempt == 1:
                    _LOGGER.warning(
                        "account %s: cannot subscribe to webhooks (%s); polling meanwhile",
                        name,
                        exc,
                    )
                await asyncio.sleep(
                    backoff_delay(
                        attempt,
                        base_s=self._timing.backoff_base_s,
                        max_s=self._timing.backoff_max_s,
                    )
                )
            else:
                return

    async def subscribe(self, name: str) -> None:
        """Create or update `name`'s subscription, then ask for a test delivery."""
        entry = self._accounts[name]
        # From the state file, not memory: `car2mqtt webhook rotate` may have run meanwhile.
        registration = Registration.load(self._store, name) or entry.registration
        secret = registration.secret if registration else new_secret()
        REDACTOR.add(secret)  # never in a log line, whatever goes wrong
        known = registration.subscription_id if registration else None
        if registration is None:
            # Saved before the cloud hears of it: a delivery right after creation verifies.
            entry.registration = Registration(None, secret, entry.url)
            await self._save(entry.registration, name)
        else:
            entry.registration = registration
        subscription = await entry.channel.subscribe(entry.url, secret, known)
        entry.registration = Registration(
            subscription.id,
            secret,
            entry.url,
            registration.previous if registration else None,
            registration.rotated_at if registration else None,
        )
        await self._save(entry.registration, name)
        entry.subscribed.set()
        _LOGGER.info("account %s: webhooks subscribed at %s", name, entry.url)
        await self._test(entry)

    async def _save(self, registration: Registration, name: str) -> None:
        store = self._store
        await self._saver.save("the webhook", lambda: registration.save(store, name))

    async def _test(self, entry: _Account) -> None:
        name, registration = entry.provider.account, entry.registration
        if registration is None or registration.subscription_id is None:
            return
        entry.last_test = self._clock.time()
        try:
            ok, detail = await entry.channel.test(registration.subscription_id)
        except (ProviderError, AuthError) as exc:
            ok, detail = False, str(exc)
        if ok:
            # The test delivery itself, once it arrives, makes the account active.
            if self._hub.account(name).push is not PushMode.ACTIVE:
                await self._hub.set_push(name, PushMode.STARTING, f"test: {detail}")
        elif self._hub.account(name).push is PushMode.DEGRADED:
            _LOGGER.info("account %s: the webhook test failed too: %s", name, detail)
        else:
            await self._degrade(entry, f"the webhook test failed: {detail}")

    async def watch(self, name: str) -> None:
        """Check that deliveries still arrive; fall back to polling when they do not."""
        entry = self._accounts[name]
        if not entry.subscribed.is_set():
            return
        now = self._clock.time()
        quiet_for = now - (entry.last_delivery or entry.last_test or now)
        watchdog = self._timing.push_watchdog_s
        if quiet_for >= watchdog / 2 and await self._reported_inactive(entry, now):
            return
        if quiet_for < watchdog:
            return
        await self._degrade(entry, f"no webhook delivery for over {watchdog:.0f} s")
        if entry.last_test is None or now - entry.last_test >= watchdog:
            await self._test(entry)

    async def _reported_inactive(self, entry: _Account, now: float) -> bool:
        """Ask the cloud whether the webhook is still active; act on what it says.

        Asked only while deliveries are quiet (heartbeats keep a healthy one busy), at most
        once per half a watchdog period: a healthy webhook costs no call. Returns True when
        the cloud said it is inactive or gone, and polling took over.
        """
        half = self._timing.push_watchdog_s / 2
        registration = entry.registration
        if registration is None or registration.subscription_id is None:
            return False
        if entry.last_check is not None and now - entry.last_check < half:
            return False
        entry.last_check = now
        name = entry.provider.account
        try:
            subscription = await entry.channel.describe(registration.subscription_id)
        except (ProviderError, AuthError) as exc:
            _LOGGER.info("account %s: cannot ask about the webhook (%s)", name, exc)
            return False
        if subscription is not None and subscription.active:
            return False
        if subscription is None:
            await self._degrade(entry, "the webhook is gone at the cloud; subscribing again")
            entry.subscribed.clear()
            await self._subscribe(entry)
            return True
        await self._degrade(entry, "the cloud reports the webhook inactive")
        await self._test(entry)  # a test that gets through makes it active again
        return True

    async def _degrade(self, entry: _Account, why: str) -> None:
        name, pace = entry.provider.account, entry.pace
        if pace.pushed:
            _LOGGER.warning("account %s: %s; polling takes over", name, why)
            pace.pushed = False
            pace.wake.set()  # poll now, not at the end of an hour's safety interval
        await self._hub.set_push(name, PushMode.DEGRADED, why)


async def rotate(
    channel: PushChannel, store: Store, account: str, url: str, clock: Clock
) -> Registration:
    """Give `account`'s webhook a new secret; the old one stays accepted until the next."""
    old = Registration.load(store, account)
    if old is None or old.subscription_id is None:
        msg = f"account {account} has no webhook yet: start the bridge once to subscribe it"
        raise ConfigError(msg)
    secret = new_secret()
    REDACTOR.add(secret)
    # The cloud first: if it refuses, the state file keeps the secret the cloud still uses.
    subscription = await channel.subscribe(old.url or url, secret, old.subscription_id)
    fresh = Registration(subscription.id, secret, old.url or url, old.secret, clock.time())
    fresh.save(store, account)
    return fresh
