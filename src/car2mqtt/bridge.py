"""The composition root: providers in, Home Assistant discovery and state out, one TaskGroup.

The bridge decides *when* things happen: it polls each account on the provider's cadence
(faster while a car charges or a command is in flight, slower with jittered backoff while a
cloud misbehaves), publishes discovery and state, republishes everything when the broker comes
back or Home Assistant announces itself, and carries commands from MQTT to the cloud and their
outcome back. *What* is published comes from the pure functions in `car2mqtt.ha`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from car2mqtt import __version__
from car2mqtt.clock import Clock
from car2mqtt.errors import (
    AuthError,
    CommandRejected,
    MqttError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    ReauthRequired,
    StoreError,
)
from car2mqtt.ha import discovery
from car2mqtt.ha.discovery import DiscoveryMode, slugify
from car2mqtt.ha.entities import CONTROLS
from car2mqtt.models import (
    CommandResult,
    CommandStatus,
    LinkState,
    VehicleInfo,
    VehicleRef,
    VehicleState,
    merge_newer,
    safe_id,
)
from car2mqtt.mqtt.link import cancel_requests
from car2mqtt.mqtt.topics import Topics
from car2mqtt.providers.base import Command, Provider
from car2mqtt.store import Store

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Timing:
    """Every delay the bridge uses; tests shrink them, users get the providers' defaults."""

    poll_interval_s: float | None = None  # None: the provider's default
    active_poll_interval_s: float | None = None
    backoff_base_s: float = 30.0
    backoff_max_s: float = 900.0
    relink_retry_s: float = 900.0
    # While an account needs re-linking, how often to look for a grant `car2mqtt link` saved:
    # a local SQLite read, so the link comes back seconds after the user finished.
    relink_check_s: float = 5.0
    command_poll_s: float = 15.0
    command_timeout_s: float = 40 * 60.0
    after_command_poll_s: float = 45.0
    heartbeat_s: float = 300.0
    birth_jitter_s: float = 2.0
    stale_after_failures: int = 2
    # A refresh makes the cloud wake the car: one a minute per car, whatever HA sends.
    refresh_min_interval_s: float = 60.0
    # A state file that cannot be written (disk full) is said once per this many seconds.
    store_error_every_s: float = 300.0


@dataclass(frozen=True, slots=True)
class Publishing:
    """How discovery looks."""

    mode: DiscoveryMode = "device"  # or "entity" for Home Assistant older than 2024.11
    expose_vin: bool = False


@dataclass(slots=True)
class _Vehicle:
    state: VehicleState
    keys: frozenset[str] = frozenset()
    # Known from the store but not polled yet: only its availability may be published.
    placeholder: bool = False
    last_command: CommandResult | None = None
    # topic -> hash of the payload last sent: enough to skip repeats, and small, where keeping
    # the payloads themselves cost ~40 KB of Python objects per car (400 MB for a 10k fleet).
    published: dict[str, int] = field(default_factory=dict)
    discovery_inputs: tuple[object, ...] | None = None  # what the discovery was built from
    # Commands to one car go to the cloud one at a time, in the order they came: sent
    # concurrently, an older ON could reach Enode after a newer OFF and win.
    command_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    following: dict[str, _Followed] = field(default_factory=dict)  # control -> its command
    last_refresh: float | None = None  # loop time of the last refresh sent to the cloud
    unsettled: list[CommandResult] = field(default_factory=list)  # left open by an earlier run
    publish_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(slots=True)
class _Followed:
    """A command whose action the bridge follows, until it settles or a newer one replaces it."""

    result: CommandResult
    superseded_by: str | None = None
    status_failing: bool = False  # the cloud's answer on this command's status is missing

    def superseded(self) -> bool:
        """Whether a newer command on the same control took over."""
        return self.superseded_by is not None


@dataclass(slots=True)
class _Account:
    provider: Provider
    vehicles: dict[str, _Vehicle] = field(default_factory=dict)  # ref.key -> vehicle
    link: LinkState = LinkState.OK
    problem: str | None = None
    link_saved: bool = False  # whether the state file holds `link` and `problem` yet
    failures: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    commands_in_flight: int = 0
    # Event-loop time before which nothing may read from the cloud: the end of a backoff,
    # Retry-After included. A wake (after a command) cannot bring the next poll before it.
    not_before: float = 0.0


class Bridge:
    """Runs every account's polling, the MQTT link and the command handling."""

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
    ) -> None:
        self._accounts = {p.account: _Account(p) for p in providers}
        for name, (link, problem) in store.account_statuses().items():
            # What the last run saw, until this one knows better: status and HA agree.
            account = self._accounts.get(name)
            if account is not None and link in set(LinkState):
                account.link, account.problem, account.link_saved = LinkState(link), problem, True
        self._poll_intervals = dict(poll_intervals or {})
        self._store = store
        self._clock = clock
        self._topics = topics
        self._pub = publishing or Publishing()
        self._timing = timing or Timing()
        self._publish_fn: Any = None
        self._protocol: Callable[[], str | None] = lambda: "5"
        self._retained_payload: Callable[[str], Awaitable[bytes | None]] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._republish_lock = asyncio.Lock()
        self._birth_pending = False  # a republish for Home Assistant's birth is waiting
        self._store_error_said: float | None = None  # loop time the last save error was logged
        self._store_failing: set[str] = set()  # kinds of writes that failed and not since worked
        self._said: dict[str, float] = {}  # throttled warnings: what -> loop time said
        # Writes gathered while publishing and saved together (one transaction, one disk sync)
        # by _flush_store: per-car transactions would mean thousands of syncs per poll.
        self._pending_published: dict[str, frozenset[str]] = {}
        self._pending_states: dict[str, tuple[str, dict[str, Any]]] = {}
        self._known_published: dict[str, frozenset[str]] = {}
        # Cars removed whose retained topics the broker may still hold: the store keeps them
        # until the empty payloads went out, so a broker away at that moment gets them later.
        self._removals = set(store.pending_removals())
        # Discovery topics an earlier run announced, per car: those the current discovery mode
        # does not use are handed over to it (migrate_discovery) at the car's first publish.
        self._announced: dict[str, frozenset[str]] = {}
        # The name each car was announced under (key -> (cloud's name then, name announced)):
        # two cars of one model must not share entity ids, and a name stays once given.
        self._names: dict[str, tuple[str, str]] = store.vehicle_names()
        self.polls = 0
        self._restore_known()

    # ---- wiring ----------------------------------------------------------------------------

    def attach(
        self,
        publish: Any,
        *,
        protocol: Callable[[], str | None] | None = None,
        retained_payload: Callable[[str], Awaitable[bytes | None]] | None = None,
    ) -> None:
        """Give the bridge its way out: `await publish(topic, payload, retain=..., qos=...)`.

        `protocol` says which MQTT version the link speaks now: with 3.1.1 a retained message
        forwarded live does not show as retained, so before acting on a command the bridge
        asks `retained_payload(topic)` what the broker keeps retained there.
        """
        self._publish_fn = publish
        if protocol is not None:
            self._protocol = protocol
        self._retained_payload = retained_payload

    async def run(self) -> None:
        """Run until cancelled: one poller per account, a heartbeat, and command tasks."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            self._resume_commands()
            for account in self._accounts.values():
                tg.create_task(self._poll_loop(account), name=f"poll-{account.provider.account}")
            tg.create_task(self._heartbeat_loop(), name="heartbeat")

    async def on_connect(self) -> None:
        """Republish everything retained after each (re)connect to the broker."""
        await self.on_connect_guarded()

    async def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        """Handle Home Assistant's birth message and commands."""
        if topic == self._topics.ha_status:
            if payload.strip().lower() == b"online" and not self._birth_pending:
                # Births that arrive while a republish waits are one: 200 of them once cost
                # 200 full republishes.
                self._birth_pending = True
                self._spawn(self._republish_after_birth())
            return
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
            self._spawn(self._refuse_retained(topic))
            return
        if self._protocol() != "5" and self._retained_payload is not None:
            # MQTT 3.1.1 cannot tell a retained message forwarded live from a fresh one: ask
            # the broker on a side line whether it keeps this one retained before acting.
            self._spawn(self._command_unless_retained(topic, parsed, payload))
            return
        self._spawn(self._command(*parsed, payload))

    async def _command_unless_retained(
        self, topic: str, parsed: tuple[str, str, str], payload: bytes
    ) -> None:
        assert self._retained_payload is not None
        try:
            held = await self._retained_payload(topic)
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
        await self._publish(topic, b"", retain=True)

    def _warn_throttled(self, what: str, message: str, *args: object) -> None:
        """Log a warning about input from outside at most once a minute per kind."""
        now = asyncio.get_running_loop().time()
        if now - self._said.get(what, -1e9) < 60.0:
            return
        if len(self._said) > 1000:
            self._said.clear()  # junk topics must not grow this without bound
        self._said[what] = now
        _LOGGER.warning(message, *args)

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        if self._tg is None:
            coro.close()
            return
        self._tg.create_task(self._guarded(coro))

    async def _guarded(self, coro: Coroutine[Any, Any, object]) -> None:
        try:
            await coro
        except Exception:
            # One failing command or republish must not stop the bridge.
            _LOGGER.exception("unexpected error while handling a message")

    def _restore_known(self) -> None:
        # Read once: per car, 10,000 known cars would read 10,000 rows 10,000 times.
        published = self._store.published()
        announced = self._keys_by_vehicle(published)
        self._announced = self._topics_by_vehicle(published)
        commands = self._store.load_commands()
        for account in self._accounts.values():
            for ref in self._store.known_vehicles(account.provider.account):
                # Placeholder until the first poll: lets removal, republish and the stale
                # marking find the cars announced by an earlier run.
                keys = announced.get(ref.key, frozenset())
                vehicle = account.vehicles.setdefault(
                    ref.key, _Vehicle(_placeholder(ref), keys, placeholder=True)
                )
                restored = [
                    c
                    for c in map(discovery.command_from_payload, commands.get(ref.key, {}).values())
                    if c is not None
                ]
                if restored and vehicle.last_command is None:
                    vehicle.last_command = max(restored, key=lambda c: c.at)
                    vehicle.unsettled = [c for c in restored if not c.status.final]

    def _resume_commands(self) -> None:
        """Finish what an earlier run left open: follow pending actions, fail unsent ones."""
        for account in self._accounts.values():
            for vehicle in list(account.vehicles.values()):
                unsettled, vehicle.unsettled = vehicle.unsettled, []
                for result in unsettled:
                    self._resume_one(account, vehicle, result)

    def _resume_one(self, account: _Account, vehicle: _Vehicle, result: CommandResult) -> None:
        """Fail a command that never reached the cloud; follow one that did."""
        if result.action_id is None:
            # Sent to the cloud, but the bridge stopped before it answered: whether it arrived
            # is unknown, and there is nothing to follow.
            failed = replace(
                result,
                status=CommandStatus.FAILED,
                at=self._now(),
                reason="the bridge stopped before the cloud answered",
            )
            self._spawn(self._record(account, vehicle, failed))
        else:
            self._spawn(self._resume(account, vehicle, result))

    async def _resume(self, account: _Account, vehicle: _Vehicle, result: CommandResult) -> None:
        """Follow a command an earlier run sent, to its end."""
        _LOGGER.info("%s: following %s from before the restart", vehicle.state.ref.key, result)
        control = _control_of(result.command)
        followed = _Followed(result)
        account.commands_in_flight += 1
        try:
            async with vehicle.command_lock:
                if control in vehicle.following:
                    return  # a newer command came in first
                vehicle.following[control] = followed
            # Its time limit runs from when it was sent, not from this restart.
            await self._track(account, vehicle, followed, started=result.at.timestamp())
        finally:
            account.commands_in_flight -= 1
            if vehicle.following.get(control) is followed:
                del vehicle.following[control]
        account.wake.set()

    # ---- publishing --------------------------------------------------------------------------

    async def _publish(
        self, topic: str, payload: Mapping[str, Any] | str | bytes | None, *, retain: bool = True
    ) -> bool:
        """Publish; return whether the broker took it (False while it is away)."""
        if self._publish_fn is None:
            return False
        sent = await self._publish_fn(topic, _encode(payload), retain=retain, qos=1)
        return sent is not False

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.time(), UTC)

    async def republish(self, *, on_start: Callable[[], None] | None = None) -> None:
        """Publish bridge and vehicle discovery, availability and state, unconditionally.

        `on_start` runs once the republish holds its lock, before anything is sent.
        """
        async with self._republish_lock:
            if on_start is not None:
                on_start()
            for key, topics in self._store.pending_removals().items():
                await self._send_removal(key, topics)
            for topic, payload in discovery.bridge_discovery(
                self._topics, __version__, self._pub.mode
            ):
                await self._publish(topic, payload)
            for account in self._accounts.values():
                for vehicle in list(account.vehicles.values()):
                    if vehicle.keys:
                        await self._publish_vehicle(account, vehicle, force=True)
            self._flush_store()
            await self._publish_bridge_state()

    async def on_connect_guarded(self) -> None:
        """Republish after a (re)connect; a bug here is logged, never fatal."""
        try:
            await self.republish()
        except Exception:
            _LOGGER.exception("unexpected error while republishing")

    async def _republish_after_birth(self) -> None:
        # Home Assistant's docs ask for a random delay, so restarts don't storm the broker.
        await asyncio.sleep(random.uniform(0, self._timing.birth_jitter_s))
        _LOGGER.info("Home Assistant is online; republishing discovery and state")
        await self.republish(on_start=self._birth_taken)

    def _birth_taken(self) -> None:
        # Once this republish runs, a new birth asks for another (HA may restart again): births
        # while one waits are one, so a burst costs at most the one running and one more.
        self._birth_pending = False

    async def _publish_vehicle(self, account: _Account, vehicle: _Vehicle, *, force: bool) -> None:
        # One publish of a car at a time: a poll and a reconnect's republish interleaved would
        # send a discovery move's steps twice and out of order.
        async with vehicle.publish_lock:
            await self._publish_vehicle_now(account, vehicle, force=force)

    async def _publish_vehicle_now(
        self, account: _Account, vehicle: _Vehicle, *, force: bool
    ) -> None:
        state, ref, t = vehicle.state, vehicle.state.ref, self._topics
        if account.vehicles.get(ref.key) is not vehicle:
            return  # removed meanwhile: publishing now would leave a ghost behind
        online = account.failures < self._timing.stale_after_failures
        if vehicle.placeholder:
            if not online:
                await self._send_if_changed(vehicle, t.availability(ref), "offline", force=force)
            return
        keys = vehicle.keys | discovery.applicable_keys(state)
        name = self._name_of(state)
        inputs = (keys, state.info, self._pub, name)
        if force or vehicle.discovery_inputs != inputs:
            config_topics: list[tuple[str, Any]]
            vin = self._pub.expose_vin
            if self._pub.mode == "entity":
                config_topics = discovery.entity_discoveries(
                    state, t, keys, origin_version=__version__, expose_vin=vin, name=name
                )
            else:
                config_topics = [
                    discovery.device_discovery(
                        state, t, keys, origin_version=__version__, expose_vin=vin, name=name
                    )
                ]
            old_mode = self._announced.get(ref.key, frozenset()) - {t for t, _ in config_topics}
            # Home Assistant's order for a move between device and entity discovery: mark the
            # old topics, announce the new ones, then clear the old. The entities keep their
            # registry entries (ids, names, areas); clearing alone would delete them.
            for topic, marker in discovery.migration_markers(t, ref, keys, self._pub.mode):
                if topic in old_mode:
                    await self._publish(topic, marker)
            sent_all = True
            for topic, payload in config_topics:
                sent_all &= await self._send_if_changed(vehicle, topic, payload, force=force)
                if self._known_published.get(topic) != keys:
                    self._pending_published[topic] = keys
            if old_mode:
                await self._clear_old_mode(ref.key, old_mode)
            # Built again next time unless the broker took all of it.
            vehicle.discovery_inputs = inputs if sent_all else None
        vehicle.keys = keys
        await self._send_if_changed(
            vehicle, t.availability(ref), "online" if online else "offline", force=force
        )
        payload = discovery.state_payload(
            state,
            self._now(),
            relink_required=account.link is LinkState.RELINK_REQUIRED,
            keys=keys,
        )
        # data_age moves every minute; the heartbeat refreshes it, a change alone does not.
        compare = hash(_encode({k: v for k, v in payload.items() if k != "data_age"}))
        if force or vehicle.published.get(t.state(ref)) != compare:
            # Noted only once the broker took it: a failed publish is tried again next time.
            if await self._publish(t.state(ref), payload):
                vehicle.published[t.state(ref)] = compare
            else:
                vehicle.published.pop(t.state(ref), None)
            self._pending_states[ref.key] = (t.state(ref), payload)
        location = discovery.location_payload(state)
        if location is not None:
            await self._send_if_changed(vehicle, t.location(ref), location, force=force)
        if vehicle.last_command is not None:
            await self._send_if_changed(
                vehicle,
                t.command_result(ref),
                discovery.command_payload(vehicle.last_command),
                force=force,
            )

    def _name_of(self, state: VehicleState) -> str:
        """Return the name `state`'s car is announced under (its own, or made unique)."""
        known = self._names.get(state.ref.key)
        if known is not None and known[0] == state.info.name:
            return known[1]
        return state.info.name

    def _assign_names(self, states: Sequence[VehicleState]) -> None:
        """Name new and renamed cars so no two cars share entity ids; keep names once given.

        A car keeps the cloud's name unless another car has it (compared as entity-id slugs):
        then the newcomer, or every newcomer of one poll that shares it, takes a short suffix
        from its vehicle id ("Kia EV6 3f9a"). Home Assistant would otherwise make `_2` ids in
        discovery order, which can swap between restarts.
        """
        fresh = [
            st
            for st in states
            if st.info.name and self._names.get(st.ref.key, ("",))[0] != st.info.name
        ]
        if not fresh:
            return
        renamed = {st.ref.key for st in fresh}
        taken = {slugify(n): k for k, (_, n) in self._names.items() if k not in renamed}
        groups: dict[str, list[VehicleState]] = {}
        for st in fresh:
            groups.setdefault(slugify(st.info.name), []).append(st)
        changed: dict[str, tuple[str, str]] = {}
        for slug, group in groups.items():
            clash = len(group) > 1 or slug in taken
            for st in group:
                name = st.info.name
                if clash:
                    name = _unique_name(name, st.ref.vehicle_id, taken)
                taken[slugify(name)] = st.ref.key
                changed[st.ref.key] = (st.info.name, name)
                if name != st.info.name:
                    _LOGGER.info(
                        "vehicle %s: another car is also called %r; announcing it as %r",
                        st.ref.key,
                        st.info.name,
                        name,
                    )
        self._names.update(changed)
        self._save("vehicle names", lambda: self._store.save_vehicle_names(changed))

    def _save(self, what: str, write: Callable[[], object]) -> bool:
        """Write `what` (a kind of write) to the state file; a failure is logged, never fatal."""
        try:
            write()
        except StoreError as exc:
            self._store_trouble(what, exc)
            return False
        if what in self._store_failing:
            self._store_failing.discard(what)
            if not self._store_failing:
                _LOGGER.info("the state file can be written again")
                self._store_error_said = None
        return True

    def _store_trouble(self, what: str, exc: StoreError) -> None:
        """Log a state file that cannot be used: one line per few minutes, no traceback."""
        loop_now = asyncio.get_running_loop().time()
        said = self._store_error_said
        if said is None or loop_now - said >= self._timing.store_error_every_s:
            _LOGGER.error(
                "cannot save %s: %s. Still publishing from memory; free space or fix the "
                "file, and saving resumes by itself",
                what,
                exc,
            )
            self._store_error_said = loop_now
        self._store_failing.add(what)

    async def _clear_old_mode(self, key: str, topics: frozenset[str]) -> None:
        """Clear a car's discovery topics of the other mode; forget them once all went out."""
        for topic in sorted(topics):
            if not await self._publish(topic, b""):
                return  # the broker is away: the next connection's republish does it again
        self._save("a discovery move", lambda: self._store.forget_published(*topics))
        self._announced.pop(key, None)
        _LOGGER.info("vehicle %s: moved to %s discovery", key, self._pub.mode)

    def _flush_store(self) -> None:
        """Save what publishing gathered, in one transaction."""
        if not self._pending_published and not self._pending_states:
            return
        published, states = self._pending_published, self._pending_states
        if not self._save(
            "the published state",
            lambda: self._store.save_many(published=published, states=states),
        ):
            return  # kept: saved with the next batch, once the file can be written
        self._pending_published, self._pending_states = {}, {}
        self._known_published.update(published)

    async def _send_if_changed(
        self, vehicle: _Vehicle, topic: str, payload: Any, *, force: bool
    ) -> bool:
        """Publish unless the broker already has this payload; return whether it has it now."""
        data = _encode(payload)
        digest = hash(data)
        if not force and vehicle.published.get(topic) == digest:
            return True
        # Noted only once the broker took it: a failed publish is tried again next time.
        vehicle.published.pop(topic, None)
        if not await self._publish(topic, data):
            return False
        vehicle.published[topic] = digest
        return True

    async def _remove_vehicle(self, account: _Account, key: str) -> None:
        vehicle = account.vehicles.pop(key)
        # After any publish of the car under way: it would otherwise send topics again after
        # they were cleared, and put the car back into the state file.
        async with vehicle.publish_lock:
            await self._remove_vehicle_now(account, key, vehicle)

    async def _remove_vehicle_now(self, account: _Account, key: str, vehicle: _Vehicle) -> None:
        ref, t = vehicle.state.ref, self._topics
        _LOGGER.info(
            "vehicle %s is gone from %s; removing it from Home Assistant", key, ref.account
        )
        keys = vehicle.keys or self._keys_by_vehicle(self._store.published()).get(key, frozenset())
        configs = [topic for topic, _ in discovery.removal(t, ref, keys, self._pub.mode)]
        configs += sorted(self._announced.pop(key, frozenset()) - set(configs))
        for topic in configs:
            self._known_published.pop(topic, None)
            self._pending_published.pop(topic, None)
        self._pending_states.pop(key, None)
        topics = [
            *configs,
            t.state(ref),
            t.availability(ref),
            t.location(ref),
            t.command_result(ref),
        ]
        # Saved before anything is sent: the broker may be away now, or go away half-way.
        self._save("removals", lambda: self._store.begin_removal(key, topics))
        self._names.pop(key, None)
        self._removals.add(key)
        await self._send_removal(key, topics)

    async def _send_removal(self, key: str, topics: Sequence[str]) -> None:
        """Clear a removed car's retained topics; forget the removal once all went out."""
        for topic in topics:
            if key not in self._removals:
                return  # the car came back meanwhile: clearing now would hide it
            if not await self._publish(topic, b""):
                _LOGGER.info("vehicle %s: will clear its topics when the broker is back", key)
                return
        self._removals.discard(key)
        self._save("removals", lambda: self._store.finish_removal(key))

    def _cancel_removal(self, key: str) -> None:
        if key in self._removals:
            self._removals.discard(key)
            self._save("removals", lambda: self._store.finish_removal(key))

    async def _publish_bridge_state(self) -> None:
        accounts = {
            name: {
                "provider": a.provider.spec.name,
                "link": a.link.value,
                "problem": a.problem,
                "vehicles": len(a.vehicles),
                "failing": a.failures > 0,
            }
            for name, a in self._accounts.items()
        }
        problem = any(a.link is LinkState.RELINK_REQUIRED for a in self._accounts.values())
        await self._publish(
            self._topics.bridge_state,
            {
                "version": __version__,
                "vehicles": sum(len(a.vehicles) for a in self._accounts.values()),
                "api_calls": self.api_calls,
                "problem": "ON" if problem else "OFF",
                "accounts": accounts,
            },
        )

    def provider(self, account: str) -> Provider:
        """Return the provider behind `account`."""
        return self._accounts[account].provider

    def failures(self, account: str) -> int:
        """Return how many polls of `account` have failed in a row."""
        return self._accounts[account].failures

    @property
    def api_calls(self) -> int:
        """Cloud API calls made so far, over every account."""
        total = 0
        for account in self._accounts.values():
            client = getattr(account.provider, "client", None)
            total += int(getattr(client, "calls", 0))
        return total

    # ---- polling -----------------------------------------------------------------------------

    async def _poll_loop(self, account: _Account) -> None:
        while True:
            if cancel_requests():
                # A cancel some library swallowed (MqttLink re-raises the ones aiomqtt loses;
                # a publish function of someone else's may not): stop as asked. Left pending,
                # it would also make asyncio.timeout below take its own expiry for a cancel
                # that is already handled, and the loop would never end.
                raise asyncio.CancelledError
            account.wake.clear()  # before the poll: a wake during it must not be lost
            try:
                delay = await self.poll_once(account)
            except Exception:
                # A bug, not a cloud error: say so loudly, but keep this account (and every
                # other one) running rather than taking the whole bridge down.
                _LOGGER.exception(
                    "account %s: unexpected error while polling", account.provider.account
                )
                delay = self._timing.backoff_max_s
            await self._rest(account, delay)

    async def _rest(self, account: _Account, delay: float) -> None:
        """Wait `delay` s, or until woken or re-linked, but never past the end of a backoff."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while True:
            step = deadline - loop.time()
            relinking = account.link is LinkState.RELINK_REQUIRED
            if relinking:
                step = min(step, self._timing.relink_check_s)
            if step <= 0:
                return
            woken = False
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can turn a cancellation
            # that coincides with its timeout into a TimeoutError, and the loop would go on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(step):
                    await account.wake.wait()
                woken = True
            if cancel_requests():
                raise asyncio.CancelledError
            if woken or (relinking and self._relinked(account)):
                if self._backoff_left(account) <= 0:
                    return
                # The cloud asked for a pause (Retry-After): an early wake only ends it.
                account.wake.clear()
                deadline = min(deadline, account.not_before)

    def _backoff_left(self, account: _Account) -> float:
        """Seconds until `account` may read from its cloud again (0 when not backing off)."""
        return max(0.0, account.not_before - asyncio.get_running_loop().time())

    def _relinked(self, account: _Account) -> bool:
        """Whether `car2mqtt link` saved new credentials for `account` (never raises)."""
        try:
            found = account.provider.reload_credentials()
        except Exception:
            # A damaged or locked state file must not stop this account's loop, nor the others.
            _LOGGER.exception(
                "account %s: cannot look for new credentials", account.provider.account
            )
            return False
        if found:
            _LOGGER.info(
                "account %s: found new credentials from a re-link; polling now",
                account.provider.account,
            )
        return found

    async def poll_once(self, account: _Account) -> float:
        """Poll one account, publish what changed, and return how long to wait."""
        provider, timing = account.provider, self._timing
        name = provider.account
        self.polls += 1
        try:
            states = await provider.poll()
        except ReauthRequired as exc:
            await self._set_link(account, LinkState.RELINK_REQUIRED, str(exc))
            return timing.relink_retry_s
        except AuthError as exc:
            # Not the user's link but our own client credentials: the fix is in the config.
            problem = f"client credentials refused: {exc}"
            await self._set_link(account, LinkState.RELINK_REQUIRED, problem, config_fix=True)
            return timing.relink_retry_s
        except ProviderError as exc:
            return await self._poll_failed(account, exc)
        except StoreError as exc:
            # The provider could not use the state file (a token lock or read): not a bug.
            self._store_trouble(f"account {name}'s tokens", exc)
            return self._timing.backoff_base_s
        if account.failures:
            _LOGGER.info("account %s: %s answers again", name, provider.spec.title)
        was_stale = account.failures >= timing.stale_after_failures
        account.failures = 0
        # Note the link state first, so the publish below carries it with the new data at once.
        if provider.link_problem:
            self._note_link(account, LinkState.RELINK_REQUIRED, provider.link_problem)
        else:
            self._note_link(account, LinkState.OK, None)
        await self._apply(account, states, force=was_stale)
        return self._interval(account)

    async def _poll_failed(self, account: _Account, exc: ProviderError) -> float:
        name, timing = account.provider.account, self._timing
        account.failures += 1
        if account.failures == 1:
            # Once per change of state, not once per attempt: no error storms in the log.
            _LOGGER.warning("account %s: %s; backing off", name, exc)
        if account.failures == timing.stale_after_failures:
            _LOGGER.warning("account %s: marking its vehicles stale until the cloud recovers", name)
            for vehicle in list(account.vehicles.values()):
                if vehicle.keys:
                    await self._publish_vehicle(account, vehicle, force=False)
            self._flush_store()
            await self._publish_bridge_state()
        delay = min(timing.backoff_max_s, timing.backoff_base_s * 2.0 ** (account.failures - 1))
        delay *= random.uniform(0.8, 1.2)
        retry_after = exc.retry_after if isinstance(exc, ProviderUnavailable) else None
        delay = max(delay, retry_after or 0.0)
        account.not_before = asyncio.get_running_loop().time() + delay
        return delay

    def _interval(self, account: _Account) -> float:
        spec, timing = account.provider.spec, self._timing
        normal = (
            timing.poll_interval_s
            or self._poll_intervals.get(account.provider.account)
            or spec.poll_interval_s
        )
        active = timing.active_poll_interval_s or spec.active_poll_interval_s
        busy = account.commands_in_flight > 0 or any(
            v.state.charging or v.state.speed_kmh for v in account.vehicles.values()
        )
        return min(normal, active) if busy else normal

    async def _apply(
        self, account: _Account, states: Sequence[VehicleState], *, force: bool
    ) -> None:
        provider = account.provider
        # Listed by the cloud but unreadable this time: kept as they are, never removed. Only
        # a clean vehicle list may take a car away.
        spec_name, name = provider.spec.name, provider.account
        seen = {VehicleRef(spec_name, name, v).key for v in provider.unreadable}
        self._assign_names(states)
        for state in states:
            key = state.ref.key
            seen.add(key)
            vehicle = account.vehicles.get(key)
            if vehicle is not None and not vehicle.placeholder:
                vehicle.state = merge_newer(vehicle.state, state)
            else:
                if vehicle is None:
                    vehicle = _Vehicle(state, keys=self._published_keys(state.ref))
                    account.vehicles[key] = vehicle
                else:
                    # The same object: a command an earlier run left open is followed on it.
                    vehicle.state, vehicle.placeholder = state, False
                    vehicle.keys = vehicle.keys or self._published_keys(state.ref)
                self._cancel_removal(key)
                _LOGGER.info(
                    "vehicle %s (%s) found on account %s", key, state.info.name, state.ref.account
                )
            await self._publish_vehicle(account, vehicle, force=force)
        self._flush_store()
        for key in [k for k in account.vehicles if k not in seen]:
            await self._remove_vehicle(account, key)
        refs = [v.state.ref for v in account.vehicles.values()]
        self._save("the known vehicles", lambda: self._store.save_vehicles(provider.account, refs))
        await self._publish_bridge_state()

    def _published_keys(self, ref: VehicleRef) -> frozenset[str]:
        return self._keys_by_vehicle(self._store.published()).get(ref.key, frozenset())

    def _keys_by_vehicle(
        self, published: Mapping[str, frozenset[str]]
    ) -> dict[str, frozenset[str]]:
        """Map each vehicle key to the entity keys announced on its discovery topics."""
        found: dict[str, set[str]] = {}
        for topic, keys in published.items():
            key = self._topics.config_vehicle_key(topic)
            if key is not None:
                found.setdefault(key, set()).update(keys)
        return {key: frozenset(keys) for key, keys in found.items()}

    def _topics_by_vehicle(
        self, published: Mapping[str, frozenset[str]]
    ) -> dict[str, frozenset[str]]:
        """Map each vehicle key to the discovery topics announced for it."""
        found: dict[str, set[str]] = {}
        for topic in published:
            key = self._topics.config_vehicle_key(topic)
            if key is not None:
                found.setdefault(key, set()).add(topic)
        return {key: frozenset(topics) for key, topics in found.items()}

    def _note_link(
        self, account: _Account, link: LinkState, problem: str | None, *, config_fix: bool = False
    ) -> bool:
        """Record and log a change of link state; return whether it changed."""
        name = account.provider.account
        unchanged = account.link is link and account.problem == problem
        if unchanged and account.link_saved:
            return False
        # Saved even when unchanged from the default, so `car2mqtt status` reads what the
        # bridge sees (a recovered link equals the default and was once never saved).
        account.link_saved = self._save(
            "account status",
            lambda: self._store.save_account_status(name, link.value, problem),
        )
        if unchanged:
            return False
        account.link, account.problem = link, problem
        if link is LinkState.RELINK_REQUIRED and config_fix:
            _LOGGER.error(
                "account %s: %s. Check its client_id and client_secret in the configuration",
                name,
                problem,
            )
        elif link is LinkState.RELINK_REQUIRED:
            _LOGGER.error(
                "account %s needs re-linking: %s. Run: car2mqtt link %s --account %s",
                name,
                problem,
                account.provider.spec.name,
                name,
            )
        else:
            _LOGGER.info("account %s: link repaired", name)
        return True

    async def _set_link(
        self, account: _Account, link: LinkState, problem: str | None, *, config_fix: bool = False
    ) -> None:
        if not self._note_link(account, link, problem, config_fix=config_fix):
            return
        for vehicle in list(account.vehicles.values()):
            if vehicle.keys:
                await self._publish_vehicle(account, vehicle, force=False)
        self._flush_store()
        await self._publish_bridge_state()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._timing.heartbeat_s)
            try:
                for account in self._accounts.values():
                    # A copy: the pollers add and remove cars while we wait on the broker.
                    for vehicle in list(account.vehicles.values()):
                        if vehicle.keys and not vehicle.placeholder:
                            await self._publish_vehicle_state(account, vehicle)
                await self._publish_bridge_state()
            except Exception:
                _LOGGER.exception("unexpected error in the heartbeat")

    async def _publish_vehicle_state(self, account: _Account, vehicle: _Vehicle) -> None:
        ref = vehicle.state.ref
        if account.vehicles.get(ref.key) is not vehicle:
            return
        payload = discovery.state_payload(
            vehicle.state,
            self._now(),
            relink_required=account.link is LinkState.RELINK_REQUIRED,
            keys=vehicle.keys,
        )
        await self._publish(self._topics.state(ref), payload)

    # ---- commands ----------------------------------------------------------------------------

    def _find(self, provider_name: str, vehicle: str) -> tuple[_Account, _Vehicle] | None:
        for account in self._accounts.values():
            if account.provider.spec.name != provider_name:
                continue
            for entry in account.vehicles.values():
                if safe_id(entry.state.ref.vehicle_id) == vehicle:
                    return account, entry
        return None

    async def _command(self, provider_name: str, key: str, control: str, payload: bytes) -> None:
        found = self._find(provider_name, key)
        error_topic = self._topics.command_error(provider_name, key)
        if found is None:
            await self._reject(error_topic, f"no vehicle {provider_name}/{key}", control, payload)
            return
        account, vehicle = found
        provider, ref = account.provider, vehicle.state.ref
        # What a rejection names: the command the payload asked for, else the control.
        asked = discovery.requested_command(control, payload) or control
        try:
            command = discovery.parse_command(control, payload, vehicle.state.capabilities)
            if command not in provider.spec.commands:
                msg = f"{provider.spec.title} cannot {command.value.replace('_', ' ')}"
                raise CommandRejected(msg)
            if command is Command.REFRESH:
                self._check_refresh_allowed(vehicle)
        except CommandRejected as exc:
            await self._reject(error_topic, str(exc), control, payload)
            await self._record(
                account,
                vehicle,
                CommandResult(asked, CommandStatus.REJECTED, self._now(), reason=str(exc)),
                # Never reached the cloud: the saved command of this control (perhaps one
                # still pending) stays what a restart follows.
                save=False,
            )
            return
        _LOGGER.info("%s: %s requested", ref.key, command.value)
        account.commands_in_flight += 1
        followed = _Followed(CommandResult(command.value, CommandStatus.SENT, self._now()))
        try:
            async with vehicle.command_lock:
                await self._supersede(account, vehicle, control, command.value)
                vehicle.following[control] = followed
                await self._record(account, vehicle, followed.result)
                try:
                    result = await provider.send_command(ref, command)
                except (ProviderError, AuthError) as exc:
                    status = (
                        CommandStatus.REJECTED
                        if isinstance(exc, ProviderRejected)
                        else CommandStatus.FAILED
                    )
                    result = CommandResult(command.value, status, self._now(), reason=str(exc))
                followed.result = result
                await self._record(account, vehicle, result)
            settled_at_once = result.status.final
            await self._track(account, vehicle, followed)
        finally:
            account.commands_in_flight -= 1
            if vehicle.following.get(control) is followed:
                del vehicle.following[control]
        if settled_at_once:
            # The cloud refreshes its cache a little after a hint: poll once that is done.
            await asyncio.sleep(self._timing.after_command_poll_s)
        account.wake.set()

    def _check_refresh_allowed(self, vehicle: _Vehicle) -> None:
        """Allow one refresh per car per minute; raise CommandRejected for the rest."""
        now, last = asyncio.get_running_loop().time(), vehicle.last_refresh
        wait = self._timing.refresh_min_interval_s
        if last is not None and now - last < wait:
            msg = (
                f"refresh dropped: one a minute per car (each wakes the car through its "
                f"cloud); the next is possible in {wait - (now - last):.0f} s"
            )
            raise CommandRejected(msg)
        vehicle.last_refresh = now

    async def _supersede(
        self, account: _Account, vehicle: _Vehicle, control: str, newer: str
    ) -> None:
        """Stop following the older command on `control`, and say it was superseded."""
        older = vehicle.following.pop(control, None)
        if older is None or older.result.status.final:
            return
        older.superseded_by = newer
        # Enode itself cancels a pending action when a conflicting one arrives.
        ended = replace(
            older.result,
            status=CommandStatus.CANCELLED,
            at=self._now(),
            reason=f"superseded by {newer}",
        )
        _LOGGER.info("%s: %s superseded by %s", vehicle.state.ref.key, ended.command, newer)
        await self._record(account, vehicle, ended)

    async def _track(
        self,
        account: _Account,
        vehicle: _Vehicle,
        followed: _Followed,
        *,
        started: float | None = None,
    ) -> None:
        timing, provider = self._timing, account.provider
        started = self._clock.time() if started is None else started
        polled_early = False
        result = followed.result
        while not result.status.final:
            # The action's status is a read like any other: it waits out the account's backoff.
            await asyncio.sleep(max(timing.command_poll_s, self._backoff_left(account)))
            if followed.superseded():
                return  # a newer command on the same control took over
            if self._backoff_left(account) > 0:
                continue  # a poll failed meanwhile: its backoff holds for this read too
            if not polled_early and self._clock.time() - started >= timing.after_command_poll_s:
                polled_early = True
                account.wake.set()  # let the cloud's refreshed data show up soon
            if account.vehicles.get(vehicle.state.ref.key) is not vehicle:
                return  # the car is gone: nothing left to report on
            try:
                latest = await provider.command_status(vehicle.state.ref, result)
            except (ProviderError, AuthError) as exc:
                if not followed.status_failing:
                    # Once per change of state: it is asked again every command_poll_s.
                    _LOGGER.warning(
                        "%s: cannot read what became of %s (%s); asking again",
                        vehicle.state.ref.key,
                        result.command,
                        exc,
                    )
                followed.status_failing = True
                latest = result
            else:
                if followed.status_failing:
                    _LOGGER.info(
                        "%s: the status of %s can be read again",
                        vehicle.state.ref.key,
                        result.command,
                    )
                followed.status_failing = False
            if followed.superseded():
                return
            if self._clock.time() - started > timing.command_timeout_s and not latest.status.final:
                latest = CommandResult(
                    result.command, CommandStatus.FAILED, self._now(), result.action_id, "timed out"
                )
            followed.result = latest
            if latest.status != result.status or latest.reason != result.reason:
                await self._record(account, vehicle, latest)
            result = latest
        _LOGGER.info(
            "%s: %s %s%s",
            vehicle.state.ref.key,
            result.command,
            result.status.value,
            f" ({result.reason})" if result.reason else "",
        )

    async def _record(
        self, account: _Account, vehicle: _Vehicle, result: CommandResult, *, save: bool = True
    ) -> None:
        vehicle.last_command = result
        key = vehicle.state.ref.key
        if account.vehicles.get(key) is not vehicle:
            return
        payload = discovery.command_payload(result)
        control = _control_of(result.command)
        # Saved per control, so a restart (even kill -9) follows a pending action to its end,
        # and never leaves "sent" standing for ever.
        if save:
            self._save("commands", lambda: self._store.save_command(key, control, payload))
        await self._send_if_changed(
            vehicle, self._topics.command_result(vehicle.state.ref), payload, force=False
        )

    async def _reject(self, topic: str, message: str, control: str, payload: bytes) -> None:
        shown = payload[:200].decode("utf-8", errors="replace")
        _LOGGER.warning("rejected command %r on %s: %s", shown, control, message)
        await self._publish(
            topic,
            {"error": message, "control": control, "payload": shown, "at": self._now().isoformat()},
            retain=False,
        )


def _unique_name(name: str, vehicle_id: str, taken: Mapping[str, str]) -> str:
    """Return `name` with the shortest suffix of `vehicle_id` that no other car's slug has."""
    tail = slugify(vehicle_id).replace("_", "") or "car"
    for length in (4, 6, 8, len(tail)):
        candidate = f"{name} {tail[-length:]}"
        if slugify(candidate) not in taken:
            return candidate
    n = 2
    while slugify(f"{name} {tail} {n}") in taken:
        n += 1
    return f"{name} {tail} {n}"


def _control_of(command: str) -> str:
    """Return the MQTT control that sends `command` (its own name if none does)."""
    for control, accepted in CONTROLS.items():
        if any(c.value == command for c in accepted.values()):
            return control
    return command


def _encode(payload: Mapping[str, Any] | str | bytes | None) -> bytes | str:
    if payload is None:
        return b""
    if isinstance(payload, (bytes, str)):
        return payload
    return json.dumps(payload, separators=(",", ":"))


def _placeholder(ref: VehicleRef) -> VehicleState:
    return VehicleState(info=VehicleInfo(ref=ref, vendor=""))
