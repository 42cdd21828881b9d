"""The Home Assistant sink: discovery, state, location and command topics over MQTT.

It owns change detection (a hash of what the broker last took, per topic), discovery and its
moves between device and entity mode, the removal of cars' retained topics, the republish on
every (re)connect and Home Assistant birth, and the heartbeat that keeps `data_age` current.
*What* is published comes from the pure functions in `car2mqtt.ha`; this module decides when.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from car2mqtt import __version__
from car2mqtt.bridge.events import (
    AccountChanged,
    CommandProgress,
    Event,
    ListingDone,
    VehicleChanged,
    VehicleRemoved,
)
from car2mqtt.bridge.hub import VehicleHub
from car2mqtt.bridge.known import KnownAccount, KnownVehicle, PushMode
from car2mqtt.bridge.outbox import Outbox, Payload, encode
from car2mqtt.bridge.saving import Saver
from car2mqtt.bridge.tasks import Spawner
from car2mqtt.clock import Clock
from car2mqtt.ha import discovery
from car2mqtt.ha.discovery import DiscoveryMode
from car2mqtt.ha.entities import HaVersion
from car2mqtt.models import LocationMode, VehicleState
from car2mqtt.mqtt.topics import Topics

_LOGGER = logging.getLogger(__name__)

# States saved per transaction: one disk sync per this many cars, and no more of them held in
# memory (10,000 at once cost ~30 MB of dicts at the end of a poll).
FLUSH_EVERY = 500


@dataclass(frozen=True, slots=True)
class Publishing:
    """How discovery looks."""

    mode: DiscoveryMode = "device"  # or "entity" for Home Assistant older than 2024.11
    expose_vin: bool = False
    # The Home Assistant release, when the user said (mqtt.ha_version): newer platforms
    # (the time entity) are announced only to a release that has them.
    ha_version: HaVersion | None = None
    history: bool = False  # the history recorder runs: announce the entities it feeds


@dataclass(slots=True, eq=False)
class _Shown:
    """What the broker holds of one car, as far as this sink knows."""

    keys: frozenset[str] = frozenset()
    # topic -> hash of the payload last taken: enough to skip repeats, and small, where keeping
    # the payloads themselves cost ~40 KB of Python objects per car (400 MB for a 10k fleet).
    published: dict[str, int] = field(default_factory=dict)
    discovery_inputs: tuple[object, ...] | None = None  # what the discovery was built from
    # The state and context of the last publish the broker took whole: the same again needs
    # no payload built at all (10,000 unchanged cars per poll).
    settled: tuple[VehicleState, tuple[object, ...]] | None = None
    generation: int = 0  # counts publishes: an answer to an older one settles nothing
    # One publish of a car at a time: a poll and a reconnect's republish interleaved would
    # send a discovery move's steps twice and out of order.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class HaPublisher:
    """Publishes what the hub knows as Home Assistant MQTT discovery and state."""

    def __init__(
        self,
        hub: VehicleHub,
        *,
        outbox: Outbox,
        saver: Saver,
        clock: Clock,
        topics: Topics,
        publishing: Publishing | None = None,
        spawner: Spawner,
        heartbeat_s: float = 300.0,
        birth_jitter_s: float = 2.0,
    ) -> None:
        self._spawner = spawner
        self._hub = hub
        self._outbox = outbox
        self._saver = saver
        self._clock = clock
        self._topics = topics
        self._pub = publishing or Publishing()
        self._heartbeat_s = heartbeat_s
        self._birth_jitter_s = birth_jitter_s
        self._shown: dict[str, _Shown] = {}
        self._republish_lock = asyncio.Lock()
        self._flush_lock = asyncio.Lock()  # one save of the gathered writes at a time
        self._birth_pending = False  # a republish for Home Assistant's birth is waiting
        self.ha_online_at: float | None = None  # clock time Home Assistant last said "online"
        store = saver.store
        # Read once: per car, 10,000 known cars would read 10,000 rows 10,000 times.
        published = store.published()
        by_vehicle = topics.configs_by_vehicle(published)
        # Discovery topics an earlier run announced, per car: those the current discovery mode
        # does not use are handed over to it (migrate_discovery) at the car's first publish.
        self._announced = {key: frozenset(found) for key, found in by_vehicle.items()}
        # The entity keys each car's discovery announced, for cars not shown yet in this run.
        self._restored_keys = {
            key: frozenset(k for topic in found for k in published[topic])
            for key, found in by_vehicle.items()
        }
        # Cars removed whose retained topics the broker may still hold: the store keeps them
        # until the empty payloads went out, so a broker away at that moment gets them later.
        self._removals = set(store.pending_removals())
        # Writes gathered while publishing and saved together (one transaction, one disk sync).
        self._pending_published: dict[str, frozenset[str]] = {}
        self._pending_states: dict[str, tuple[str, dict[str, Any]]] = {}
        self._known_published: dict[str, frozenset[str]] = {}
        for account in hub.accounts():
            for vehicle in account.vehicles.values():
                self._shown_of(vehicle)

    # ---- events from the hub ---------------------------------------------------------------

    async def on_event(self, event: Event) -> None:
        """Publish what an event of the hub changed."""
        match event:
            case VehicleChanged(vehicle=vehicle, force=force):
                await self._cancel_removal_of(vehicle.key)
                await self._publish_vehicle(vehicle, force=force)
            case VehicleRemoved(vehicle=vehicle):
                await self._remove(vehicle)
            case CommandProgress(vehicle=vehicle, result=result):
                # The event's own step, not the car's latest: a step saved before it was sent
                # (a newer rejection may overtake it meanwhile) must still be shown.
                if self._hub.current(vehicle):
                    shown = self._shown_of(vehicle)
                    payload = discovery.command_payload(result)
                    await self._send_if_changed(
                        shown, self._topics.command_result(vehicle.ref), payload, force=False
                    )
            case AccountChanged(account=account):
                await self._publish_account(account)
            case ListingDone():
                await self._flush_store()
                await self._publish_bridge_state()

    # ---- the MQTT side ---------------------------------------------------------------------

    async def on_connect(self) -> None:
        """Republish after a (re)connect; a bug here is logged, never fatal."""
        try:
            await self.republish()
        except Exception:
            _LOGGER.exception("unexpected error while republishing")

    def on_ha_status(self, payload: bytes) -> None:
        """Republish, after a random delay, when Home Assistant says it is online."""
        if payload.strip().lower() == b"online":
            self.ha_online_at = self._clock.time()
        if payload.strip().lower() == b"online" and not self._birth_pending:
            # Births that arrive while a republish waits are one: 200 of them once cost 200
            # full republishes.
            self._birth_pending = (
                self._spawner.start(self._republish_after_birth(), "republish") is not None
            )

    async def republish(self, *, on_start: Callable[[], None] | None = None) -> None:
        """Publish bridge and vehicle discovery, availability and state, unconditionally.

        `on_start` runs once the republish holds its lock, before anything is sent.
        """
        async with self._republish_lock:
            if on_start is not None:
                on_start()
            store = self._saver.store
            # Read on the store's thread: a write in progress must not stall the loop.
            for key, topics in (await store.run(store.pending_removals)).items():
                await self._send_removal(key, topics)
            for topic, payload in discovery.bridge_discovery(
                self._topics, __version__, self._pub.mode, history=self._pub.history
            ):
                await self._send(topic, payload)
            for account in self._hub.accounts():
                for vehicle in list(account.vehicles.values()):
                    if self._has_keys(vehicle):
                        await self._publish_vehicle(vehicle, force=True)
            await self._flush_store()
            await self._publish_bridge_state()

    async def run(self) -> None:
        """Refresh every car's state (its data age) and the bridge's, until cancelled."""
        while True:
            await asyncio.sleep(self._heartbeat_s)
            try:
                for account in self._hub.accounts():
                    # A copy: the sources add and remove cars while we wait on the broker.
                    for vehicle in list(account.vehicles.values()):
                        if self._has_keys(vehicle) and not vehicle.placeholder:
                            await self._publish_state_only(vehicle)
                await self._publish_bridge_state()
            except Exception:
                _LOGGER.exception("unexpected error in the heartbeat")

    # ---- inside ----------------------------------------------------------------------------

    async def _republish_after_birth(self) -> None:
        began = False

        def taken() -> None:
            # Once this republish runs, a new birth asks for another (HA may restart again):
            # births while one waits are one, so a burst costs the one running and one more.
            nonlocal began
            began = True
            self._birth_pending = False

        try:
            # Home Assistant's docs ask for a random delay, so restarts don't storm the broker.
            await asyncio.sleep(random.uniform(0, self._birth_jitter_s))
            _LOGGER.info("Home Assistant is online; republishing discovery and state")
            await self.republish(on_start=taken)
        finally:
            if not began:
                self._birth_pending = False  # cancelled before it began: the next birth counts

    def _has_keys(self, vehicle: KnownVehicle) -> bool:
        """Whether `vehicle` is still the hub's and has entities announced."""
        return self._hub.current(vehicle) and bool(self._shown_of(vehicle).keys)

    def _shown_of(self, vehicle: KnownVehicle) -> _Shown:
        shown = self._shown.get(vehicle.key)
        if shown is None:
            shown = _Shown(keys=self._restored_keys.pop(vehicle.key, frozenset()))
            self._shown[vehicle.key] = shown
        return shown

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.time(), UTC)

    async def _send(self, topic: str, payload: Payload, *, retain: bool = True) -> bool:
        """Publish and wait for the broker's answer (False while it is away)."""
        return await (await self._outbox.send(topic, encode(payload), retain=retain))

    async def _publish_account(self, account: KnownAccount) -> None:
        for vehicle in list(account.vehicles.values()):
            if self._has_keys(vehicle):
                await self._publish_vehicle(vehicle, force=False)
        await self._flush_store()
        await self._publish_bridge_state()

    async def _publish_vehicle(self, vehicle: KnownVehicle, *, force: bool) -> None:
        if not self._hub.current(vehicle):
            return  # removed meanwhile: publishing now would leave a ghost behind
        shown = self._shown_of(vehicle)
        async with shown.lock:
            await self._publish_vehicle_now(vehicle, shown, force=force)

    async def _publish_vehicle_now(
        self, vehicle: KnownVehicle, shown: _Shown, *, force: bool
    ) -> None:
        if not self._hub.current(vehicle):
            return  # removed meanwhile: publishing now would leave a ghost behind
        state, ref, t = vehicle.state, vehicle.ref, self._topics
        account = self._hub.account_of(vehicle)
        online = not account.stale
        if vehicle.placeholder:
            if not online:
                await self._send_if_changed(shown, t.availability(ref), "offline", force=force)
            return
        context = (online, account.relink_required, vehicle.name, vehicle.last_command)
        if not force and shown.settled is not None and shown.settled == (state, context):
            return  # the broker has all of it
        shown.settled = None
        shown.generation += 1
        futures: list[asyncio.Future[bool]] = []
        ha = self._pub.ha_version
        # Entities announced before stay (reading null); those of a platform this Home
        # Assistant lacks go (a changed mqtt.ha_version swaps the text deadline for a time).
        found = discovery.applicable_keys(state, ha, history=self._pub.history)
        keys = discovery.keys_on_ha(shown.keys, ha) | found
        if state.location_mode is LocationMode.OFF:
            keys -= {"location"}  # `privacy.location: off`: the tracker goes, if it was there
        inputs = (keys, state.info, self._pub, vehicle.name, state.location_mode)
        if force or shown.discovery_inputs != inputs:
            futures += await self._publish_discovery(vehicle, shown, keys, inputs, force=force)
        shown.keys = keys
        futures.append(
            await self._submit_if_changed(
                shown, t.availability(ref), "online" if online else "offline", force=force
            )
        )
        payload = self._state_payload(vehicle, account, keys)
        # data_age moves every minute; the heartbeat refreshes it, a change alone does not.
        compare = hash(encode({k: v for k, v in payload.items() if k != "data_age"}))
        state_topic = t.state(ref)
        if force or shown.published.get(state_topic) != compare:
            sent = await self._outbox.send(
                state_topic, encode(payload), retain=True, eager=not force
            )
            _note(shown, state_topic, compare, sent)
            futures.append(sent)
            self._pending_states[vehicle.key] = (state_topic, payload)
        location = discovery.location_topic_payload(state)
        if location is not None or state.location_mode is not LocationMode.EXACT:
            # Outside `exact` what a run before retained never stays: the zone's name or the
            # coarse fix replaces it, or the topic is cleared (with no fix, and in `off`,
            # where an entity-mode tracker's config goes too).
            futures.append(
                await self._submit_if_changed(shown, t.location(ref), location, force=force)
            )
            if state.location_mode is LocationMode.OFF and self._pub.mode == "entity":
                tracker = t.entity_config("device_tracker", ref, "location")
                futures.append(await self._submit_if_changed(shown, tracker, None, force=force))
        if vehicle.last_command is not None:
            command = discovery.command_payload(vehicle.last_command)
            futures.append(
                await self._submit_if_changed(shown, t.command_result(ref), command, force=force)
            )
        _settle_when_taken(shown, (state, context), futures)
        if len(self._pending_states) >= FLUSH_EVERY:
            await self._flush_store()

    async def _publish_discovery(
        self,
        vehicle: KnownVehicle,
        shown: _Shown,
        keys: frozenset[str],
        inputs: tuple[object, ...],
        *,
        force: bool,
    ) -> list[asyncio.Future[bool]]:
        """Send the car's discovery; the futures say whether the broker took each topic."""
        state, ref, t, vin = vehicle.state, vehicle.ref, self._topics, self._pub.expose_vin
        name = vehicle.name
        config_topics: list[tuple[str, Any]]
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
        # Home Assistant's order for a move between device and entity discovery: mark the old
        # topics, announce the new ones, then clear the old. The entities keep their registry
        # entries (ids, names, areas); clearing alone would delete them.
        for topic, marker in discovery.migration_markers(t, ref, keys, self._pub.mode):
            if topic in old_mode:
                await self._send(topic, marker)
        futures = []
        for topic, payload in config_topics:
            futures.append(await self._submit_if_changed(shown, topic, payload, force=force))
            if self._known_published.get(topic) != keys:
                self._pending_published[topic] = keys
        # The old topics are cleared only after the new ones are there.
        if old_mode and all([await future for future in futures]):
            await self._clear_old_mode(ref.key, old_mode)
        # Built again next time unless the broker takes all of it.
        shown.discovery_inputs = inputs

        def unless_taken(sent: asyncio.Future[bool]) -> None:
            if not _ok(sent) and shown.discovery_inputs is inputs:
                shown.discovery_inputs = None

        for future in futures:
            future.add_done_callback(unless_taken)
        return futures

    async def _publish_state_only(self, vehicle: KnownVehicle) -> None:
        if not self._hub.current(vehicle):
            return
        keys = self._shown_of(vehicle).keys
        payload = self._state_payload(vehicle, self._hub.account_of(vehicle), keys)
        await self._outbox.send(self._topics.state(vehicle.ref), encode(payload), retain=True)

    def _state_payload(
        self, vehicle: KnownVehicle, account: KnownAccount, keys: frozenset[str]
    ) -> dict[str, Any]:
        return discovery.state_payload(
            vehicle.state, self._now(), relink_required=account.relink_required, keys=keys
        )

    async def _send_if_changed(
        self, shown: _Shown, topic: str, payload: Payload, *, force: bool
    ) -> bool:
        """Publish unless the broker already has this payload; return whether it has it now."""
        return await (await self._submit_if_changed(shown, topic, payload, force=force))

    async def _submit_if_changed(
        self, shown: _Shown, topic: str, payload: Payload, *, force: bool
    ) -> asyncio.Future[bool]:
        data = encode(payload)
        digest = hash(data)
        if not force and shown.published.get(topic) == digest:
            return _taken()
        sent = await self._outbox.send(topic, data, retain=True)
        _note(shown, topic, digest, sent)
        return sent

    async def _clear_old_mode(self, key: str, topics: frozenset[str]) -> None:
        """Clear a car's discovery topics of the other mode; forget them once all went out."""
        for topic in sorted(topics):
            if not await self._send(topic, b""):
                return  # the broker is away: the next connection's republish does it again
        store = self._saver.store
        await self._saver.save("a discovery move", lambda: store.forget_published(*topics))
        self._announced.pop(key, None)
        _LOGGER.info("vehicle %s: moved to %s discovery", key, self._pub.mode)

    async def _flush_store(self) -> None:
        """Save what publishing gathered, in one transaction."""
        async with self._flush_lock:
            if not self._pending_published and not self._pending_states:
                return
            published, states = self._pending_published, self._pending_states
            self._pending_published, self._pending_states = {}, {}
            store = self._saver.store
            saved = await self._saver.save(
                "the published state", lambda: store.save_many(published=published, states=states)
            )
            # Cars removed while the save ran: nothing of theirs may be kept or come back.
            published = {t: k for t, k in published.items() if self._shows_topic(t)}
            if not saved:
                # Kept: saved with the next batch, once the file can be written. Newer
                # entries gathered meanwhile win.
                states = {key: v for key, v in states.items() if key in self._shown}
                self._pending_published = {**published, **self._pending_published}
                self._pending_states = {**states, **self._pending_states}
                return
            self._known_published.update(published)

    def _shows_topic(self, topic: str) -> bool:
        """Whether the discovery topic `topic` belongs to a car this sink still shows."""
        return self._topics.config_vehicle_key(topic) in self._shown

    async def _remove(self, vehicle: KnownVehicle) -> None:
        shown = self._shown.pop(vehicle.key, None) or _Shown(
            keys=self._restored_keys.pop(vehicle.key, frozenset())
        )
        # After any publish of the car under way: it would otherwise send topics again after
        # they were cleared, and put the car back into the state file.
        async with shown.lock:
            await self._remove_now(vehicle, shown.keys)

    async def _remove_now(self, vehicle: KnownVehicle, keys: Collection[str]) -> None:
        ref, t, key = vehicle.ref, self._topics, vehicle.key
        configs = [topic for topic, _ in discovery.removal(t, ref, keys, self._pub.mode)]
        configs += sorted(self._announced.pop(key, frozenset()) - set(configs))
        for topic in configs:
            self._known_published.pop(topic, None)
            self._pending_published.pop(topic, None)
        self._pending_states.pop(key, None)
        topics = [*configs, *t.vehicle_topics(ref)]
        # Saved before anything is sent: the broker may be away now, or go away half-way.
        store = self._saver.store
        await self._saver.save("removals", lambda: store.begin_removal(key, topics))
        self._removals.add(key)
        await self._send_removal(key, topics)

    async def _send_removal(self, key: str, topics: Collection[str]) -> None:
        """Clear a removed car's retained topics; forget the removal once all went out."""
        for topic in topics:
            if key not in self._removals:
                return  # the car came back meanwhile: clearing now would hide it
            if not await self._send(topic, b""):
                _LOGGER.info("vehicle %s: will clear its topics when the broker is back", key)
                return
        self._removals.discard(key)
        store = self._saver.store
        await self._saver.save("removals", lambda: store.finish_removal(key))

    async def _cancel_removal_of(self, key: str) -> None:
        if key in self._removals:
            self._removals.discard(key)
            store = self._saver.store
            # A car back on the list: its removal must not be carried out after a restart.
            await self._saver.save("removals", lambda: store.finish_removal(key))

    async def _publish_bridge_state(self) -> None:
        accounts = self._hub.accounts()
        await self._send(
            self._topics.bridge_state,
            {
                "version": __version__,
                "vehicles": sum(len(a.vehicles) for a in accounts),
                "api_calls": self._hub.api_calls,
                "problem": "ON" if any(a.relink_required for a in accounts) else "OFF",
                **push_summary(accounts),
                "accounts": {
                    a.name: {
                        "provider": a.spec.name,
                        "link": a.link.value,
                        "problem": a.problem,
                        "vehicles": len(a.vehicles),
                        "failing": a.failures > 0,
                        "push": a.push.value,
                        "push_detail": a.push_detail,
                    }
                    for a in accounts
                },
            },
        )


def _note(shown: _Shown, topic: str, digest: int, sent: asyncio.Future[bool]) -> None:
    """Note `digest` as the latest payload sent on `topic`; forget it if the broker refuses it.

    Noted when sent, in send order: acks of two sends on one topic may come back after a third
    send, and noting at the ack could record an older payload over a newer one. A send that
    fails is forgotten (unless a newer one replaced it), so it is tried again next time.
    """
    shown.published[topic] = digest

    def unless_taken(answer: asyncio.Future[bool]) -> None:
        if not _ok(answer) and shown.published.get(topic) == digest:
            del shown.published[topic]

    if sent.done():
        unless_taken(sent)
    else:
        sent.add_done_callback(unless_taken)


def _settle_when_taken(
    shown: _Shown,
    settled: tuple[VehicleState, tuple[object, ...]],
    futures: list[asyncio.Future[bool]],
) -> None:
    """Note `settled` as what the broker holds of the car once it took every message."""
    generation = shown.generation
    waiting = {f for f in futures if not f.done()}
    if any(not _ok(f) for f in futures if f.done()):
        return

    def one_done(sent: asyncio.Future[bool]) -> None:
        waiting.discard(sent)
        if not _ok(sent):
            waiting.add(sent)  # never settles now
        elif not waiting and shown.generation == generation:
            shown.settled = settled

    if not waiting:
        shown.settled = settled
        return
    for future in list(waiting):
        future.add_done_callback(one_done)


def _ok(sent: asyncio.Future[bool]) -> bool:
    return not sent.cancelled() and sent.result()


def _taken() -> asyncio.Future[bool]:
    done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    done.set_result(True)
    return done


def push_summary(accounts: list[KnownAccount]) -> dict[str, str | None]:
    """Return the bridge's push state: active when every pushing account gets deliveries."""
    pushing = [a for a in accounts if a.push is not PushMode.OFF]
    if not pushing:
        state = "off"
    elif all(a.push is PushMode.ACTIVE for a in pushing):
        state = "active"
    else:
        state = "degraded"  # starting counts: polled at the usual pace meanwhile
    last = max((a.last_push_at for a in pushing if a.last_push_at is not None), default=None)
    when = datetime.fromtimestamp(last, UTC).isoformat() if last is not None else None
    return {"push": state, "push_last_delivery": when}
