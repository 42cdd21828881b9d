"""Location privacy end to end: the simulator, a real mosquitto, the bridge in-process.

Each test first runs the bridge in `exact` mode (what the car's coordinates are, retained on
the broker), then again in the mode under test on the same broker and state file: a switch
from `exact` must leave no more precision retained than the new mode allows.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable
from pathlib import Path

import pytest

from car2mqtt.bridge.privacy import METRES_PER_DEGREE, Privacy, coarsen
from car2mqtt.history.model import ZoneArea
from car2mqtt.models import Location, LocationMode, VehicleRef
from tests.bridge.conftest import TOPICS, bridge_for
from tests.bridge.test_bridge import wait_retained
from tests.mqtt_support import Mosquitto, retained
from tests.support import Sim

pytestmark = pytest.mark.asyncio

# Three decimals or more: a position to ~100 m or better. Battery, range and energy figures
# carry two at most, so they are not mistaken for a coordinate that happens to be close.
_NUMBER = re.compile(r"-?\d+\.\d{3,}")


def ref(vehicle_id: str) -> VehicleRef:
    return VehicleRef("enode", "home", vehicle_id)


def coordinates_in(text: str, fixes: Iterable[tuple[float, float]]) -> list[float]:
    """Return the coordinate-like numbers in `text` within half a degree of a car's."""
    values = [float(n) for n in _NUMBER.findall(text)]
    near = []
    for value in values:
        for lat, lon in fixes:
            if abs(value - lat) < 0.5 or abs(value - lon) < 0.5:
                near.append(value)
                break
    return near


def on_grid(value: float, steps: Iterable[float]) -> bool:
    return any(abs(value / step - round(value / step)) * step < 1e-5 for step in steps)


async def exact_fixes(
    sim: Sim, broker: Mosquitto, tmp_path: Path
) -> dict[str, tuple[float, float]]:
    ids = sim.vehicle_ids()
    async with bridge_for(sim, broker, tmp_path):
        topics = {TOPICS.location(ref(v)) for v in ids}
        kept = await wait_retained(broker.port, lambda r: topics <= set(r))
    fixes = {}
    for v in ids:
        payload = json.loads(kept[TOPICS.location(ref(v))])
        fixes[v] = (payload["latitude"], payload["longitude"])
    return fixes


def everything(kept: dict[str, bytes], log: str) -> str:
    return "\n".join([*(f"{t} {p.decode(errors='replace')}" for t, p in kept.items()), log])


async def test_coarse_leaves_only_grid_points(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fixes = await exact_fixes(sim, mosquitto, tmp_path)
    assert coordinates_in(json.dumps(list(fixes.values())), fixes.values())  # the helper finds them
    caplog.clear()
    privacy = {"home": Privacy(LocationMode.COARSE, 1000.0)}
    topics = {TOPICS.location(ref(v)) for v in fixes}
    async with bridge_for(sim, mosquitto, tmp_path, privacy=privacy):
        kept = await wait_retained(
            mosquitto.port,
            lambda r: all(t in r and json.loads(r[t])["gps_accuracy"] == 707 for t in topics),
        )
    lat_step = 1000.0 / METRES_PER_DEGREE
    lon_steps = []
    for v, (lat, lon) in fixes.items():
        grid = coarsen(Location(lat, lon), 1000.0)
        assert grid is not None
        payload = json.loads(kept[TOPICS.location(ref(v))])
        assert (payload["latitude"], payload["longitude"]) == (grid.latitude, grid.longitude)
        assert "heading" not in payload
        assert "altitude" not in payload
        lon_steps.append(lat_step / max(0.01, math.cos(math.radians(grid.latitude))))
    for value in coordinates_in(everything(kept, caplog.text), fixes.values()):
        assert on_grid(value, [lat_step, *lon_steps]), f"{value} is finer than the 1 km grid"


async def test_zone_publishes_only_the_zone_name(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fixes = await exact_fixes(sim, mosquitto, tmp_path)
    caplog.clear()
    first, *others = fixes
    lat, lon = fixes[first]
    privacy = {"home": Privacy(LocationMode.ZONE, zones=(ZoneArea("Office", lat, lon, 200.0),))}
    topics = {TOPICS.location(ref(v)) for v in fixes}
    async with bridge_for(sim, mosquitto, tmp_path, privacy=privacy) as h:
        kept = await wait_retained(
            mosquitto.port, lambda r: all(t in r and not r[t].startswith(b"{") for t in topics)
        )
        hub = h.running.bridge.hub
        vins = [v.state.info.vin for a in hub.accounts() for v in a.vehicles.values()]
    # expose_vin is off: no VIN on the broker nor in the log.
    assert vins
    assert all(vins)
    assert not [vin for vin in vins if vin and vin in everything(kept, caplog.text)]
    assert kept[TOPICS.location(ref(first))] == b"Office"
    for v in others:
        assert kept[TOPICS.location(ref(v))] == b"not_home"
    tracker = json.loads(kept[TOPICS.device_config(ref(first))])["components"]["location"]
    assert tracker["state_topic"] == TOPICS.location(ref(first))
    assert "json_attributes_topic" not in tracker
    assert (tracker["payload_home"], tracker["payload_not_home"]) == ("home", "not_home")
    assert coordinates_in(everything(kept, caplog.text), fixes.values()) == []


async def test_off_has_no_tracker_and_no_location_topic(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fixes = await exact_fixes(sim, mosquitto, tmp_path)
    caplog.clear()
    first, *others = fixes
    # The account is `zone`, one car (by id) `off`.
    privacy = {"home": Privacy(LocationMode.ZONE, cars={first: LocationMode.OFF})}
    gone = TOPICS.location(ref(first))
    async with bridge_for(sim, mosquitto, tmp_path, privacy=privacy):
        await wait_retained(
            mosquitto.port,
            lambda r: (
                gone not in r and all(r.get(TOPICS.location(ref(v))) == b"not_home" for v in others)
            ),
        )
        kept = await retained(mosquitto.port)
    assert gone not in kept
    components = json.loads(kept[TOPICS.device_config(ref(first))])["components"]
    assert components["location"] == {"platform": "device_tracker"}  # removed from HA
    for v in others:
        assert kept[TOPICS.location(ref(v))] == b"not_home"
    assert coordinates_in(everything(kept, caplog.text), fixes.values()) == []
