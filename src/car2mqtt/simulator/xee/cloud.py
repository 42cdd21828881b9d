"""The Xee cloud's state and rules, with no HTTP in sight.

A Xee dongle sits in the car's OBD port and reports over cellular while the car is active
(ignition on, or an EV charging): every `REPORT_S` seconds a location and the signals due, and at
once whenever something changes. Parked with the ignition off it stays quiet, so signal dates
stop at the last change. Unlike Enode there is no cloud-side cache: the API shows what the dongle
last said, which while active is the truth at request time.

Reports are worked out lazily, in closed form, when someone looks: the car's physics gives the
same state whether it is advanced in one step or many, so catching up tick by tick is exact.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from car2mqtt.clock import isoformat
from car2mqtt.simulator.catalog import KTYPES, XEE_COMBUSTION, XEE_ELECTRIC
from car2mqtt.simulator.faults import Faults
from car2mqtt.simulator.physics import ChargeMode, Drive, SimCar, haversine_km
from car2mqtt.simulator.world import World
from car2mqtt.simulator.xee.auth import XeeAuth, XeeError, XeeUser

if TYPE_CHECKING:
    from car2mqtt.simulator.app import SimOptions

Kind = Literal["combustion", "electric"]

REPORT_S = 30.0
# Parked, the 12 V battery loses 0.1 V every two days, down to 12.0 V.
SAG_STEP_S = 48 * 3600.0
SAG_STEPS = 6
MAX_WINDOW_S = 31 * 86_400.0
# Catching up after a long jump of the clock replays at most this many reports.
MAX_CATCH_UP = 20_000
LOCATIONS_KEPT = 2_880
SIGNALS_KEPT = 20_000
TRIPS_KEPT = 500
# A trip keeps its own reports, so its detail outlives the car's rolling history: up to this
# many (3 h at full rate); a longer trip keeps every other one, then every fourth, and so on.
TRIP_REPORTS_KEPT = 360

DOORS = ("FrontLeftDoorSts", "FrontRightDoorSts", "RearLeftDoorSts", "RearRightDoorSts")
OPENINGS = (*DOORS, "TrunkSts", "HoodSts")
COMMON_SIGNALS = (
    "VehiculeSpeed",
    "Odometer",
    "BatteryVoltage",
    "LockSts",
    "IgnitionSts",
    *OPENINGS,
)
COMBUSTION_SIGNALS = (*COMMON_SIGNALS, "EngineSpeed", "FuelLevel", "ComputedFuelLevel")
ELECTRIC_SIGNALS = (
    *COMMON_SIGNALS,
    "EVBatterySOC",
    "EVRemainingRange",
    "EVChargerSts",
    "EVChargingSts",
)
# How often, in reports, an unchanged signal is sent again while active (absent: only on change).
PERIODS = {
    "VehiculeSpeed": 1,
    "EngineSpeed": 1,
    "Odometer": 2,
    "EVBatterySOC": 2,
    "FuelLevel": 4,
    "EVRemainingRange": 4,
    "BatteryVoltage": 6,
    "ComputedFuelLevel": 8,
    "IgnitionSts": 10,
    "EVChargingSts": 10,
    "EVChargerSts": 10,
    "LockSts": 20,
}


@dataclass(slots=True)
class Reading:
    """A signal's last reported value and when it was reported."""

    value: float
    date: float


@dataclass(slots=True)
class Fix:
    """A GPS fix."""

    lat: float
    lon: float
    heading: int
    date: float

    def as_json(self, altitude: float, nb_sat: int) -> dict[str, Any]:
        """Return the v4 location object."""
        return {
            "latitude": round(self.lat, 6),
            "longitude": round(self.lon, 6),
            "altitude": altitude,
            "heading": self.heading,
            "nbSat": nb_sat,
            "hacc": 4,
            "date": isoformat(self.date),
        }

    def as_trip_json(self, altitude: float) -> dict[str, Any]:
        """Return a trip's start or end: the Android SDK's `Location`, without satellites."""
        return {
            "latitude": round(self.lat, 6),
            "longitude": round(self.lon, 6),
            "altitude": altitude,
            "heading": self.heading,
            "date": isoformat(self.date),
        }


@dataclass(frozen=True, slots=True)
class TripReport:
    """One report the dongle sent during a trip: its fix, if it sent one, and its signals."""

    date: float
    fix: Fix | None
    signals: tuple[tuple[str, float], ...]


@dataclass(slots=True)
class Trip:
    """A drive from ignition on to ignition off, with the reports sent along the way."""

    id: str
    started_at: float
    start: Fix
    start_odometer: float
    ended_at: float = 0.0
    end: Fix | None = None
    distance_km: float = 0.0
    reports: list[TripReport] = field(default_factory=list)
    stride: int = 1  # one report in `stride` is kept; doubles each time the trip is thinned
    seen: int = 0

    def record(self, report: TripReport, *, keep: bool = False) -> None:
        """Keep a report, thinning a long trip evenly; `keep` forces it (first and last)."""
        self.seen += 1
        if not keep and (self.seen - 1) % self.stride:
            return
        self.reports.append(report)
        if len(self.reports) > TRIP_REPORTS_KEPT:
            del self.reports[1::2]  # the first report, ignition on, always stays
            self.stride *= 2

    def as_json(self, vehicle: XeeVehicle) -> dict[str, Any]:
        """Return the v4 trip object, in the Android SDK's shape."""
        end = self.end or self.start
        return {
            "id": self.id,
            "vehicleId": vehicle.id,
            "startLocation": self.start.as_trip_json(vehicle.altitude),
            "endLocation": end.as_trip_json(vehicle.altitude),
            "stats": {
                "distance": self.distance_km,
                "duration": round(self.ended_at - self.started_at),
            },
            # The cloud files a trip once it is over.
            "createdAt": isoformat(self.ended_at),
            "updatedAt": isoformat(self.ended_at),
        }


@dataclass(slots=True)
class XeeVehicle:
    """A car with a Xee dongle: its physics, and what the dongle last reported."""

    id: str
    user_id: str
    car: SimCar
    name: str
    plate: str
    device_id: str
    created_at: float
    first_entry: str
    altitude: float
    nb_sat: int
    phase: float  # offset of this dongle's report grid
    parked_at: float
    fix: Fix
    last_report: float
    updated_at: float
    doors: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(OPENINGS, False))
    readings: dict[str, Reading] = field(default_factory=dict)
    history: deque[tuple[str, float, float]] = field(
        default_factory=lambda: deque(maxlen=SIGNALS_KEPT)
    )
    locations: deque[Fix] = field(default_factory=lambda: deque(maxlen=LOCATIONS_KEPT))
    trips: deque[Trip] = field(default_factory=lambda: deque(maxlen=TRIPS_KEPT))
    trip: Trip | None = None
    drive: Drive | None = None
    last_order: list[str] = field(default_factory=list)

    @property
    def kind(self) -> Kind:
        """Whether the car burns fuel or charges."""
        return "combustion" if self.car.model.combustion else "electric"

    @property
    def signal_names(self) -> tuple[str, ...]:
        """The signals this car's dongle reports."""
        return COMBUSTION_SIGNALS if self.car.model.combustion else ELECTRIC_SIGNALS

    @property
    def charging(self) -> bool:
        """Whether energy flows (or is about to) into the battery."""
        return self.car.charge_mode() in (ChargeMode.CHARGING, ChargeMode.INITIALIZING)

    @property
    def active(self) -> bool:
        """Whether the dongle is awake and reporting."""
        return self.car.driving or self.charging

    @property
    def fuel_l(self) -> float:
        """Fuel in the tank, in litres."""
        return self.car.soc / 100 * self.car.model.tank_l

    def as_json(self) -> dict[str, Any]:
        """Return the v4 vehicle object."""
        model = self.car.model
        return {
            "id": self.id,
            "userId": self.user_id,
            "name": self.name,
            "brand": model.brand,
            "model": model.model,
            "kType": KTYPES.get(model.model, 0),
            "licensePlate": self.plate,
            "device": {"id": self.device_id, "vehicleId": self.id, "brand": "xee"},
            "createdAt": isoformat(self.created_at),
            "updatedAt": isoformat(self.created_at),
            "firstEntryIntoService": self.first_entry,
        }


class XeeCloud:
    """Everything the simulated Xee knows, and the rules it plays by."""

    def __init__(self, world: World, options: SimOptions, faults: Faults | None = None) -> None:
        self.world = world
        seed = world.seed
        # Streams of their own, so Xee traffic never shifts Enode's ids, physics or faults.
        self.ids = random.Random(f"{seed}:xee:ids")
        self.physics = random.Random(f"{seed}:xee:physics")
        self.order = random.Random(f"{seed}:xee:order")
        self.fault_rng = random.Random(f"{seed}:xee:faults")
        self.auth = XeeAuth(world, options, self.ids)
        self.faults = faults or Faults()
        self.vehicles: dict[str, XeeVehicle] = {}
        self.demo_user_id: str | None = None
        self.api_calls = 0

    # ---- vehicles ----------------------------------------------------------------------------

    def user_vehicles(self, user_id: str) -> list[XeeVehicle]:
        """Return the user's vehicles, oldest first."""
        return [self.vehicles[v] for v in self.auth.user(user_id).vehicle_ids]

    def add_vehicle(self, user_id: str, kind: Kind, name: str | None = None) -> XeeVehicle:
        """Pair a dongle in a new car of `kind` to a user's account."""
        user = self.auth.user(user_id)
        rng, now = self.physics, self.world.now()
        model = rng.choice(XEE_COMBUSTION if kind == "combustion" else XEE_ELECTRIC)
        car = self.world.new_car(model, rng=rng)
        parked_at = now - round(rng.uniform(600, 36_000), 3)
        fix = Fix(car.lat, car.lon, rng.randrange(360), parked_at)
        vehicle = XeeVehicle(
            id=self.world.new_uuid(self.ids),
            user_id=user.id,
            car=car,
            name=name or f"{model.brand} {model.model.split()[0]}",
            plate=_plate(self.ids),
            device_id="E" + "".join(str(self.ids.randrange(10)) for _ in range(9)),
            created_at=now,
            first_entry=(
                f"{model.year}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T00:00:00.000Z"
            ),
            altitude=round(rng.uniform(20, 400), 1),
            nb_sat=rng.randrange(6, 13),
            phase=round(rng.uniform(0, REPORT_S), 3),
            parked_at=parked_at,
            fix=fix,
            last_report=parked_at,
            updated_at=parked_at,
        )
        # The last reports before the car was parked came at different moments.
        for signal, value in self._values(vehicle, parked_at).items():
            quiet = signal in ("LockSts", "IgnitionSts") or signal in OPENINGS
            date = parked_at if quiet else parked_at - round(rng.uniform(0, 900), 3)
            vehicle.readings[signal] = Reading(value, date)
        vehicle.locations.append(fix)
        self.vehicles[vehicle.id] = vehicle
        user.vehicle_ids.append(vehicle.id)
        return vehicle

    def add_demo_vehicles(self, user_id: str, count: int) -> list[XeeVehicle]:
        """Pair `count` cars to a user, alternating combustion and electric."""
        kinds: tuple[Kind, Kind] = ("combustion", "electric")
        return [self.add_vehicle(user_id, kinds[i % 2]) for i in range(count)]

    def vehicle(self, vehicle_id: str) -> XeeVehicle:
        """Return a known vehicle or raise a 404 error."""
        vehicle = self.vehicles.get(vehicle_id)
        if vehicle is None:
            raise XeeError(404, "not_found", f"Vehicle {vehicle_id} was not found")
        return vehicle

    def vehicle_for(self, user: XeeUser, vehicle_id: str) -> XeeVehicle:
        """Return a vehicle the user may see, or raise 404 (unknown) or 403 (someone else's)."""
        vehicle = self.vehicle(vehicle_id)
        if vehicle.user_id != user.id:
            raise XeeError(403, "forbidden", "Token cannot access this vehicle")
        return vehicle

    def remove_vehicle(self, vehicle_id: str) -> None:
        """Dissociate a dongle: the vehicle disappears."""
        vehicle = self.vehicle(vehicle_id)
        del self.vehicles[vehicle_id]
        self.auth.user(vehicle.user_id).vehicle_ids.remove(vehicle_id)

    def repair(self, vehicle_id: str) -> XeeVehicle:
        """Re-pair the dongle: the same car comes back under a new vehicle id."""
        vehicle = self.observe(self.vehicle(vehicle_id))
        self.remove_vehicle(vehicle_id)
        vehicle.id = self.world.new_uuid(self.ids)
        vehicle.created_at = self.world.now()
        # The old history stays with the old id, as on Xee.
        vehicle.history.clear()
        vehicle.locations.clear()
        vehicle.trips.clear()
        self.vehicles[vehicle.id] = vehicle
        self.auth.user(vehicle.user_id).vehicle_ids.append(vehicle.id)
        return vehicle

    # ---- what the dongle reports -------------------------------------------------------------

    def observe(self, vehicle: XeeVehicle) -> XeeVehicle:
        """Bring the dongle's reports up to now, and report any change at once."""
        now = self.world.now()
        self._catch_up(vehicle, now)
        vehicle.car.advance(now)
        self._report(vehicle, now, periodic=False)
        return vehicle

    def _catch_up(self, vehicle: XeeVehicle, t: float) -> None:
        car = vehicle.car
        if vehicle.active and (t - vehicle.last_report) / REPORT_S > MAX_CATCH_UP:
            vehicle.last_report = t - MAX_CATCH_UP * REPORT_S
        while True:
            # The next thing the dongle says: a tick of its report grid, the trip's end, or
            # (parked) the 12 V battery sagging another step.
            candidates: list[tuple[float, str]] = []
            if vehicle.active:
                candidates.append((self._next_tick(vehicle), "tick"))
            if (ends := car.drive_ends_at()) is not None:
                candidates.append((ends, "end"))
            if not vehicle.active and (sag := self._next_sag(vehicle)) is not None:
                candidates.append((sag, "sag"))
            at, what = min(candidates, default=(math.inf, ""))
            if at > t:
                return
            car.advance(at)
            if what == "end" and car.drive is not None:
                car.park()  # rounding must not keep a finished trip going
            self._report(vehicle, at, periodic=what == "tick")

    def _next_tick(self, vehicle: XeeVehicle) -> float:
        n = math.floor((vehicle.last_report - vehicle.phase) / REPORT_S) + 1
        return vehicle.phase + n * REPORT_S

    def _next_sag(self, vehicle: XeeVehicle) -> float | None:
        steps = math.floor((vehicle.car.t - vehicle.parked_at) / SAG_STEP_S)
        if steps >= SAG_STEPS:
            return None
        return vehicle.parked_at + (steps + 1) * SAG_STEP_S

    def _values(self, vehicle: XeeVehicle, t: float) -> dict[str, float]:
        car = vehicle.car
        driving = car.driving
        speed = round(car.speed_kmh, 1) if driving else 0.0
        if driving:
            volts = 14.2
        elif vehicle.charging:
            volts = 13.8  # the DC/DC converter tops up the 12 V battery while charging
        else:
            steps = min(SAG_STEPS, max(0, math.floor((t - vehicle.parked_at) / SAG_STEP_S)))
            volts = round(12.6 - 0.1 * steps, 1)
        values: dict[str, float] = {
            "VehiculeSpeed": speed,
            "Odometer": round(car.odometer_km, 1),
            "BatteryVoltage": volts,
            "IgnitionSts": int(driving),
            "LockSts": int(not driving and not any(vehicle.doors.values())),
        }
        for opening in OPENINGS:
            values[opening] = int(vehicle.doors[opening])
        if car.model.combustion:
            fuel = vehicle.fuel_l
            values["EngineSpeed"] = min(4500, round(800 + speed * 28)) if driving else 0
            values["FuelLevel"] = round(fuel, 1)
            values["ComputedFuelLevel"] = round(fuel * 2) / 2
        else:
            values["EVBatterySOC"] = round(car.soc, 1)
            values["EVRemainingRange"] = float(round(car.range_km))
            values["EVChargerSts"] = int(car.plugged)
            values["EVChargingSts"] = int(vehicle.charging)
        return values

    def _report(self, vehicle: XeeVehicle, t: float, *, periodic: bool) -> None:
        # The report at `t`: what changed, plus (on its grid) what is due again. When the
        # ignition goes on or off the dongle sends everything, with a fresh GPS fix, so a
        # trip's first and last reports give its odometers and places.
        tick = round((t - vehicle.phase) / REPORT_S)
        car = vehicle.car
        waking = car.driving and vehicle.trip is None
        full = waking or (not car.driving and vehicle.trip is not None)
        sent: list[tuple[str, float]] = []
        for name, value in self._values(vehicle, t).items():
            reading = vehicle.readings.get(name)
            period = PERIODS.get(name)
            due = full or (periodic and period is not None and tick % period == 0)
            if reading is None or reading.value != value or due:
                vehicle.readings[name] = Reading(value, t)
                vehicle.history.append((name, value, t))
                vehicle.updated_at = t
                sent.append((name, value))
        fix = vehicle.fix
        new_fix = None
        if (car.lat, car.lon) != (fix.lat, fix.lon) or periodic or full:
            heading = fix.heading
            if haversine_km(fix.lat, fix.lon, car.lat, car.lon) > 0.001:
                heading = _bearing(fix.lat, fix.lon, car.lat, car.lon)
            new_fix = vehicle.fix = Fix(car.lat, car.lon, heading, t)
            vehicle.locations.append(new_fix)
            vehicle.updated_at = t
        self._track_trip(vehicle, t, TripReport(t, new_fix, tuple(sent)))
        if vehicle.active or periodic:
            vehicle.last_report = t

    def _track_trip(self, vehicle: XeeVehicle, t: float, report: TripReport) -> None:
        car = vehicle.car
        trip = vehicle.trip
        if car.driving and trip is None:
            trip = Trip(self.world.new_uuid(self.ids), t, vehicle.fix, car.odometer_km)
            trip.record(report, keep=True)
            vehicle.trip = trip
        elif car.driving and trip is not None:
            if report.fix is not None or report.signals:
                trip.record(report)
        elif trip is not None:
            trip.record(report, keep=True)
            trip.ended_at, trip.end = t, vehicle.fix
            trip.distance_km = round(car.odometer_km - trip.start_odometer, 3)
            vehicle.trips.append(trip)
            vehicle.trip = None
            vehicle.parked_at = t

    # ---- API views ---------------------------------------------------------------------------

    def status(self, vehicle: XeeVehicle) -> dict[str, Any]:
        """Return the v4 status: the dongle's last word, signals in no stable order."""
        self.observe(vehicle)
        names = list(vehicle.readings)
        while True:
            self.order.shuffle(names)
            if names != vehicle.last_order or len(names) < 2:
                break
        vehicle.last_order = list(names)
        fix = vehicle.fix
        driving = vehicle.car.driving
        return {
            "vehicleId": vehicle.id,
            "createdAt": isoformat(vehicle.created_at),
            "updatedAt": isoformat(vehicle.updated_at),
            "location": fix.as_json(vehicle.altitude, vehicle.nb_sat),
            "accelerometer": {
                "x": 112 if driving else -12,
                "y": -40 if driving else 36,
                "z": 4010 if driving else 4032,
                "date": isoformat(fix.date),
            },
            "signals": [
                {
                    "name": n,
                    "value": vehicle.readings[n].value,
                    "date": isoformat(vehicle.readings[n].date),
                }
                for n in names
            ],
        }

    def signal_history(
        self,
        vehicle: XeeVehicle,
        window: tuple[float, float],
        names: Iterable[str] | None,
        limit: int | None,
    ) -> list[dict[str, Any]]:
        """Return reported signal values in the window, oldest first."""
        self.observe(vehicle)
        wanted = set(names) if names is not None else None
        if wanted is not None and not wanted <= set(vehicle.signal_names):
            raise XeeError(400, "signals_unexistant", "Signals does not exist")
        start, end = window
        out = [
            {"name": n, "value": v, "date": isoformat(d)}
            for n, v, d in vehicle.history
            if start <= d <= end and (wanted is None or n in wanted)
        ]
        return out[:limit] if limit is not None else out

    def location_history(
        self, vehicle: XeeVehicle, window: tuple[float, float], limit: int | None
    ) -> list[dict[str, Any]]:
        """Return the GPS fixes in the window, oldest first."""
        self.observe(vehicle)
        start, end = window
        out = [
            f.as_json(vehicle.altitude, vehicle.nb_sat)
            for f in vehicle.locations
            if start <= f.date <= end
        ]
        return out[:limit] if limit is not None else out

    def trip_history(
        self, vehicle: XeeVehicle, window: tuple[float, float]
    ) -> list[dict[str, Any]]:
        """Return the finished trips that overlap the window (ends included), oldest first."""
        self.observe(vehicle)
        start, end = window
        return [
            t.as_json(vehicle) for t in vehicle.trips if t.started_at <= end and t.ended_at >= start
        ]

    def trip_for(self, user: XeeUser, trip_id: str) -> tuple[XeeVehicle, Trip]:
        """Return a finished trip of one of the user's cars, or raise 404 (even if another's)."""
        for vehicle in self.user_vehicles(user.id):
            self.observe(vehicle)  # a trip that ended on its own since the last look counts
            for trip in vehicle.trips:
                if trip.id == trip_id:
                    return vehicle, trip
        raise XeeError(404, "not_found", f"Trip {trip_id} was not found")

    def trip_signals(
        self,
        vehicle: XeeVehicle,
        trip: Trip,
        window: tuple[float, float],
        names: Iterable[str] | None,
        limit: int | None,
    ) -> list[dict[str, Any]]:
        """Return the signals the dongle sent during the trip, in the window, oldest first."""
        wanted = set(names) if names is not None else None
        if wanted is not None and not wanted <= set(vehicle.signal_names):
            raise XeeError(400, "signals_unexistant", "Signals does not exist")
        start, end = window
        out = [
            {"name": n, "value": v, "date": isoformat(r.date)}
            for r in trip.reports
            if start <= r.date <= end
            for n, v in r.signals
            if wanted is None or n in wanted
        ]
        return out[:limit] if limit is not None else out

    def trip_locations(
        self, vehicle: XeeVehicle, trip: Trip, window: tuple[float, float], limit: int | None
    ) -> list[dict[str, Any]]:
        """Return the GPS fixes the dongle sent during the trip, in the window, oldest first."""
        start, end = window
        out = [
            r.fix.as_json(vehicle.altitude, vehicle.nb_sat)
            for r in trip.reports
            if r.fix is not None and start <= r.date <= end
        ]
        return out[:limit] if limit is not None else out

    # ---- changes to the truth (admin) --------------------------------------------------------

    def act(self, vehicle: XeeVehicle, change: str, *args: Any) -> None:
        """Apply one admin change to the car and let the dongle report it at once."""
        self.observe(vehicle)
        car = vehicle.car
        if change == "drive":
            speed, distance = args
            if car.soc < 1e-6:  # a trip that ran dry leaves rounding dust
                what = "tank" if car.model.combustion else "battery"
                raise XeeError(409, "conflict", f"the {what} is empty")
            car.park()
            car.start_drive(self.world.new_route(car, self.physics), speed, distance)
        elif change == "park":
            car.park()
        elif change == "plug":
            self._need(vehicle, "electric")
            car.plug_in(start_charging=args[0])
        elif change == "unplug":
            self._need(vehicle, "electric")
            car.unplug()
        elif change == "battery":
            self._need(vehicle, "electric")
            car.set_soc(args[0])
        elif change == "fuel":
            self._need(vehicle, "combustion")
            litres = args[0]
            if litres > car.model.tank_l:
                msg = f"the tank holds {car.model.tank_l:g} litres"
                raise XeeError(400, "invalid_request", msg)
            car.set_soc(litres / car.model.tank_l * 100)
        elif change == "location":
            car.park()
            car.lat, car.lon = args
        elif change == "door":
            door, is_open = args
            vehicle.doors[door] = is_open
        self._report(vehicle, self.world.now(), periodic=False)

    def _need(self, vehicle: XeeVehicle, kind: Kind) -> None:
        if vehicle.kind != kind:
            msg = f"vehicle {vehicle.id} is not {kind}"
            raise XeeError(400, "invalid_request", msg)

    def live(self, vehicle: XeeVehicle) -> dict[str, Any]:
        """Describe the car's physical truth (the admin view)."""
        self.observe(vehicle)
        car = vehicle.car
        out: dict[str, Any] = {
            **vehicle.as_json(),
            "kind": vehicle.kind,
            "odometerKm": round(car.odometer_km, 3),
            "latitude": car.lat,
            "longitude": car.lon,
            "driving": car.driving,
            "speedKmh": car.speed_kmh,
            "rangeKm": round(car.range_km, 1),
            "doors": dict(vehicle.doors),
            "signals": {n: r.value for n, r in sorted(vehicle.readings.items())},
        }
        if car.model.combustion:
            out |= {"fuelLitres": round(vehicle.fuel_l, 3), "tankLitres": car.model.tank_l}
        else:
            out |= {
                "batteryLevel": round(car.soc, 3),
                "pluggedIn": car.plugged,
                "chargeMode": car.charge_mode().value,
            }
        return out


def parse_date(raw: str) -> float:
    """Parse an ISO-8601 query date (`Z` or an offset; naive means UTC) to epoch seconds."""
    try:
        stamp = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        epoch = stamp.timestamp()
        datetime.fromtimestamp(epoch, UTC)  # must stay within the years datetime can show
    except (ValueError, OverflowError):
        raise XeeError(400, "invalid_request", f"Invalid date {raw!r}") from None
    return epoch


def window(raw_from: str | None, raw_to: str | None, now: float) -> tuple[float, float]:
    """Return the query window: `to` defaults to now, `from` to the 1st of its month."""
    end = parse_date(raw_to) if raw_to else now
    if raw_from:
        start = parse_date(raw_from)
    else:
        first = datetime.fromtimestamp(end, UTC).replace(
            day=1, hour=0, minute=0, second=0, microsecond=0
        )
        start = first.timestamp()
    if start > end or end - start > MAX_WINDOW_S:
        raise XeeError(400, "invalid_request", "Range issue in dates")
    return start, end


def trip_window(raw_from: str | None, raw_to: str | None) -> tuple[float, float]:
    """Return a trip query's window: open-ended where `from` or `to` is not given."""
    start = parse_date(raw_from) if raw_from else -math.inf
    end = parse_date(raw_to) if raw_to else math.inf
    if start > end:
        raise XeeError(400, "invalid_request", "Range issue in dates")
    return start, end


def _plate(rng: random.Random) -> str:
    letters = "ABCDEFGHJKLMNPQRSTVWXYZ"  # French plates skip I, O and U
    pick = "".join(rng.choice(letters) for _ in range(4))
    return f"{pick[:2]}-{rng.randrange(1, 1000):03d}-{pick[2:]}"


def _bearing(lat1: float, lon1: float, lat2: float, lon2: float) -> int:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return round(math.degrees(math.atan2(x, y))) % 360
