"""The tracker alone: sessions, trips and samples from a sequence of states (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from car2mqtt.history.model import EnergySource, ZoneArea, zone_of
from car2mqtt.history.records import Sample, Session, Totals, Trip
from car2mqtt.history.tracker import TRIP_END_S, CarTracker
from car2mqtt.models import ChargeState, Location, VehicleState
from tests.ha.cars import enode_car

T0 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def parked(minutes: float, **changes: object) -> VehicleState:
    """The test car, read at `minutes` past T0."""
    stamp = at(minutes)
    base: dict[str, object] = {
        "charge_updated_at": stamp,
        "odometer_updated_at": stamp,
        "last_seen": stamp,
        "plugged_in": False,
        "charging": False,
        "charge_state": ChargeState.UNPLUGGED,
        "charge_rate_kw": None,
        "battery_capacity_kwh": 60.0,
        "odometer_km": 1000.0,
    }
    return enode_car(**{**base, **changes})


def charging(minutes: float, pct: float, kw: float = 11.0) -> VehicleState:
    return parked(
        minutes,
        plugged_in=True,
        charging=True,
        charge_state=ChargeState.CHARGING,
        charge_rate_kw=kw,
        battery_pct=pct,
    )


def feed(tracker: CarTracker, states: list[VehicleState]) -> list[object]:
    rows: list[object] = []
    for state in states:
        rows += tracker.observe(state, (state.last_seen or T0).timestamp())
    return rows


def sessions(rows: list[object]) -> dict[str, Session]:
    found: dict[str, Session] = {}
    for row in rows:
        if isinstance(row, Session):
            found[row.id] = row  # the latest version of each
    return found


def test_plug_in_to_unplug_is_one_session_with_the_energy_of_the_rise() -> None:
    tracker = CarTracker("car")
    rows = feed(
        tracker,
        [
            parked(0, battery_pct=40.0),
            charging(5, 40.0),
            charging(65, 58.3),
            charging(125, 76.6),
            parked(180, plugged_in=True, charge_state=ChargeState.COMPLETE, battery_pct=80.0),
            parked(200, battery_pct=80.0),
        ],
    )
    (session,) = sessions(rows).values()
    assert session.ended_at == at(200).timestamp()
    assert session.started_at == at(5).timestamp()
    assert (session.soc_from, session.soc_to) == (40.0, 80.0)
    assert session.energy_kwh == 24.0  # 40 % of 60 kWh
    assert session.energy_source is EnergySource.SOC
    assert session.spans == 1
    assert session.peak_kw == 11.0
    assert session.charging_s == 175 * 60  # from the first charging read to the complete one
    totals = [r for r in rows if isinstance(r, Totals)]
    assert totals[-1].energy_kwh == 24.0
    assert tracker.session is None


def test_a_plug_in_seen_late_counts_from_the_level_before_it() -> None:
    tracker = CarTracker("car")
    # Parked at 40 %; the cloud shows the car plugged in only once it has reached 43 %.
    rows = feed(
        tracker, [parked(0, battery_pct=40.0), charging(7, 43.0), parked(60, battery_pct=50.0)]
    )
    (session,) = sessions(rows).values()
    assert (session.soc_from, session.energy_kwh) == (40.0, 6.0)


def test_without_a_battery_level_the_rate_is_integrated() -> None:
    tracker = CarTracker("car")
    no_soc = {"battery_pct": None}
    rows = feed(
        tracker,
        [
            charging(0, 0).replace(**no_soc),
            charging(60, 0, kw=10.0).replace(**no_soc),
            charging(120, 0, kw=6.0).replace(**no_soc),
            parked(121, **no_soc),
        ],
    )
    (session,) = sessions(rows).values()
    assert session.energy_source is EnergySource.RATE
    # 11→10 kW for an hour, 10→6 for another, then the last minute at 6.
    assert abs(session.energy_kwh - (10.5 + 8.0 + 6 / 60)) < 1e-6


def test_a_stop_and_a_restart_are_two_spans_of_one_session() -> None:
    tracker = CarTracker("car")
    rows = feed(
        tracker,
        [
            charging(0, 50.0),
            parked(30, plugged_in=True, charge_state=ChargeState.STOPPED, battery_pct=55.0),
            charging(90, 55.0),
            parked(120, battery_pct=60.0),
        ],
    )
    (session,) = sessions(rows).values()
    assert session.spans == 2
    assert session.energy_kwh == 6.0


def test_the_total_never_decreases_and_a_cloud_figure_only_raises_it() -> None:
    tracker = CarTracker("car")
    rows = feed(tracker, [charging(0, 50.0), parked(60, battery_pct=60.0)])
    (session,) = sessions(rows).values()
    assert tracker.total_kwh == 6.0
    _, lower = tracker.adopt_cloud_energy(session, 5.5)
    assert tracker.total_kwh == 6.0
    assert not [r for r in lower if isinstance(r, Totals)]
    updated, higher = tracker.adopt_cloud_energy(session, 6.4)
    assert updated.energy_source is EnergySource.CLOUD
    assert tracker.total_kwh == 6.4
    assert [r for r in higher if isinstance(r, Totals)] == [Totals("car", 6.4)]


def test_a_command_that_started_charging_marks_the_session() -> None:
    tracker = CarTracker("car")
    plugged = parked(0, plugged_in=True, charge_state=ChargeState.STOPPED, battery_pct=50)
    first = sessions(feed(tracker, [plugged]))
    assert [s.by_command for s in first.values()] == [False]
    tracker.command_started = True
    rows = feed(tracker, [charging(5, 50.0), parked(60, battery_pct=60.0)])
    assert [s.by_command for s in sessions(rows).values()] == [True]


def test_a_cloud_figure_taken_while_the_next_session_is_open_still_counts() -> None:
    tracker = CarTracker("car")
    (first,) = sessions(feed(tracker, [charging(0, 50.0), parked(60, battery_pct=60.0)])).values()
    feed(tracker, [charging(120, 60.0)])  # the next session is open
    tracker.adopt_cloud_energy(first, 7.0)  # the cloud says 7 kWh, not 6
    feed(tracker, [parked(180, battery_pct=65.0)])  # 3 kWh more
    assert tracker.total_kwh == 10.0


def test_one_reading_without_a_capacity_keeps_the_energy() -> None:
    tracker = CarTracker("car")
    rows = feed(
        tracker,
        [
            charging(0, 50.0),
            charging(30, 55.0).replace(battery_capacity_kwh=None),
            parked(60, battery_pct=60.0).replace(battery_capacity_kwh=None),
        ],
    )
    (session,) = sessions(rows).values()
    assert (session.energy_kwh, session.energy_source) == (6.0, EnergySource.SOC)


def test_an_unchanged_open_session_is_not_written_again() -> None:
    tracker = CarTracker("car")
    plugged = parked(0, plugged_in=True, charge_state=ChargeState.STOPPED, battery_pct=50)
    assert sessions(feed(tracker, [plugged]))
    assert not sessions(feed(tracker, [plugged]))  # the same reading again: nothing to write


def test_an_odometer_that_moves_and_then_rests_is_one_trip() -> None:
    tracker = CarTracker("car")
    home, work = Location(59.91, 10.75), Location(59.95, 10.70)
    rows = feed(
        tracker,
        [
            parked(0, odometer_km=1000.0, location=home),
            parked(7, odometer_km=1004.0, location=Location(59.93, 10.73)),
            parked(14, odometer_km=1012.5, location=work),
            parked(21, odometer_km=1012.5, location=work),
            parked(14 + TRIP_END_S / 60, odometer_km=1012.5, location=work),
        ],
    )
    trips = {r.id: r for r in rows if isinstance(r, Trip)}
    (trip,) = trips.values()
    assert trip.distance_km == 12.5
    assert (trip.started_at, trip.ended_at) == (at(0).timestamp(), at(14).timestamp())
    assert (trip.start_latitude, trip.end_latitude) == (59.91, 59.95)
    assert tracker.trip is None


def test_a_dongle_trip_ends_with_the_ignition_even_when_the_odometer_stamp_stands_still() -> None:
    tracker = CarTracker("car")
    moved = at(20)
    rows = feed(
        tracker,
        [
            parked(0, odometer_km=1000.0, ignition_on=False),
            parked(5, odometer_km=1004.0, ignition_on=True),
            parked(20, odometer_km=1012.0, ignition_on=True),
            # Parked: the dongle sends no odometer any more, so its stamp stays at 20.
            parked(21, odometer_km=1012.0, odometer_updated_at=moved, ignition_on=False),
        ],
    )
    (trip,) = {r.id: r for r in rows if isinstance(r, Trip)}.values()
    assert (trip.distance_km, trip.ended_at) == (12.0, moved.timestamp())


def test_a_trip_ends_by_the_cars_clock_when_the_odometer_stamp_stops() -> None:
    tracker = CarTracker("car")
    moved = at(20)
    rows = feed(
        tracker,
        [
            parked(0, odometer_km=1000.0),
            parked(20, odometer_km=1012.0),
            parked(30, odometer_km=1012.0, odometer_updated_at=moved),
            parked(50, odometer_km=1012.0, odometer_updated_at=moved),
        ],
    )
    (trip,) = {r.id: r for r in rows if isinstance(r, Trip)}.values()
    assert trip.ended_at == moved.timestamp()
    assert tracker.trip is None


def test_a_stop_seen_once_between_two_drives_splits_them() -> None:
    tracker = CarTracker("car")
    # Refreshed every 7 minutes or so: the car is seen still once, 14 minutes after it
    # arrived, and next seen after its second drive.
    rows = feed(
        tracker,
        [
            parked(0, odometer_km=1000.0),
            parked(29, odometer_km=1005.0),
            parked(43, odometer_km=1005.0),
            parked(77, odometer_km=1008.0),
            parked(99, odometer_km=1008.0),
        ],
    )
    trips = {r.id: r for r in rows if isinstance(r, Trip)}
    assert [(t.distance_km, t.ended_at) for t in trips.values()] == [
        (5.0, at(29).timestamp()),
        (3.0, at(77).timestamp()),
    ]
    second = list(trips.values())[1]
    assert (second.started_at, second.start_odometer_km) == (at(43).timestamp(), 1005.0)


def test_sessions_and_trips_are_named_after_the_zones_they_are_in() -> None:
    home = ZoneArea("home", 59.9100, 10.7500, 150)
    work = ZoneArea("work", 59.9500, 10.7000, 300)
    tracker = CarTracker("car", (home, work))
    near_home = Location(59.9105, 10.7510)  # about 75 m from its centre
    rows = feed(
        tracker,
        [
            parked(0, odometer_km=1000.0, location=near_home, battery_pct=50.0),
            parked(20, odometer_km=1012.0, location=Location(59.9520, 10.7010)),
            parked(40, odometer_km=1012.0, location=Location(59.9520, 10.7010)),
            charging(41, 50.0).replace(location=Location(59.99, 10.80), odometer_km=1012.0),
        ],
    )
    (trip,) = {r.id: r for r in rows if isinstance(r, Trip)}.values()
    assert (trip.start_zone, trip.end_zone) == ("home", "work")
    (session,) = sessions(rows).values()
    assert session.zone is None  # elsewhere
    assert zone_of(59.9100, 10.7500, (home, work)) == "home"
    assert zone_of(None, 10.75, (home,)) is None


def test_samples_keep_one_point_per_change_and_per_five_minutes() -> None:
    tracker = CarTracker("car")
    states = [parked(m, battery_pct=50.0 + m) for m in (0, 1, 2, 6, 7, 13)]
    states.append(parked(20, battery_pct=63.0))  # unchanged: no point
    samples = [r for r in feed(tracker, states) if isinstance(r, Sample)]
    assert [s.battery_pct for s in samples] == [50.0, 56.0, 63.0]
