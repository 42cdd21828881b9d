"""The history recorder: a sink that keeps sessions, trips and samples in a database.

The MQTT path never waits for it. Events go into a bounded queue without a wait; a worker
turns them into rows (`tracker.py`) and writes them in batches. When the queue is full the
event is dropped, counted and logged once a minute, and the count is on the bridge device. A
database that fails keeps its rows in memory (bounded too) and is tried again.

It publishes what Home Assistant shows of history: per car, the energy charged in all (never
decreasing: it is kept in the database) and the last session and trip; for the bridge, what
it dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from car2mqtt.bridge.events import CommandProgress, Event, VehicleChanged
from car2mqtt.bridge.outbox import Outbox
from car2mqtt.bridge.privacy import EXACT, Privacy
from car2mqtt.clock import Clock
from car2mqtt.errors import AuthError, ProviderError, StoreError
from car2mqtt.history.model import (
    CloudSession,
    HasChargingHistory,
    HasTrips,
    Place,
    ZoneArea,
)
from car2mqtt.history.records import HistoryBackend, Session, Totals, Trip, Write
from car2mqtt.history.tracker import CarTracker
from car2mqtt.models import CommandStatus, LocationMode, VehicleRef, VehicleState
from car2mqtt.mqtt.topics import Topics

_LOGGER = logging.getLogger(__name__)

BATCH = 500  # events turned into rows per transaction at most
UNWRITTEN_KEPT = 50_000  # rows held while the database fails; past this the oldest go
RETRY_S = 5.0
STOP_FLUSH_S = 5.0  # what a stop gives the database to take the rows still held
PRUNE_EVERY_S = 3600.0
SAY_EVERY_S = 60.0
# Commands that start charging: a session they started in says so.
_STARTERS = frozenset({"start_charging", "charge_now"})


@dataclass(frozen=True, slots=True)
class Retention:
    """How long history keeps each kind of row (None: forever)."""

    samples_s: float | None = 400 * 86400.0
    sessions_s: float | None = None
    trips_s: float | None = None


@dataclass(frozen=True, slots=True)
class _State:
    vehicle_key: str
    ref: VehicleRef
    state: VehicleState


@dataclass(frozen=True, slots=True)
class _Started:
    vehicle_key: str


class HistoryRecorder:
    """Records what the hub sees into a history backend, off the MQTT path."""

    def __init__(
        self,
        backend: HistoryBackend,
        *,
        clock: Clock,
        topics: Topics,
        outbox: Outbox,
        providers: Mapping[str, object],
        queue_size: int = 10_000,
        retention: Retention | None = None,
        cloud_delay_s: float = 600.0,
        zones: tuple[ZoneArea, ...] = (),
        privacy: Mapping[str, Privacy] | None = None,
    ) -> None:
        self._backend = backend
        self._clock = clock
        self._topics = topics
        self._outbox = outbox
        self._providers = providers
        self._retention = retention or Retention()
        # The clouds' own figures settle a while after a session ends.
        self._cloud_delay_s = cloud_delay_s
        self._zones = zones
        # Per account: what is left of a point a cloud reports outside the states (its trips).
        self._privacy = dict(privacy or {})
        self._modes: dict[str, LocationMode] = {}  # each car's mode, as its last state says
        self._queue: asyncio.Queue[_State | _Started] = asyncio.Queue(queue_size)
        self._trackers: dict[str, CarTracker] = {}
        self._refs: dict[str, VehicleRef] = {}
        self._last_session: dict[str, Session] = {}
        self._last_trip: dict[str, Trip] = {}
        self._shown: dict[str, str] = {}  # topic -> the JSON the broker was last sent
        self._unwritten: deque[Write] = deque()
        self._write_lock = asyncio.Lock()
        self._persisted: dict[str, float] = {}  # each car's total as the database has it
        self._tasks: set[asyncio.Task[None]] = set()
        # Per account: the sessions whose cloud figure is to be asked for, in one call.
        self._cloud_waiting: dict[str, list[tuple[VehicleRef, Session]]] = {}
        self.dropped = 0  # events the queue had no room for, since start
        self.lost = 0  # rows given up while the database failed
        self._said: dict[str, float] = {}
        self.ready = asyncio.Event()  # what an earlier run left open is restored

    # ---- the sink side (never waits) -------------------------------------------------------

    async def on_event(self, event: Event) -> None:
        """Queue what history needs of `event`; drop and count it when the queue is full."""
        match event:
            case VehicleChanged(vehicle=vehicle) if not vehicle.placeholder:
                item: _State | _Started = _State(vehicle.key, vehicle.ref, vehicle.state)
            case CommandProgress(vehicle=vehicle, result=result) if (
                result.command in _STARTERS and result.status is CommandStatus.CONFIRMED
            ):
                item = _Started(vehicle.key)
            case _:
                return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            self._say("full", "history: the queue is full; dropped %d events so far", self.dropped)

    @property
    def queued(self) -> int:
        """Events waiting to be recorded."""
        return self._queue.qsize()

    # ---- the worker ------------------------------------------------------------------------

    async def run(self) -> None:
        """Open the database, restore what an earlier run left open, record until cancelled."""
        while True:
            try:
                await self._backend.open()
            except StoreError as exc:
                # Events queue (and, past the bound, are counted) while the database is away.
                self._say("open", "history: %s; trying again", exc)
                await asyncio.sleep(RETRY_S)
            else:
                break
        try:
            await self._record_forever()
        finally:
            await self._stop()

    async def _stop(self) -> None:
        """Let the cloud tasks go, write what is still held (briefly), and close."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # A stop never hangs on the database: what it cannot take in time stays unrecorded.
        with contextlib.suppress(TimeoutError, StoreError):
            async with asyncio.timeout(STOP_FLUSH_S):
                await self.flush()
        await self._backend.close()

    async def _record_forever(self) -> None:
        await self._restore()
        self.ready.set()
        await self._publish_bridge()
        pruner = asyncio.create_task(self._prune_forever(), name="history-prune")
        try:
            while True:
                items = [await self._queue.get()]
                while len(items) < BATCH and not self._queue.empty():
                    items.append(self._queue.get_nowait())
                try:
                    await self._record(items)
                except Exception:
                    # A bug in history must never stop the bridge (it shares the TaskGroup).
                    _LOGGER.exception(
                        "history: unexpected error; %d changes not recorded", len(items)
                    )
        finally:
            pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruner

    async def flush(self) -> None:
        """Record everything queued now, and write what a failing database left held."""
        items = []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        if items or self._unwritten:
            await self._record(items)

    async def on_connect(self) -> None:
        """Publish every retained history topic again (the broker may have lost them)."""
        self._shown.clear()
        for key in list(self._refs):
            await self._publish_car(key)
        await self._publish_bridge()

    async def _restore(self) -> None:
        while True:
            try:
                totals = await self._backend.totals()
                sessions = await self._backend.open_sessions()
                trips = await self._backend.open_trips()
                closed = await self._backend.last_sessions()
                done_trips = await self._backend.last_trips()
            except StoreError as exc:
                self._say("restore", "history: cannot read the database (%s); trying again", exc)
                await asyncio.sleep(RETRY_S)
                continue
            break
        for total in totals:
            self._tracker(total.key).total_kwh = total.energy_kwh
            self._persisted[total.key] = total.energy_kwh
        self._last_session.update((s.key, s) for s in closed)
        self._last_trip.update((t.key, t) for t in done_trips)
        for session in sessions:
            # Resumed, not split: the car's next state goes on with this session.
            tracker = self._tracker(session.key)
            tracker.session = session
            tracker.session_base_kwh = tracker.total_kwh - session.energy_kwh
        for trip in trips:
            if trip.source == "derived":  # a cloud's own trip is the cloud's to end
                self._tracker(trip.key).trip = trip

    def _tracker(self, key: str) -> CarTracker:
        tracker = self._trackers.get(key)
        if tracker is None:
            tracker = self._trackers[key] = CarTracker(key, self._zones)
        return tracker

    async def _record(self, items: list[_State | _Started]) -> None:
        rows: list[Write] = []
        touched: set[str] = set()
        now = self._clock.time()
        for item in items:
            tracker = self._tracker(item.vehicle_key)
            if isinstance(item, _Started):
                tracker.command_started = True
                continue
            self._refs[item.vehicle_key] = item.ref
            self._modes[item.vehicle_key] = item.state.location_mode
            touched.add(item.vehicle_key)
            for row in tracker.observe(item.state, now):
                rows += self._route(item.ref, row)
        await self._write(rows)
        for key in touched:
            await self._publish_car(key)
        await self._publish_bridge()

    def _route(self, ref: VehicleRef, row: Write) -> list[Write]:
        """Keep `row`, or hand it to the cloud that knows better (its own trips, its meter)."""
        provider = self._providers.get(ref.account)
        if isinstance(row, Trip):
            if isinstance(provider, HasTrips):
                if row.ended_at is not None:  # the car arrived: ask the cloud for its trips
                    self._spawn(self._cloud_trips(provider, ref, row))
                return []
            if row.ended_at is not None:
                self._last_trip[row.key] = row
        if isinstance(row, Session) and row.ended_at is not None:
            self._last_session[row.key] = row
            if isinstance(provider, HasChargingHistory):
                self._ask_cloud(provider, ref, row)
        return [row]

    async def _write(self, rows: list[Write]) -> None:
        # One write at a time: the worker and the cloud tasks share the held rows.
        async with self._write_lock:
            self._unwritten.extend(rows)
            if not self._unwritten:
                return
            while len(self._unwritten) > UNWRITTEN_KEPT:
                self._unwritten.popleft()
                self.lost += 1
                self._say("lost", "history: the database is away too long; %d rows lost", self.lost)
            batch = list(self._unwritten)
            try:
                await self._backend.write(batch)
            except StoreError as exc:
                self._say("write", "history: cannot write (%s); %d rows wait", exc, len(batch))
                return
            self._unwritten.clear()
            for row in batch:
                if isinstance(row, Totals):
                    # Home Assistant is shown only what is stored: a total it saw never drops
                    # after a restart reads the database again.
                    self._persisted[row.key] = max(
                        self._persisted.get(row.key, 0.0), row.energy_kwh
                    )

    # ---- what the clouds know better -------------------------------------------------------

    def _spawn(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            _LOGGER.error("history: a cloud figure was not taken", exc_info=error)

    def _ask_cloud(self, provider: HasChargingHistory, ref: VehicleRef, session: Session) -> None:
        """Have the cloud's figure for `session` asked for, with the account's others."""
        waiting = self._cloud_waiting.setdefault(ref.account, [])
        waiting.append((ref, session))
        if len(waiting) == 1:
            # One call per account per delay, however many of its cars ended a session: a
            # fleet's 1,000 cars cost one statistics call, not 1,000.
            self._spawn(self._cloud_energy(provider, ref.account))

    async def _cloud_energy(self, provider: HasChargingHistory, account: str) -> None:
        await asyncio.sleep(self._cloud_delay_s)
        waiting = self._cloud_waiting.pop(account, [])
        if not waiting:
            return
        starts = [s.started_at for _, s in waiting]
        ends = [s.ended_at or self._clock.time() for _, s in waiting]
        since = datetime.fromtimestamp(min(starts), UTC) - timedelta(hours=1)
        until = datetime.fromtimestamp(max(ends), UTC) + timedelta(hours=1)
        try:
            found = await provider.charging_sessions(since, until)
        except (ProviderError, AuthError) as exc:
            _LOGGER.info("history: the cloud's charging figures are not there (%s)", exc)
            return
        for ref, session in waiting:
            energy = _cloud_figure(found, ref, session, until.timestamp())
            if energy is None:
                continue
            latest = self._last_session.get(ref.key)
            updated, rows = self._tracker(ref.key).adopt_cloud_energy(session, energy)
            if latest is not None and latest.id == session.id:
                self._last_session[ref.key] = updated
            await self._write(rows)
            await self._publish_car(ref.key)

    async def _cloud_trips(self, provider: HasTrips, ref: VehicleRef, derived: Trip) -> None:
        # Around the trip the states showed: their ends are known to within a refresh.
        since = datetime.fromtimestamp(derived.started_at, UTC) - timedelta(hours=1)
        until = datetime.fromtimestamp(derived.ended_at or derived.started_at, UTC) + timedelta(
            hours=1
        )
        try:
            found = await provider.trips(ref, since, until)
        except (ProviderError, AuthError) as exc:
            _LOGGER.info("history: the cloud's trips are not there (%s); keeping ours", exc)
            self._last_trip[derived.key] = derived
            await self._write([derived])
            return
        rows: list[Write] = []
        privacy = self._privacy.get(ref.account, EXACT)
        mode = self._modes.get(ref.key, LocationMode.EXACT)
        for cloud in found:
            # The cloud's trips carry exact points: reduced as the car's states were.
            start = privacy.place(mode, *_at(cloud.start))
            end = privacy.place(mode, *_at(cloud.end))
            trip = Trip(
                id=f"cloud:{ref.key}:{cloud.trip_id}",
                key=ref.key,
                started_at=cloud.started_at.timestamp(),
                ended_at=cloud.ended_at.timestamp() if cloud.ended_at else None,
                distance_km=cloud.distance_km,
                start_odometer_km=cloud.start_odometer_km,
                end_odometer_km=cloud.end_odometer_km,
                start_latitude=start.latitude if start else None,
                start_longitude=start.longitude if start else None,
                end_latitude=end.latitude if end else None,
                end_longitude=end.longitude if end else None,
                source="cloud",
                start_zone=start.zone if start else None,
                end_zone=end.zone if end else None,
            )
            rows.append(trip)
            if trip.ended_at is not None:
                last = self._last_trip.get(ref.key)
                if last is None or (last.ended_at or 0) <= trip.ended_at:
                    self._last_trip[ref.key] = trip
        await self._write(rows)
        await self._publish_car(ref.key)

    # ---- pruning ---------------------------------------------------------------------------

    async def _prune_forever(self) -> None:
        while True:
            now, keep = self._clock.time(), self._retention
            try:
                gone = await self._backend.prune(
                    samples_before=None if keep.samples_s is None else now - keep.samples_s,
                    sessions_before=None if keep.sessions_s is None else now - keep.sessions_s,
                    trips_before=None if keep.trips_s is None else now - keep.trips_s,
                )
            except StoreError as exc:
                self._say("prune", "history: cannot prune (%s)", exc)
            else:
                if gone:
                    _LOGGER.info("history: pruned %d old rows", gone)
            await asyncio.sleep(PRUNE_EVERY_S)

    # ---- what Home Assistant shows ---------------------------------------------------------

    def car_values(self, key: str) -> dict[str, float | None]:
        """Return the history values Home Assistant shows for car `key`."""
        total = self._persisted.get(key)
        session, trip = self._last_session.get(key), self._last_trip.get(key)
        duration = None
        if session is not None and session.ended_at is not None:
            duration = round((session.ended_at - session.started_at) / 60)
        return {
            "energy_charged": round(total, 3) if total is not None else None,
            "last_session_energy": round(session.energy_kwh, 3) if session else None,
            "last_session_duration": duration,
            "last_trip_distance": (
                round(trip.distance_km, 1) if trip and trip.distance_km is not None else None
            ),
        }

    async def _publish_car(self, key: str) -> None:
        ref = self._refs.get(key)
        if ref is None:
            return
        await self._send(self._topics.history(ref), self.car_values(key))

    async def _publish_bridge(self) -> None:
        body = {"dropped": self.dropped, "lost": self.lost, "queue": self.queued}
        await self._send(self._topics.bridge_history, body)

    async def _send(self, topic: str, body: Mapping[str, object]) -> None:
        text = json.dumps(body, separators=(",", ":"))
        if self._shown.get(topic) == text:
            return
        self._shown[topic] = text
        sent = await self._outbox.send(topic, text, retain=True)

        def unless_taken(done: asyncio.Future[bool]) -> None:
            if done.cancelled() or done.exception() is not None or not done.result():
                self._shown.pop(topic, None)  # sent again next time

        sent.add_done_callback(unless_taken)

    def _say(self, what: str, message: str, *args: object) -> None:
        """Log a warning at most once a minute per kind."""
        now = self._clock.time()
        if now - self._said.get(what, -1e12) >= SAY_EVERY_S:
            self._said[what] = now
            _LOGGER.warning(message, *args)


def _cloud_figure(
    found: list[CloudSession], ref: VehicleRef, session: Session, until: float
) -> float | None:
    """Return the energy of the cloud's sessions of the car within `session` (None: none).

    A cloud may split what car2mqtt sees as one session (a stop and a restart): the parts
    that overlap it are added up.
    """
    ended = session.ended_at or until
    parts = [
        c.energy_kwh
        for c in found
        if c.ref.key == ref.key
        and c.energy_kwh is not None
        and min((c.ended_at.timestamp() if c.ended_at else until), ended)
        > max(c.started_at.timestamp(), session.started_at)
    ]
    return sum(parts) if parts else None


def _at(place: Place | None) -> tuple[float | None, float | None]:
    return (place.latitude, place.longitude) if place else (None, None)
