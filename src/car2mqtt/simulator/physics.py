"""How a virtual car lives: driving, charging and parking, integrated in closed form.

Every quantity is a closed-form function of elapsed time, so advancing a car from t0 to t2 gives
the same state as advancing it to t1 and then to t2. That makes runs reproducible whatever the
order and timing of reads, and lets a car skip hours of parked life for free.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from enum import StrEnum

from car2mqtt.errors import SimulatorError
from car2mqtt.simulator.catalog import CarModel

# A charger negotiates before energy flows; Enode reports this as PLUGGED_IN:INITIALIZING.
INIT_SECONDS = 30.0
# Within this many percent of the limit a charge counts as complete.
COMPLETE_GAP_PCT = 0.5
# Charging sessions a car remembers; older ones are forgotten.
MAX_SESSIONS = 1000
_EARTH_RADIUS_KM = 6371.0


class ChargeMode(StrEnum):
    """Where a car is in its charging life."""

    UNPLUGGED = "UNPLUGGED"
    INITIALIZING = "INITIALIZING"
    CHARGING = "CHARGING"
    STOPPED = "STOPPED"
    COMPLETE = "COMPLETE"


@dataclass(slots=True)
class Route:
    """A closed loop of waypoints a car drives around."""

    points: list[tuple[float, float]]
    cumulative_km: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        total = 0.0
        self.cumulative_km = [0.0]
        for (lat1, lon1), (lat2, lon2) in zip(self.points, self.points[1:], strict=False):
            total += haversine_km(lat1, lon1, lat2, lon2)
            self.cumulative_km.append(total)

    @property
    def length_km(self) -> float:
        """Length of one lap."""
        return self.cumulative_km[-1]

    def position(self, distance_km: float) -> tuple[float, float]:
        """Return latitude and longitude after driving `distance_km` from the start."""
        if self.length_km <= 0:
            return self.points[0]
        d = distance_km % self.length_km
        for i in range(1, len(self.cumulative_km)):
            if d <= self.cumulative_km[i]:
                seg = self.cumulative_km[i] - self.cumulative_km[i - 1]
                f = 0.0 if seg <= 0 else (d - self.cumulative_km[i - 1]) / seg
                (lat1, lon1), (lat2, lon2) = self.points[i - 1], self.points[i]
                return lat1 + (lat2 - lat1) * f, lon1 + (lon2 - lon1) * f
        return self.points[-1]


@dataclass(slots=True)
class Drive:
    """A trip in progress."""

    started_at: float
    speed_kmh: float
    route: Route
    limit_km: float | None
    start_odometer_km: float
    start_soc: float


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Return the great-circle distance between two points."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * math.asin(math.sqrt(a))


def loop_route(lat: float, lon: float, bearings: list[float], radii_km: list[float]) -> Route:
    """Build a round trip from (lat, lon) through waypoints at the given bearings and radii."""
    points = [(lat, lon)]
    for bearing, radius in zip(bearings, radii_km, strict=True):
        dlat = radius / 111.32 * math.cos(math.radians(bearing))
        dlon = radius / (111.32 * math.cos(math.radians(lat))) * math.sin(math.radians(bearing))
        points.append((lat + dlat, lon + dlon))
    points.append((lat, lon))
    return Route(points)


class SessionEnd(StrEnum):
    """Why energy stopped flowing into the battery."""

    STOPPED = "STOPPED"
    FULL = "FULL"
    UNPLUGGED = "UNPLUGGED"
    LEVEL_SET = "LEVEL_SET"  # the battery level was set by hand (a test's battery swap)


@dataclass(frozen=True, slots=True)
class ChargePiece:
    """A stretch of a session on one charge curve, from `soc_start` at `start`."""

    start: float
    end: float
    soc_start: float
    soc_end: float
    rates: ChargeRates

    def soc_at(self, t: float) -> float:
        """State of charge at `t`, held at the ends outside the stretch."""
        if t <= self.start:
            return self.soc_start
        if t >= self.end:
            return self.soc_end
        return min(self.soc_end, charged_soc(self.soc_start, (t - self.start) / 3600, self.rates))

    def power_kw(self, t: float) -> float:
        """Charge power at `t` within the stretch (before the last half point snaps to full)."""
        soc = min(self.soc_at(t), self.rates.limit - COMPLETE_GAP_PCT)
        return self.rates.power_kw(soc)


@dataclass(frozen=True, slots=True)
class ChargeSession:
    """Energy flowing into the battery unbroken: from the first kW to stop, full or unplug."""

    started_at: float
    ended_at: float | None  # None while energy still flows
    soc_from: float
    soc_to: float
    capacity_kwh: float
    pieces: tuple[ChargePiece, ...]
    # Started by a planner (smart charging) rather than at once.
    planned: bool = False
    end: SessionEnd | None = None

    @property
    def energy_kwh(self) -> float:
        """Energy delivered into the battery: the rise in state of charge times the capacity."""
        return sum(p.soc_end - p.soc_start for p in self.pieces) / 100 * self.capacity_kwh

    def energy_between(self, a: float, b: float) -> float:
        """Energy delivered between times `a` and `b`, in kWh."""
        rise = 0.0
        for p in self.pieces:
            if p.end > p.start:
                if p.start < b and p.end > a:
                    rise += p.soc_at(b) - p.soc_at(a)
            elif a <= p.start < b:  # filled up in no time: counts where it happened
                rise += p.soc_end - p.soc_start
        return max(0.0, rise) / 100 * self.capacity_kwh


@dataclass(slots=True)
class _OpenSession:
    started_at: float
    soc_from: float
    planned: bool
    pieces: list[ChargePiece] = field(default_factory=list)

    def view(self, capacity_kwh: float, soc: float) -> ChargeSession:
        pieces = tuple(self.pieces)
        return ChargeSession(
            self.started_at, None, self.soc_from, soc, capacity_kwh, pieces, self.planned
        )


@dataclass(slots=True)
class SimCar:
    """The physical truth about one car; clouds only ever see snapshots of it."""

    model: CarModel
    t: float
    soc: float
    odometer_km: float
    lat: float
    lon: float
    home: tuple[float, float]
    charge_limit: float = 80.0
    plugged: bool = False
    wants_charge: bool = False
    charge_started_at: float | None = None
    drive: Drive | None = None
    reachable: bool = True
    # The charging current limit set on the car (Enode's max-current); None: the model's own.
    max_current_a: float | None = None
    # Energy delivered into the battery over the car's life, in kWh.
    charged_kwh: float = 0.0
    sessions: deque[ChargeSession] = field(default_factory=lambda: deque(maxlen=MAX_SESSIONS))
    _session: _OpenSession | None = field(default=None, init=False, repr=False)
    # Whether the charge in progress was started by a planner.
    _planned: bool = field(default=False, init=False, repr=False)

    # ---- integration -------------------------------------------------------------------

    def advance(self, t: float) -> None:
        """Bring the car's state forward to time `t` (never backwards)."""
        if t <= self.t:
            return
        if self.drive is not None:
            self._advance_drive(t)
        elif self.plugged and self.wants_charge:
            self._advance_charge(t)
        self.t = t

    def _advance_drive(self, t: float) -> None:
        drive = self.drive
        assert drive is not None
        kmh = drive.speed_kmh
        # Distance is limited by the trip length and by the energy left in the battery.
        km_per_pct = self._km_per_pct()
        max_km = self._trip_max_km(drive)
        km = min((t - drive.started_at) / 3600 * kmh, max_km)
        self.odometer_km = drive.start_odometer_km + km
        self.soc = max(0.0, drive.start_soc - km / km_per_pct)
        self.lat, self.lon = drive.route.position(km)
        if km >= max_km:
            self.drive = None

    def _km_per_pct(self) -> float:
        return self.model.store / 100 / self.model.store_per_km

    def _trip_max_km(self, drive: Drive) -> float:
        # A trip ends at its set length or when the energy runs out, whichever comes first.
        max_km = drive.start_soc * self._km_per_pct()
        return max_km if drive.limit_km is None else min(max_km, drive.limit_km)

    def drive_ends_at(self) -> float | None:
        """When the trip in progress reaches its end or runs dry; None when parked."""
        drive = self.drive
        if drive is None:
            return None
        return drive.started_at + self._trip_max_km(drive) / drive.speed_kmh * 3600

    def _advance_charge(self, t: float) -> None:
        assert self.charge_started_at is not None
        start = max(self.t, self.charge_started_at + INIT_SECONDS)
        if t <= start:
            return
        if self.soc >= self.charge_limit:
            self._close_session(self.t, SessionEnd.FULL)  # the limit came down to meet it
            return
        rates = self._rates()
        before = self.soc
        self.soc = charged_soc(before, (t - start) / 3600, rates)
        full = self.soc >= self.charge_limit - 1e-9
        end = min(t, start + rates.hours_to_complete(before) * 3600) if full else t
        self._record(start, end, before, rates)
        if full:
            self._close_session(end, SessionEnd.FULL)

    def _record(self, start: float, end: float, before: float, rates: ChargeRates) -> None:
        self.charged_kwh += (self.soc - before) / 100 * self.model.capacity_kwh
        session = self._session
        if session is None:
            session = self._session = _OpenSession(start, before, self._planned)
        pieces = session.pieces
        last = pieces[-1] if pieces else None
        if last and (last.end, last.soc_end, last.rates) == (start, before, rates):
            # The same curve carried on: one stretch, however often the car was advanced.
            pieces[-1] = replace(last, end=end, soc_end=self.soc)
        else:
            pieces.append(ChargePiece(start, end, before, self.soc, rates))

    def _close_session(self, at: float, why: SessionEnd) -> None:
        session = self._session
        if session is None:
            return
        self._session = None
        view = session.view(self.model.capacity_kwh, self.soc)
        self.sessions.append(replace(view, ended_at=at, end=why))

    def charge_sessions(self) -> list[ChargeSession]:
        """Return the remembered charging sessions, oldest first, the running one (to now) last."""
        out = list(self.sessions)
        if self._session is not None:
            out.append(self._session.view(self.model.capacity_kwh, self.soc))
        return out

    def _rates(self) -> ChargeRates:
        return ChargeRates.for_car(self.ac_power_kw(), self.model.capacity_kwh, self.charge_limit)

    @property
    def current_limit_a(self) -> float:
        """The most current the car draws from a charger, in amperes."""
        return self.model.max_current_a if self.max_current_a is None else self.max_current_a

    def ac_power_kw(self) -> float:
        """Return the AC power before the taper: the model's, scaled down by the current limit."""
        model = self.model
        if model.max_current_a <= 0:
            return model.max_ac_kw
        return min(model.max_ac_kw, model.max_ac_kw * self.current_limit_a / model.max_current_a)

    # ---- derived readings --------------------------------------------------------------

    @property
    def driving(self) -> bool:
        """Whether a trip is in progress."""
        return self.drive is not None

    @property
    def speed_kmh(self) -> float:
        """Current speed."""
        return self.drive.speed_kmh if self.drive is not None else 0.0

    @property
    def range_km(self) -> float:
        """Estimated range from the energy left."""
        return self.soc / 100 * self.model.store / self.model.store_per_km

    def charge_mode(self) -> ChargeMode:
        """Return where the car is in its charging life, at its current time."""
        if not self.plugged:
            return ChargeMode.UNPLUGGED
        if not self.wants_charge:
            return ChargeMode.STOPPED
        if self.soc >= self.charge_limit - 1e-9:
            return ChargeMode.COMPLETE
        assert self.charge_started_at is not None
        if self.t < self.charge_started_at + INIT_SECONDS:
            return ChargeMode.INITIALIZING
        return ChargeMode.CHARGING

    def charge_power_kw(self) -> float:
        """Power flowing into the battery now."""
        if self.charge_mode() is not ChargeMode.CHARGING:
            return 0.0
        return self._rates().power_kw(self.soc)

    def minutes_to_complete(self) -> float:
        """Minutes until the charge completes, at the current taper."""
        if self.charge_mode() not in (ChargeMode.CHARGING, ChargeMode.INITIALIZING):
            return 0.0
        assert self.charge_started_at is not None
        init_left = max(0.0, self.charge_started_at + INIT_SECONDS - self.t)
        hours = self._rates().hours_to_complete(self.soc)
        return init_left / 60 + hours * 60

    def seconds_to_level(self, level: float) -> float:
        """Seconds of charging, from now or from a fresh start, until the battery is at `level`."""
        if level <= self.soc:
            return 0.0
        started = self.charge_started_at
        init_left = INIT_SECONDS if started is None else max(0.0, started + INIT_SECONDS - self.t)
        return init_left + self._rates().hours_to(self.soc, level) * 3600

    # ---- commands ------------------------------------------------------------------------

    def plug_in(self, *, start_charging: bool) -> None:
        """Connect a charger; most cars start charging at once."""
        if self.model.combustion:
            msg = "the car burns fuel; it has no charging port"
            raise SimulatorError(msg)
        if self.driving:
            msg = "the car is driving; park it before plugging it in"
            raise SimulatorError(msg)
        self.plugged = True
        if start_charging:
            self.start_charging()

    def unplug(self) -> None:
        """Disconnect the charger."""
        self._close_session(self.t, SessionEnd.UNPLUGGED)
        self.plugged = False
        self.wants_charge = False
        self.charge_started_at = None

    def start_charging(self, *, planned: bool = False) -> None:
        """Start drawing power (the car must be plugged in); `planned`: a planner's decision."""
        if not self.plugged:
            msg = "the car is not plugged in"
            raise SimulatorError(msg)
        if not self.wants_charge:
            self.wants_charge = True
            self.charge_started_at = self.t
            self._planned = planned

    def stop_charging(self) -> None:
        """Stop drawing power but stay plugged in."""
        self._close_session(self.t, SessionEnd.STOPPED)
        self.wants_charge = False
        self.charge_started_at = None

    def start_drive(self, route: Route, speed_kmh: float, limit_km: float | None) -> None:
        """Set off along `route`."""
        if self.plugged:
            msg = "the car is plugged in; unplug it before driving"
            raise SimulatorError(msg)
        if self.soc <= 0:
            msg = "the battery is empty"
            raise SimulatorError(msg)
        if speed_kmh <= 0:
            msg = f"speed must be positive, got {speed_kmh}"
            raise SimulatorError(msg)
        self.drive = Drive(self.t, speed_kmh, route, limit_km, self.odometer_km, self.soc)

    def park(self) -> None:
        """End the trip where the car is."""
        self.drive = None

    def set_max_current(self, amperes: float) -> None:
        """Limit the charging current (the car must have been advanced to now)."""
        if not 0 < amperes <= self.model.max_current_a:
            msg = f"max current must be above 0 and at most {self.model.max_current_a} A"
            raise SimulatorError(msg)
        self.max_current_a = float(amperes)

    def set_soc(self, soc: float) -> None:
        """Set the state of charge, as after a battery swap in a test."""
        if not 0 <= soc <= 100:
            msg = f"battery level must be between 0 and 100, got {soc}"
            raise SimulatorError(msg)
        # A level set by hand is no energy delivered: the session in progress ends there.
        self._close_session(self.t, SessionEnd.LEVEL_SET)
        self.soc = float(soc)
        if self.drive is not None:
            self.drive.start_soc = self.soc
            self.drive.start_odometer_km = self.odometer_km
            self.drive.started_at = self.t
            self.drive.route = Route(
                [(self.lat, self.lon), *self.drive.route.points[1:-1], (self.lat, self.lon)]
            )


@dataclass(frozen=True, slots=True)
class ChargeRates:
    """The charge curve: constant power up to `taper_start`, then tapering to the limit."""

    max_kw: float
    limit: float
    linear_pct_per_h: float
    taper_start: float
    taper_k_per_h: float

    @classmethod
    def for_car(cls, max_kw: float, capacity_kwh: float, limit: float) -> ChargeRates:
        """Derive the curve for a car charging at `max_kw` up to `limit` percent."""
        linear = max_kw / capacity_kwh * 100
        taper_start = min(80.0, limit - 5.0)
        # Chosen so the power is continuous where the taper begins.
        k = linear / max(limit - taper_start, 1e-6)
        return cls(max_kw, limit, linear, taper_start, k)

    def power_kw(self, soc: float) -> float:
        """Power at state of charge `soc`."""
        if soc < self.taper_start:
            return self.max_kw
        return self.max_kw * max(0.0, (self.limit - soc) / (self.limit - self.taper_start))

    def hours_to_complete(self, soc: float) -> float:
        """Hours until the gap to the limit closes to the completion threshold."""
        hours = 0.0
        if soc < self.taper_start:
            hours += (self.taper_start - soc) / self.linear_pct_per_h
            soc = self.taper_start
        gap = self.limit - soc
        if gap > COMPLETE_GAP_PCT:
            hours += math.log(gap / COMPLETE_GAP_PCT) / self.taper_k_per_h
        return hours

    def hours_to(self, soc: float, level: float) -> float:
        """Hours until the state of charge rises from `soc` to `level` (at most, completion)."""
        if level >= self.limit - COMPLETE_GAP_PCT:
            return self.hours_to_complete(soc)
        if level <= soc:
            return 0.0
        hours = 0.0
        if soc < self.taper_start:
            reach = min(level, self.taper_start)
            hours += (reach - soc) / self.linear_pct_per_h
            soc = reach
        if level > soc:
            hours += math.log((self.limit - soc) / (self.limit - level)) / self.taper_k_per_h
        return hours


def charged_soc(soc: float, hours: float, rates: ChargeRates) -> float:
    """Return the state of charge after charging for `hours` from `soc` towards the limit."""
    limit = rates.limit
    if soc >= limit:
        return soc
    if soc < rates.taper_start:
        linear_h = (rates.taper_start - soc) / rates.linear_pct_per_h
        if hours <= linear_h:
            return soc + rates.linear_pct_per_h * hours
        hours -= linear_h
        soc = rates.taper_start
    gap = limit - soc
    if gap <= COMPLETE_GAP_PCT:
        return limit
    remaining = gap * math.exp(-rates.taper_k_per_h * hours)
    return limit if remaining <= COMPLETE_GAP_PCT else limit - remaining
