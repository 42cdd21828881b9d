"""Charging sessions, trips and samples of one car, derived from the states the bridge sees.

Pure: `CarTracker.observe(state, now)` returns the rows to store; nothing here does I/O.

- **A session** runs from plug-in to unplug. Its energy is the battery level's rise times the
  capacity where the car reports both (the clouds' own meters are integers of a percent, so a
  40-point charge is good to about 1 %), else the charge rate integrated over time. A cloud's
  own figure replaces it later when the cloud has one (the recorder asks).
- **A trip** is derived from the odometer: it starts when the odometer moves, at the last place
  the car was seen still, and ends once the odometer has not moved for `TRIP_END_S`, the car is
  plugged in, or it moves again after being seen still for that long since its last move.
  With a cloud that refreshes every 7 minutes, a trip's ends are known to within that. Cars
  whose cloud records trips of its own get those instead.
- **Samples** of battery, range and odometer: at most one per change and per `SAMPLE_EVERY_S`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime

from car2mqtt.history.model import EnergySource, ZoneArea, zone_of
from car2mqtt.history.records import Sample, Session, Totals, Trip, Write
from car2mqtt.models import NOT_HOME, ChargeState, LocationMode, VehicleState

TRIP_END_S = 15 * 60.0  # a car whose odometer stood still this long has arrived
TRIP_MIN_KM = 0.05  # below this an odometer change is noise (rounding, a cache)
SAMPLE_EVERY_S = 300.0


def _stamp(moment: datetime | None, now: float) -> float:
    return moment.timestamp() if moment is not None else now


def _charging(state: VehicleState) -> bool:
    return bool(state.charging) or state.charge_state is ChargeState.CHARGING


@dataclass(slots=True)
class CarTracker:
    """What the recorder follows of one car between states."""

    key: str
    zones: tuple[ZoneArea, ...] = ()  # where sessions and trips are named after
    session: Session | None = None
    trip: Trip | None = None
    total_kwh: float = 0.0  # energy charged in all, never decreasing
    session_base_kwh: float = 0.0  # the total when the open session began
    last_rate: tuple[float, float] | None = None  # (time, kW) of the last charging state
    rate_kwh: float = 0.0  # the open session's charge rate integrated: a fallback for its energy
    capacity_kwh: float | None = None  # the battery's, as last reported
    trip_moved_at: float | None = None  # when the odometer last moved in the open trip
    still_since: float | None = None  # the latest time the open trip's car was seen still
    last_seen: tuple[float, VehicleState] | None = None  # the last state observed, and when
    # The last version of each open row handed out: an unchanged one is not written again.
    _handed: dict[str, Session | Trip] = field(default_factory=dict)
    last_sample: tuple[float, tuple[float | None, ...]] | None = None
    command_started: bool = False  # a command started charging since the last state

    def observe(self, state: VehicleState, now: float) -> list[Write]:
        """Take one state of the car; return the rows that changed."""
        rows: list[Write] = []
        if state.battery_capacity_kwh:
            self.capacity_kwh = state.battery_capacity_kwh
        at = _stamp(state.charge_updated_at or state.last_seen, now)
        rows += self._charge(state, at)
        seen = _stamp(state.last_seen, now)
        rows += self._drive(state, _stamp(state.odometer_updated_at, seen), seen)
        sample = self._sample(state, seen)
        if sample is not None:
            rows.append(sample)
        self.last_seen = (now, state)
        return [row for row in rows if self._changed(row)]

    def _changed(self, row: Write) -> bool:
        if not isinstance(row, Session | Trip):
            return True
        if self._handed.get(row.id) == row:
            return False
        if row.ended_at is None:
            self._handed[row.id] = row
        else:
            self._handed.pop(row.id, None)
        return True

    # ---- charging sessions ---------------------------------------------------------------

    def _charge(self, state: VehicleState, at: float) -> list[Write]:
        session = self.session
        if state.plugged_in is None:
            return []
        if session is None:
            if not state.plugged_in:
                return []
            fix = state.location
            soc_from = state.battery_pct
            before = self.last_seen[1] if self.last_seen else None
            if (
                before is not None
                and before.plugged_in is False
                and before.battery_pct is not None
                and soc_from is not None
                and before.battery_pct <= soc_from
            ):
                # A cloud shows the plug-in minutes late, the car charging meanwhile; it was
                # parked unplugged until then, so its level then is where the charge began.
                soc_from = before.battery_pct
            session = self.session = Session(
                id=str(uuid.uuid4()),
                key=self.key,
                started_at=at,
                soc_from=soc_from,
                soc_to=state.battery_pct,
                latitude=fix.latitude if fix else None,
                longitude=fix.longitude if fix else None,
                zone=self._zone(state),
            )
            self.session_base_kwh = self.total_kwh
            self.rate_kwh = 0.0
            self.last_rate = None
        if at < session.started_at:
            return []  # older than what the session has seen
        session = self._accrue(session, state, at)
        if self.command_started:
            session = replace(session, by_command=True)
            self.command_started = False
        if not state.plugged_in:
            session = replace(session, ended_at=at)
            self.session = None
        else:
            self.session = session
        rows: list[Write] = [session]
        total = max(self.total_kwh, self.session_base_kwh + session.energy_kwh)
        if total > self.total_kwh:
            self.total_kwh = total
            rows.append(Totals(self.key, total))
        return rows

    def _accrue(self, session: Session, state: VehicleState, at: float) -> Session:
        charging = _charging(state) and bool(state.plugged_in)
        rate = state.charge_rate_kw if charging else None
        charging_s, spans = session.charging_s, session.spans
        if self.last_rate is not None:
            before, kw = self.last_rate
            span = max(0.0, at - before)
            charging_s += span
            # Trapezoids between readings: the rate moves as the charge tapers.
            self.rate_kwh += (kw + (rate if rate is not None else kw)) / 2 * span / 3600
        if charging and self.last_rate is None:
            spans += 1
        self.last_rate = (at, rate if rate is not None else 0.0) if charging else None
        soc_to = state.battery_pct if state.battery_pct is not None else session.soc_to
        capacity = self.capacity_kwh
        if session.soc_from is not None and soc_to is not None and capacity:
            energy = max(0.0, (soc_to - session.soc_from) / 100 * capacity)
            source = EnergySource.SOC
        else:
            energy, source = self.rate_kwh, EnergySource.RATE
        if session.energy_source is EnergySource.CLOUD:
            energy, source = session.energy_kwh, EnergySource.CLOUD  # the cloud's figure stays
        peak = max(v for v in (session.peak_kw, rate, 0.0) if v is not None) or None
        mean = energy / (charging_s / 3600) if charging_s > 0 else None
        return replace(
            session,
            energy_kwh=energy,
            energy_source=source,
            soc_to=soc_to,
            peak_kw=peak,
            mean_kw=mean,
            charging_s=charging_s,
            spans=spans,
        )

    def adopt_cloud_energy(
        self, session: Session, energy_kwh: float
    ) -> tuple[Session, list[Write]]:
        """Take a cloud's own figure for a finished session; the total never decreases."""
        updated = replace(session, energy_kwh=energy_kwh, energy_source=EnergySource.CLOUD)
        rows: list[Write] = [updated]
        grown = energy_kwh - session.energy_kwh
        if grown > 0:
            self.total_kwh += grown
            # A session open meanwhile counts on from the raised total, not into it.
            self.session_base_kwh += grown
            rows.append(Totals(self.key, self.total_kwh))
        return updated, rows

    # ---- trips -----------------------------------------------------------------------------

    def _drive(self, state: VehicleState, at: float, seen: float) -> list[Write]:
        km = state.odometer_km
        previous = self.last_seen[1] if self.last_seen else None
        before_km = previous.odometer_km if previous else None
        trip = self.trip
        if km is None:
            return []
        rows: list[Write] = []
        if (
            trip is not None
            and previous is not None
            and before_km is not None
            and self.trip_moved_at is not None
            and km - before_km >= TRIP_MIN_KM
            and before_km == trip.end_odometer_km
            and self.still_since is not None
            and at - self.trip_moved_at >= TRIP_END_S
        ):
            # Seen still since its last move, and now moving again long after: the car
            # stopped in between (a cloud that refreshes every few minutes can show the stop
            # once only). The trip ended at its last move; a new one begins.
            zone = self._end_zone(trip)
            rows.append(replace(trip, ended_at=self.trip_moved_at, end_zone=zone))
            self.trip = trip = None
        if trip is None:
            if before_km is None or km - before_km < TRIP_MIN_KM or previous is None:
                return rows
            start_at = _stamp(previous.odometer_updated_at or previous.last_seen, at)
            fix = previous.location
            trip = Trip(
                id=str(uuid.uuid4()),
                key=self.key,
                started_at=min(start_at, at),
                start_odometer_km=before_km,
                start_latitude=fix.latitude if fix else None,
                start_longitude=fix.longitude if fix else None,
                start_zone=self._zone(previous),
            )
            self.trip_moved_at = None
            self.still_since = None
        fix = state.location
        moved = self.trip_moved_at is None or km - (trip.end_odometer_km or km) >= TRIP_MIN_KM
        if moved:
            self.trip_moved_at = at
            trip = replace(
                trip,
                end_odometer_km=km,
                distance_km=km - (trip.start_odometer_km or km),
                end_latitude=fix.latitude if fix else trip.end_latitude,
                end_longitude=fix.longitude if fix else trip.end_longitude,
                # `privacy.location: zone`: no coordinates, only the zone's name.
                end_zone=self._zone(state) if fix is None else trip.end_zone,
            )
        assert self.trip_moved_at is not None
        if moved:
            self.still_since = None
        elif self.still_since is None or seen > self.still_since:
            self.still_since = seen  # seen still, by the car's own clock (the odometer's may stop)
        still = self.still_since is not None and self.still_since - self.trip_moved_at >= TRIP_END_S
        # A dongle says so when the ignition goes off; a cloud without one, by time.
        stopped = state.ignition_on is False and previous is not None and previous.ignition_on
        arrived = bool(state.plugged_in) or bool(stopped) or still
        if arrived:
            trip = replace(
                trip,
                ended_at=self.trip_moved_at,
                end_latitude=fix.latitude if fix else trip.end_latitude,
                end_longitude=fix.longitude if fix else trip.end_longitude,
            )
            trip = replace(trip, end_zone=self._end_zone(trip))
            self.trip = None
        else:
            self.trip = trip
        return [*rows, trip]

    def _zone(self, state: VehicleState) -> str | None:
        """Return the zone `state`'s car is in: from its fix, or what privacy left of it."""
        if state.location_mode is LocationMode.ZONE:
            return state.zone if state.zone != NOT_HOME else None
        fix = state.location
        return zone_of(fix.latitude, fix.longitude, self.zones) if fix else None

    def _end_zone(self, trip: Trip) -> str | None:
        if trip.end_latitude is None:
            return trip.end_zone
        return zone_of(trip.end_latitude, trip.end_longitude, self.zones)

    # ---- samples ---------------------------------------------------------------------------

    def _sample(self, state: VehicleState, now: float) -> Sample | None:
        values = (state.battery_pct, state.range_km, state.odometer_km)
        if values == (None, None, None):
            return None
        last = self.last_sample
        if last is not None and (last[1] == values or now - last[0] < SAMPLE_EVERY_S):
            return None
        self.last_sample = (now, values)
        return Sample(self.key, now, *values)
