"""The Xee provider's trips (`HasTrips`) against the simulated cloud over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from car2mqtt.clock import SimClock
from car2mqtt.errors import ProviderRejected
from car2mqtt.history.model import CloudTrip, HasTrips, Place
from car2mqtt.models import VehicleRef
from car2mqtt.providers.xee import XeeProvider, query_date
from car2mqtt.providers.xee.wire import Trip, readable_trips
from tests.simulator.xee_support import Xee
from tests.support import START, running_sim

DAY0 = datetime.fromtimestamp(START, UTC)
START_ISO = "2026-01-01T00:00:00Z"


@dataclass
class Setup:
    """A simulator, a plain client of its Xee cloud and a provider on the demo account."""

    xee: Xee
    clock: SimClock
    provider: XeeProvider

    def advance(self, seconds: float) -> None:
        """Move the simulator's clock and the provider's together."""
        self.xee.sim.advance(seconds)
        self.clock.advance(seconds)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        """Call the Xee admin API and return its answer."""
        r = self.xee.admin(method, path, body)
        assert r.is_success, r.text
        return r.json()

    def odometer(self, vid: str) -> float:
        """The car's true odometer."""
        km: float = self.ok("GET", f"/vehicles/{vid}")["odometerKm"]
        return km

    def api(self, path: str, **params: Any) -> Any:
        """GET the Xee API as the demo user."""
        r = self.xee.get(path, self.xee.login()["access_token"], **params)
        assert r.is_success, r.text
        return r.json()


@pytest.fixture
def sim_xee() -> Iterator[Xee]:
    with running_sim() as sim:
        client = Xee(sim)
        yield client
        client.close()


@pytest.fixture
async def setup(sim_xee: Xee) -> AsyncIterator[Setup]:
    info = sim_xee.sim.info["xee"]
    clock = SimClock(START, 0.0)
    provider = XeeProvider.create(
        account="home",
        api_url=info["apiUrl"],
        token_url=info["tokenUrl"],
        client_id=info["clientId"],
        client_secret=info["clientSecret"],
        username=info["username"],
        password=info["password"],
        clock=clock,
    )
    yield Setup(sim_xee, clock, provider)
    await provider.aclose()


async def _ref(setup: Setup, vid: str) -> VehicleRef:
    """The ref the bridge knows the car by (its dongle's id), from a poll."""
    device = setup.ok("GET", f"/vehicles/{vid}")["device"]["id"]
    [ref] = [s.ref for s in await setup.provider.poll() if s.ref.vehicle_id == device]
    return ref


def _drives(setup: Setup, vid: str) -> list[tuple[datetime, datetime, float, float]]:
    """Three drives in a day; each one's true (start, end, start km, end km)."""
    out = []
    for leave_h, speed, km, stop_after_s in (
        (8, 60, 5, None),
        (12, 36, 3, None),
        (18, 90, None, 1200),
    ):
        setup.advance(leave_h * 3600 - (setup.clock.time() - START))
        start, before = setup.clock.time(), setup.odometer(vid)
        body: dict[str, Any] = {"speedKmh": speed} | ({"distanceKm": km} if km else {})
        setup.ok("POST", f"/vehicles/{vid}/drive", body)
        if stop_after_s is None:
            assert km is not None
            setup.advance(1800)
            end = start + km / speed * 3600
        else:
            setup.advance(stop_after_s)
            setup.ok("POST", f"/vehicles/{vid}/park")
            end = start + stop_after_s
        out.append((_dt(start), _dt(end), before, setup.odometer(vid)))
    setup.advance(3600)
    return out


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


async def test_the_provider_has_trips(setup: Setup) -> None:
    assert isinstance(setup.provider, HasTrips)


async def test_a_simulated_day_gives_its_trips_with_distances_places_and_odometers(
    setup: Setup,
) -> None:
    vid = setup.xee.vehicle_ids()[0]
    ref = await _ref(setup, vid)
    drives = _drives(setup, vid)
    trips = await setup.provider.trips(ref, DAY0, DAY0 + timedelta(days=1))
    listed = setup.api(f"/vehicles/{vid}/trips")
    assert [t.trip_id for t in trips] == [t["id"] for t in listed]
    assert len(trips) == 3
    for trip, wire, (start, end, start_km, end_km) in zip(trips, listed, drives, strict=True):
        assert isinstance(trip, CloudTrip)
        assert trip.ref == ref
        assert trip.started_at == start
        assert trip.ended_at == end
        assert trip.started_at.tzinfo == UTC
        assert trip.distance_km == pytest.approx(end_km - start_km, abs=0.002)
        begin, finish = wire["startLocation"], wire["endLocation"]
        assert trip.start == Place(begin["latitude"], begin["longitude"])
        assert trip.end == Place(finish["latitude"], finish["longitude"])
        assert trip.start != trip.end
        assert trip.start_odometer_km == pytest.approx(start_km, abs=0.06)
        assert trip.end_odometer_km == pytest.approx(end_km, abs=0.06)
    assert [round(t.distance_km or 0) for t in trips] == [5, 3, 30]


async def test_windows_overlap_inclusively_and_long_ones_go_in_pieces(setup: Setup) -> None:
    vid = setup.xee.vehicle_ids()[0]
    ref = await _ref(setup, vid)
    drives = _drives(setup, vid)
    everything = await setup.provider.trips(ref, DAY0, DAY0 + timedelta(days=1))
    ids = [t.trip_id for t in everything]
    (_, e1, _, _), (s2, _, _, _), (s3, _, _, _) = drives
    minute = timedelta(minutes=1)
    inside = await setup.provider.trips(ref, s3 + minute, s3 + 2 * minute)
    assert [t.trip_id for t in inside] == ids[2:]
    touching = await setup.provider.trips(ref, e1, e1)
    assert [t.trip_id for t in touching] == ids[:1]
    # Sub-second bounds are not lost to the API's whole-second dates.
    just_after = await setup.provider.trips(ref, e1 + timedelta(milliseconds=500), s2 - minute)
    assert just_after == []
    assert await setup.provider.trips(ref, s2, e1) == []  # since after until
    # Ninety days, where the cloud takes 31 at most: asked in pieces, each trip once.
    long = await setup.provider.trips(ref, DAY0 - timedelta(days=60), DAY0 + timedelta(days=30))
    assert long == everything
    # Aware datetimes in any zone are the same moments.
    paris = await setup.provider.trips(
        ref, (s3 + minute).astimezone(_zone(1)), (s3 + 2 * minute).astimezone(_zone(1))
    )
    assert paris == inside


def _zone(hours: int) -> timezone:
    return timezone(timedelta(hours=hours))


async def test_a_car_the_account_does_not_list_is_refused(setup: Setup) -> None:
    await setup.provider.poll()
    ref = VehicleRef("xee", "home", "E000000000")
    with pytest.raises(ProviderRejected) as caught:
        await setup.provider.trips(ref, DAY0, DAY0 + timedelta(days=1))
    assert caught.value.status == 404


async def test_a_re_paired_car_keeps_its_ref_and_gets_its_new_trips(setup: Setup) -> None:
    vid = setup.xee.vehicle_ids()[0]
    ref = await _ref(setup, vid)
    setup.ok("POST", f"/vehicles/{vid}/drive", {"speedKmh": 60, "distanceKm": 2})
    setup.advance(600)
    assert len(await setup.provider.trips(ref, DAY0, DAY0 + timedelta(days=1))) == 1
    new = setup.ok("POST", f"/vehicles/{vid}/repair")["id"]
    # The provider still has the old vehicle id: the cloud's 404 makes it list again.
    assert await setup.provider.trips(ref, DAY0, DAY0 + timedelta(days=1)) == []
    setup.ok("POST", f"/vehicles/{new}/drive", {"speedKmh": 60, "distanceKm": 3})
    setup.advance(600)
    [trip] = await setup.provider.trips(ref, DAY0, DAY0 + timedelta(days=1))
    assert trip.ref == ref
    assert trip.distance_km == pytest.approx(3, abs=0.002)
    assert [t["id"] for t in setup.api(f"/vehicles/{new}/trips")] == [trip.trip_id]


async def test_client_reads_a_trip_its_signals_and_locations(setup: Setup) -> None:
    vid = setup.xee.vehicle_ids()[1]
    setup.ok("POST", f"/vehicles/{vid}/drive", {"speedKmh": 50, "distanceKm": 10})
    setup.advance(1800)
    client = setup.provider.client
    [listed] = await client.trips(vid, DAY0, DAY0 + timedelta(days=1))
    trip = await client.trip(listed.id)
    assert trip == listed
    assert trip.vehicle_id == vid
    assert trip.started_at == DAY0
    assert trip.ended_at == DAY0 + timedelta(seconds=720)
    assert trip.stats is not None
    assert trip.stats.duration == 720
    assert trip.distance_km == pytest.approx(10, abs=0.002)
    signals = await client.trip_signals(trip.id)
    assert {s.name for s in signals} >= {"Odometer", "EVBatterySOC", "VehiculeSpeed"}
    soc = [s.value for s in await client.trip_signals(trip.id, ("EVBatterySOC",))]
    known = [v for v in soc if v is not None]
    assert known == soc
    assert known == sorted(known, reverse=True)
    assert known[0] > known[-1]
    fixes = await client.trip_locations(trip.id)
    assert len(fixes) >= 720 / 30
    assert fixes[0].date == trip.started_at
    assert fixes[-1].date == trip.ended_at
    assert trip.start_location is not None
    assert (fixes[0].latitude, fixes[0].longitude) == (
        trip.start_location.latitude,
        trip.start_location.longitude,
    )
    with pytest.raises(ProviderRejected) as caught:
        await client.trip("00000000-0000-4000-8000-000000000000")
    assert caught.value.status == 404
    assert "was not found" in caught.value.detail


def test_query_dates_are_whole_utc_seconds() -> None:
    moment = datetime(2026, 1, 1, 9, 30, 15, 250_000, tzinfo=_zone(1))
    assert query_date(moment) == "2026-01-01T08:30:15Z"
    assert query_date(moment, up=True) == "2026-01-01T08:30:16Z"
    assert query_date(moment.replace(microsecond=0), up=True) == "2026-01-01T08:30:15Z"


def test_trip_wire_is_tolerant() -> None:
    trips = readable_trips(
        [
            {
                "id": "t1",
                "stats": {"distance": "12.5", "duration": None},
                "startLocation": {"latitude": 48.8, "longitude": 2.3, "date": START_ISO},
                "endLocation": "somewhere",
                "surprise": [1, 2, 3],
            },
            # The Python SDK's v3-era names, with a naive date.
            {"id": "t2", "beginLocation": {"latitude": 1, "longitude": 2},
             "beginDate": "2026-01-01T09:00:00", "endDate": "not a date", "distance": 4},
            {"name": "no id"},
            "garbage",
        ]
    )  # fmt: skip
    assert [t.id for t in trips] == ["t1", "t2"]
    first, second = trips
    assert first.distance_km == 12.5
    assert first.stats is not None
    assert first.stats.duration is None
    assert first.end_location is None
    assert first.started_at == DAY0
    assert first.ended_at is None
    assert second.distance_km == 4
    assert second.started_at == datetime(2026, 1, 1, 9)
    assert second.start_location is not None
    assert second.start_location.latitude == 1
    assert readable_trips({"not": "a list"}) == []
    assert Trip.model_validate({"id": "x", "stats": [1]}).stats is None
