"""The simulated world: one clock, one event scheduler and seeded randomness shared by all clouds.

Nothing here knows about Enode or Xee. Clouds keep their own state and schedule their timed work
(cache refreshes, action execution, webhook heartbeats) on the world's scheduler, which runs
every due event, in time order, whenever `sync()` is called: by the ticker, before each request
and after the clock is advanced.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from car2mqtt.clock import SimClock
from car2mqtt.simulator.catalog import CITIES, CarModel
from car2mqtt.simulator.physics import Route, SimCar, loop_route

EventFn = Callable[[float], None]


@dataclass(order=True, slots=True)
class _Event:
    at: float
    seq: int
    fn: EventFn = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class Handle:
    """A scheduled event that can be cancelled."""

    __slots__ = ("_event",)

    def __init__(self, event: _Event) -> None:
        self._event = event

    @property
    def at(self) -> float:
        """When the event is due."""
        return self._event.at

    def cancel(self) -> None:
        """Make sure the event never runs."""
        self._event.cancelled = True


class World:
    """Clock, scheduler and randomness for a simulation run."""

    def __init__(self, clock: SimClock, seed: int = 0) -> None:
        self.clock = clock
        self.seed = seed
        # Separate streams, so that (say) a fault drawn per request never shifts the ids or
        # physics of cars created later: same seed, same cars, whatever the traffic.
        self.ids = random.Random(f"{seed}:ids")
        self.physics = random.Random(f"{seed}:physics")
        self.faults = random.Random(f"{seed}:faults")
        self._heap: list[_Event] = []
        self._seq = 0
        self._now = clock.time()
        self._syncing = False

    def now(self) -> float:
        """Return the simulation time; inside an event, the event's own time."""
        return self._now

    def schedule(self, at: float, fn: EventFn) -> Handle:
        """Run `fn(at)` once simulated time reaches `at`."""
        self._seq += 1
        event = _Event(at, self._seq, fn)
        heapq.heappush(self._heap, event)
        return Handle(event)

    def sync(self) -> float:
        """Run every event that is due, in order, and return the current time."""
        if self._syncing:  # an event handler reading the world must not recurse
            return self._now
        self._syncing = True
        try:
            target = self.clock.time()
            heap = self._heap
            while heap and heap[0].at <= target:
                event = heapq.heappop(heap)
                if event.cancelled:
                    continue
                self._now = max(self._now, event.at)
                event.fn(self._now)
            self._now = max(self._now, target)
        finally:
            self._syncing = False
        return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock ahead by `seconds`, running everything that falls due on the way."""
        self.clock.advance(seconds)
        return self.sync()

    def next_event_at(self) -> float | None:
        """Return when the next live event is due, if any."""
        while self._heap and self._heap[0].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0].at if self._heap else None

    @property
    def pending_events(self) -> int:
        """How many events sit in the scheduler (cancelled ones included)."""
        return len(self._heap)

    # ---- seeded factories ------------------------------------------------------------------

    def new_uuid(self, rng: random.Random | None = None) -> str:
        """Return a random UUID4 string from the seeded id stream (or `rng`)."""
        return str(uuid.UUID(int=(rng or self.ids).getrandbits(128), version=4))

    def new_token(self, nbytes: int = 24, rng: random.Random | None = None) -> str:
        """Return an opaque URL-safe token from the seeded id stream (or `rng`)."""
        return (rng or self.ids).randbytes(nbytes).hex()

    def new_vin(self, vendor: str) -> str:
        """Return a plausible 17-character VIN."""
        alphabet = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"  # VINs never use I, O or Q
        return vendor[:3].upper().ljust(3, "X") + "".join(
            self.ids.choice(alphabet) for _ in range(14)
        )

    def new_car(
        self, model: CarModel, *, home_city: int | None = None, rng: random.Random | None = None
    ) -> SimCar:
        """Create a parked car with a plausible history and home (drawn from `rng` if given)."""
        rng = rng or self.physics
        _, lat, lon = CITIES[home_city if home_city is not None else rng.randrange(len(CITIES))]
        lat += rng.uniform(-0.05, 0.05)
        lon += rng.uniform(-0.05, 0.05)
        car = SimCar(
            model=model,
            t=self.now(),
            soc=round(rng.uniform(25, 90), 1),
            odometer_km=round(rng.uniform(2_000, 60_000), 1),
            lat=lat,
            lon=lon,
            home=(lat, lon),
            charge_limit=float(rng.choice((80, 80, 90, 100))),
        )
        return car

    def new_route(self, car: SimCar, rng: random.Random | None = None) -> Route:
        """Return a round trip of a few kilometres starting where `car` stands."""
        rng = rng or self.physics
        start = rng.uniform(0, 360)
        bearings = [start + i * rng.uniform(70, 130) for i in range(3)]
        radii = [rng.uniform(2, 8) for _ in bearings]
        return loop_route(car.lat, car.lon, bearings, radii)
