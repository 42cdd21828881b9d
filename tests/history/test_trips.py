"""Trips through a running bridge: derived from an Enode car's odometer, and a Xee dongle's own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path

import pytest

from car2mqtt.bridge.privacy import Privacy, coarsen
from car2mqtt.history.model import ZoneArea
from car2mqtt.history.records import HistoryBackend, Trip
from car2mqtt.history.sqlite import SqliteHistory
from car2mqtt.models import Location, LocationMode
from car2mqtt.runtime import HistoryOptions, running
from car2mqtt.store import Store
from tests.bridge.conftest import FAST, TOPICS, enode_provider, xee_provider
from tests.history.conftest import backend_for
from tests.history.test_recorder import admin, broker_settings, refreshed, until
from tests.mqtt_support import Mosquitto
from tests.simulator.xee_support import Xee
from tests.support import Sim


async def ended_trips(backend: HistoryBackend, key: str) -> list[Trip]:
    """The car's trips that have ended."""
    return [t for t in await backend.trips(key) if t.ended_at is not None]


async def settle(sim: Sim, seconds: float) -> None:
    """Let simulated time run on, and the bridge poll what the clouds now show."""
    await asyncio.to_thread(sim.advance, seconds)
    await asyncio.sleep(1.0)


async def test_a_day_of_driving_gives_its_trips(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, history_url: str
) -> None:
    tesla = sim.vehicle_ids()[0]
    xee = Xee(sim)
    petrol = xee.vehicle_ids()[0]
    store = Store.open(tmp_path / "car2mqtt.db")
    backend = backend_for(history_url)
    try:
        async with running(
            [enode_provider(sim, store), xee_provider(sim, store)],
            store=store,
            broker=broker_settings(mosquitto),
            topics=TOPICS,
            timing=FAST,
            history=HistoryOptions(backend, cloud_delay_s=0.0),
        ) as run:
            assert run.history is not None
            await asyncio.wait_for(run.history.ready.wait(), 10)
            await asyncio.sleep(1.0)  # the cars as they are parked
            start_km = (await refreshed(sim, tesla))["odometerKm"]
            for km in (5, 3):
                await admin(
                    sim,
                    "POST",
                    f"/enode/vehicles/{tesla}/drive",
                    {"speedKmh": 50, "distanceKm": km},
                )
                r = xee.admin(
                    "POST", f"/vehicles/{petrol}/drive", {"speedKmh": 50, "distanceKm": km}
                )
                assert r.is_success, r.text
                await settle(sim, 1800)  # arrived, and Enode's cache has seen it
                await settle(sim, 1200)  # still for 20 minutes: the trip is over
            tesla_key = f"enode_{tesla}"
            trips = await until(
                lambda: _two(ended_trips(backend, tesla_key)), "two Enode trips", 20
            )
            assert [round(t.distance_km or 0, 1) for t in trips] == [5.0, 3.0]
            assert trips[0].start_odometer_km == round(start_km, 1)
            assert all(t.source == "derived" for t in trips)
            assert trips[0].ended_at is not None
            assert trips[1].started_at >= trips[0].ended_at
            # The dongle's cloud records trips of its own: those are kept, not derived ones.
            xee_keys = [k for k in await _keys(backend) if k.startswith("xee_")]
            assert xee_keys
            dongle = await until(
                lambda: _two(ended_trips(backend, xee_keys[0])), "two Xee trips", 20
            )
            assert all(t.source == "cloud" for t in dongle)
            assert [round(t.distance_km or 0) for t in dongle] == [5, 3]
    finally:
        store.close()
        xee.close()


async def _two(found: Awaitable[list[Trip]]) -> list[Trip] | None:
    trips = await found
    return trips if len(trips) >= 2 else None


async def _keys(backend: HistoryBackend) -> list[str]:
    return sorted({t.key for t in await backend.trips()})


@pytest.mark.parametrize("mode", [LocationMode.COARSE, LocationMode.ZONE])
async def test_a_dongle_clouds_own_trips_keep_only_what_privacy_allows(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, mode: LocationMode
) -> None:
    """Xee's trip list carries exact points beside the states: they are reduced the same way."""
    xee = Xee(sim)
    petrol = xee.vehicle_ids()[0]
    store = Store.open(tmp_path / "car2mqtt.db")
    backend = SqliteHistory(tmp_path / "history.db")
    far = ZoneArea("Far", -40.0, -70.0, 100.0)  # no car is near: every place reads as none
    privacy = {"car": Privacy(mode, grid_m=1000.0, zones=(far,))}
    try:
        async with running(
            [xee_provider(sim, store)],
            store=store,
            broker=broker_settings(mosquitto),
            topics=TOPICS,
            timing=FAST,
            history=HistoryOptions(backend, cloud_delay_s=0.0, zones=(far,)),
            privacy=privacy,
        ) as run:
            assert run.history is not None
            await asyncio.wait_for(run.history.ready.wait(), 10)
            await asyncio.sleep(1.0)
            for km in (5, 3):
                r = xee.admin(
                    "POST", f"/vehicles/{petrol}/drive", {"speedKmh": 50, "distanceKm": km}
                )
                assert r.is_success, r.text
                await settle(sim, 1800)
                await settle(sim, 1200)
            keys = await until(lambda: _xee_keys(backend), "a Xee trip", 20)
            trips = await until(lambda: _two(ended_trips(backend, keys[0])), "both ends", 20)
    finally:
        store.close()
        xee.close()
    assert all(trip.source == "cloud" for trip in trips)
    points = [(t.start_latitude, t.start_longitude) for t in trips]
    points += [(t.end_latitude, t.end_longitude) for t in trips]
    if mode is LocationMode.ZONE:
        assert set(points) == {(None, None)}  # the zone's name only, and none is near
    else:
        for latitude, longitude in points:
            assert latitude is not None
            assert longitude is not None
            grid = coarsen(Location(latitude=latitude, longitude=longitude), 1000.0)
            assert grid is not None
            assert (grid.latitude, grid.longitude) == (latitude, longitude)  # a grid point
    assert {(t.start_zone, t.end_zone) for t in trips} == {(None, None)}


async def _xee_keys(backend: HistoryBackend) -> list[str] | None:
    keys = [k for k in await _keys(backend) if k.startswith("xee_")]
    return keys or None
