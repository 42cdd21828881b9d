"""Location privacy, scanned: everything a bridge leaves behind, for each mode (docs/privacy.md).

The bridge runs as `car2mqtt run` does, from a configuration file (`privacy:`, `zones:`, history
in SQLite beside the state file, the web UI on loopback), against the real simulator and a real
mosquitto. The simulator's cars are first parked where no other figure the bridge handles can
look like one of their coordinates (negative latitudes and longitudes: no battery level,
range, power or energy is negative), so that any number near a car's position is a position.
Then a car drives, stops, charges and unplugs, so that history has a trip and a session with
their places, and every output is read back and searched: the retained topics on the broker,
every column of every table of the history file and of the state file, the log, the web UI's
pages and `car2mqtt history export`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from car2mqtt.bridge.privacy import METRES_PER_DEGREE, coarsen
from car2mqtt.config import Config
from car2mqtt.models import Location, VehicleRef
from car2mqtt.providers.registry import load_config
from car2mqtt.runtime import Running, running_config
from tests.bridge.conftest import FAST, TOPICS
from tests.mqtt_support import Mosquitto, free_port, retained
from tests.support import Sim, run_cli

pytestmark = pytest.mark.asyncio

T = TypeVar("T")
Fix = tuple[float, float]

# Where the three simulated cars are parked first (Buenos Aires, Santiago, São Paulo).
PARKED: tuple[Fix, ...] = (
    (-34.603722, -58.381592),
    (-33.448891, -70.669266),
    (-23.55052, -46.633308),
)
DRIVE_KM = 1.5
GRID_M = 1000.0
# A zone around the first car (its centre 1.7 km off, 4 km across: the drive ends inside), and
# one far from every car.
OFFICE: dict[str, Any] = {
    "name": "Office",
    "latitude": -34.590022,
    "longitude": -58.390692,
    "radius_m": 4000,
}
GYM: dict[str, Any] = {
    "name": "Gym",
    "latitude": -31.420083,
    "longitude": -64.188776,
    "radius_m": 300,
}
ZONES = (OFFICE, GYM)
NEAR_DEG = 0.5  # a number this close to a car's latitude or longitude is taken for one
# A number with two decimals or more: a position to ~1 km or better.
NUMBER = re.compile(r"-?\d+\.\d{2,}")


def ref(vehicle_id: str) -> VehicleRef:
    return VehicleRef("enode", "home", vehicle_id)


# ---- running the bridge --------------------------------------------------------------------


def write_config(
    tmp_path: Path,
    sim: Sim,
    broker: Mosquitto,
    privacy: dict[str, Any] | None = None,
    **top: Any,
) -> Path:
    """Write a configuration with one Enode account `home` on the simulator (JSON is YAML)."""
    creds = sim.info["enode"]
    account: dict[str, Any] = {
        "name": "home",
        "provider": "enode",
        "api_url": creds["apiUrl"],
        "token_url": creds["tokenUrl"],
        "client_id": creds["clientId"],
        "client_secret": creds["clientSecret"],
        "user_id": "demo",
    }
    if privacy is not None:
        account["privacy"] = privacy
    document = {
        "mqtt": {"url": broker.url, "client_id": f"car2mqtt-privacy-{free_port()}"},
        "store": str(tmp_path / "car2mqtt.db"),
        "web": {"host": "127.0.0.1", "port": 0},
        "zones": list(ZONES),
        "accounts": [account],
        **top,
    }
    path = tmp_path / "car2mqtt.yaml"
    path.write_text(json.dumps(document))
    return path


@contextlib.asynccontextmanager
async def bridge(config: Config) -> AsyncIterator[Running]:
    """Run the bridge `config` describes, polling fast, until its history is ready."""
    intervals = {a.name: FAST.poll_interval_s for a in config.accounts}
    async with running_config(config, timing=FAST, poll_intervals=intervals) as run:
        assert run.history is not None
        await asyncio.wait_for(run.history.ready.wait(), 10)
        yield run


async def until(check: Callable[[], Awaitable[T | None]], what: str, timeout: float = 20.0) -> T:
    """Wait until `await check()` gives something; return it (an error after `timeout`)."""
    try:
        async with asyncio.timeout(timeout):
            while (found := await check()) is None:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None
    return found


async def admin(sim: Sim, method: str, path: str, body: Any = None) -> None:
    """Call the simulator's admin API off the bridge's loop."""
    answer = await asyncio.to_thread(sim.admin_call, method, path, body)
    assert answer.is_success, answer.text


async def truth(sim: Sim, vehicle: str) -> dict[str, Any]:
    """Let Enode's cache take the car's truth now (the clock stands still); return it."""
    await asyncio.to_thread(sim.refresh, vehicle)
    live: dict[str, Any] = await asyncio.to_thread(sim.live, vehicle)
    return live


def fix_of(live: dict[str, Any]) -> Fix:
    """The car's position as the cloud reports it (to six decimals): the exact one."""
    where = live["cached"]["location"]
    return (float(where["latitude"]), float(where["longitude"]))


async def park_everywhere(sim: Sim) -> dict[str, Fix]:
    """Park each car at its place of `PARKED`; return the places by vehicle id."""
    fixes = {}
    for vehicle, (lat, lon) in zip(sim.vehicle_ids(), PARKED, strict=True):
        await admin(
            sim, "PUT", f"/enode/vehicles/{vehicle}/location", {"latitude": lat, "longitude": lon}
        )
        live = await truth(sim, vehicle)
        assert fix_of(live) == (lat, lon)
        fixes[vehicle] = (lat, lon)
    return fixes


def rows(path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run one query on the SQLite file at `path` (which another connection may be writing)."""
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        return db.execute(sql, args).fetchall()


async def one_row(path: Path, sql: str, *args: Any) -> tuple[Any, ...] | None:
    found = await asyncio.to_thread(rows, path, sql, *args)
    return found[0] if found else None


@dataclass
class Drove:
    """Where the car that drove and charged was: before the drive, and after it."""

    start: Fix
    end: Fix


async def drive_and_charge(sim: Sim, history: Path, vehicle: str, start: Fix) -> Drove:
    """Drive the car `DRIVE_KM`, let it stand, charge it a little, unplug: a trip and a session."""
    key = f"enode_{vehicle}"
    # The bridge has seen the car parked (a sample of it is recorded).
    await until(lambda: one_row(history, "SELECT at FROM samples WHERE key = ?", key), "a sample")
    await admin(
        sim, "POST", f"/enode/vehicles/{vehicle}/drive", {"speedKmh": 50, "distanceKm": DRIVE_KM}
    )
    await asyncio.to_thread(sim.advance, 300)  # arrived: 1.5 km at 50 km/h is under 2 minutes
    end = fix_of(await truth(sim, vehicle))
    assert end != start
    await until(lambda: one_row(history, "SELECT id FROM trips WHERE key = ?", key), "a trip")
    await asyncio.to_thread(sim.advance, 1200)  # standing for 20 minutes: the trip is over
    await truth(sim, vehicle)
    ended = "SELECT id FROM trips WHERE key = ? AND ended_at IS NOT NULL"
    await until(lambda: one_row(history, ended, key), "the trip ended")
    await admin(sim, "POST", f"/enode/vehicles/{vehicle}/plug-in", {"startCharging": True})
    await truth(sim, vehicle)
    await until(lambda: one_row(history, "SELECT id FROM sessions WHERE key = ?", key), "a session")
    await asyncio.to_thread(sim.advance, 600)
    await truth(sim, vehicle)
    await admin(sim, "POST", f"/enode/vehicles/{vehicle}/unplug")
    assert fix_of(await truth(sim, vehicle)) == end
    closed = "SELECT id FROM sessions WHERE key = ? AND ended_at IS NOT NULL"
    await until(lambda: one_row(history, closed, key), "the session ended")
    return Drove(start, end)


async def web_pages(run: Running) -> dict[str, str]:
    """Every page the web UI links from its overview (GET pages only), by path."""
    assert run.web_url is not None
    pages: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=run.web_url, timeout=10) as client:
        todo = ["/"]
        while todo:
            path = todo.pop()
            answer = await client.get(path)
            assert answer.status_code == 200, (path, answer.status_code)
            pages[path] = answer.text
            for link in re.findall(r'href="(/[^"#?]*)', answer.text):
                if link not in pages and link not in todo and not link.startswith("/static"):
                    todo.append(link)
    assert any(p.startswith("/cars/") for p in pages), sorted(pages)
    return pages


# ---- reading what is left ------------------------------------------------------------------


def database_text(path: Path) -> str:
    """Every value of every table of the SQLite file at `path`, one row a line."""
    lines = []
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert tables, path
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - its own tables
                cells = [
                    v.decode(errors="replace") if isinstance(v, bytes) else repr(v) for v in row
                ]
                lines.append(f"{table}: {' | '.join(cells)}")
    return "\n".join(lines)


def log_text(records: Iterable[logging.LogRecord]) -> str:
    """The bridge's log lines (not the simulator's: it is the cloud, and knows the truth)."""
    form = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(form.format(r) for r in records if not r.name.startswith("car2mqtt.simulator"))


def retained_text(kept: dict[str, bytes]) -> str:
    return "\n".join(f"{t} {p.decode(errors='replace')}" for t, p in kept.items())


@dataclass
class Outputs:
    """Everything the run left, as text, by where it was found."""

    texts: dict[str, str]

    def near(self, fixes: Iterable[Fix]) -> list[tuple[str, str]]:
        """Every (where, number) that could be a coordinate of one of `fixes`."""
        points = list(fixes)
        found = []
        for where, text in self.texts.items():
            for match in NUMBER.finditer(text):
                value = abs(float(match[0]))
                if zone_centre(match[0]):
                    continue
                if any(abs(value - abs(c)) < NEAR_DEG for point in points for c in point):
                    found.append((where, match[0]))
        return found

    def containing(self, needles: Iterable[str]) -> list[tuple[str, str]]:
        """Every (where, needle) for a needle found in a text as the start of a number."""
        found = []
        for needle in needles:
            pattern = re.compile(rf"(?<![\d.]){re.escape(needle.lstrip('-'))}")
            for where, text in self.texts.items():
                if pattern.search(NUMBER.sub(_no_zone_centre, text)):
                    found.append((where, needle))
        return found


def _no_zone_centre(match: re.Match[str]) -> str:
    return "" if zone_centre(match[0]) else match[0]


def zone_centre(number: str) -> bool:
    """Whether `number` is a zone's configured centre, to four decimals or more.

    The configuration page shows the zones: their centres are the user's, not the car's.
    """
    decimals = len(number.partition(".")[2])
    if decimals < 4:
        return False
    value = float(number)
    centres = [z[c] for z in ZONES for c in ("latitude", "longitude")]
    return any(abs(value - float(c)) <= 0.5 * 10**-decimals + 1e-12 for c in centres)


def decimals_of(value: float, places: Sequence[int]) -> set[str]:
    """`value` rounded and truncated to each of `places` decimals, as text."""
    out = set()
    for n in places:
        out.add(f"{value:.{n}f}")
        out.add(f"{math.trunc(value * 10**n) / 10**n:.{n}f}")
    return out


def on_grid(number: str, cars: Iterable[Sequence[Fix]]) -> bool:
    """Whether `number`, a latitude or longitude near one of `cars`, is one of the grid's.

    A number near a car's latitude must be a latitude of the `GRID_M` grid; near its longitude,
    a longitude of the grid's rows the car may be on (each row has a step of its own, and a
    car that drove may have been seen anywhere on its way: three rows either side of where it
    was known to be). Grid points are published to six decimals and may be shown to fewer.
    """
    decimals = len(number.partition(".")[2])
    value = abs(float(number))
    lat_step = GRID_M / METRES_PER_DEGREE
    steps: set[float] = set()
    for fixes in cars:
        if any(abs(value - abs(lat)) < NEAR_DEG for lat, _ in fixes):
            steps.add(lat_step)
        if any(abs(value - abs(lon)) < NEAR_DEG for _, lon in fixes):
            rows = {g.latitude for f in fixes if (g := coarsen(Location(*f), GRID_M))}
            for row in rows:
                for n in range(-3, 4):
                    shrink = max(math.cos(math.radians(row + n * lat_step)), 0.01)
                    steps.add(lat_step / shrink)
    nearest = (round(round(value / step) * step, 6) for step in steps)
    return any(abs(value - point) <= 0.5 * 10**-decimals + 1e-9 for point in nearest)


# ---- 1: every output, in every mode --------------------------------------------------------

MODES: dict[str, dict[str, Any]] = {
    "exact": {"location": "exact"},
    "coarse": {"location": "coarse", "grid_m": int(GRID_M)},
    "zone": {"location": "zone"},
    "off": {"location": "off"},
}


@pytest.mark.parametrize("mode", list(MODES))
async def test_no_output_holds_more_of_a_position_than_the_mode_allows(
    mode: str,
    sim: Sim,
    mosquitto: Mosquitto,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="car2mqtt")
    parked = await park_everywhere(sim)
    tesla = next(iter(parked))
    assert not (await truth(sim, tesla))["pluggedIn"]
    path = write_config(tmp_path, sim, mosquitto, MODES[mode])
    config = load_config(path, env={})
    history = config.history.sqlite_path(config.store)
    assert history is not None
    location = {v: TOPICS.location(ref(v)) for v in parked}
    async with bridge(config) as run:
        drove = await drive_and_charge(sim, history, tesla, parked[tesla])
        fixes = {**parked, tesla: drove.end}
        expected = {v: shown(mode, fixes[v], v == tesla) for v in parked}
        kept = await until(lambda: locations_are(mosquitto, location, expected), "the locations")
        pages = await web_pages(run)
    kept = await retained(mosquitto.port)
    export = run_cli("history", "export", "--config", str(path))
    assert export.returncode == 0, export.stderr
    out = Outputs(
        {
            "mqtt": retained_text(kept),
            "history": database_text(history),
            "state file": database_text(config.store),
            "log": log_text(caplog.records),
            "export": export.stdout + export.stderr,
            **{f"web {p}": html for p, html in pages.items()},
        }
    )
    every_fix = [*fixes.values(), drove.start]
    trip = rows(
        history,
        "SELECT start_latitude, start_longitude, start_zone, end_latitude, "
        "end_longitude, end_zone FROM trips WHERE key = ?",
        f"enode_{tesla}",
    )
    session = rows(
        history, "SELECT latitude, longitude, zone FROM sessions WHERE key = ?", f"enode_{tesla}"
    )
    assert len(trip) == 1
    assert len(session) == 1
    tracker = json.loads(kept[TOPICS.device_config(ref(tesla))])["components"]["location"]
    if mode == "exact":
        # What the scan looks for is there: it is not blind.
        assert ("mqtt", repr(drove.end[0])) in out.near(every_fix)
        assert ("history", repr(drove.start[0])) in out.near(every_fix)
        assert trip == [(*drove.start, "Office", *drove.end, "Office")]
        assert session == [(*drove.end, "Office")]
        assert tracker["json_attributes_topic"] == location[tesla]
    elif mode == "coarse":
        start, end = (coarsen(Location(*f), GRID_M) for f in (drove.start, drove.end))
        assert start is not None
        assert end is not None
        assert trip == [
            (start.latitude, start.longitude, "Office", end.latitude, end.longitude, "Office")
        ]
        assert session == [(end.latitude, end.longitude, "Office")]
        published = json.loads(kept[location[tesla]])
        assert set(published) == {"latitude", "longitude", "gps_accuracy", "updated_at"}
        assert published["gps_accuracy"] == 707  # half the diagonal of a 1 km cell
        cars = [[f, drove.start] if v == tesla else [f] for v, f in fixes.items()]
        off_grid = [(w, n) for w, n in out.near(every_fix) if not on_grid(n, cars)]
        assert off_grid == [], off_grid
        assert out.near(every_fix), "the scan finds the grid points"
        exact = {s for f in every_fix for c in f for s in decimals_of(c, (4, 5, 6))}
        assert out.containing(exact) == []
    else:
        assert out.near(every_fix) == []
        rough = {s for f in every_fix for c in f for s in decimals_of(c, (2, 3))}
        assert out.containing(rough) == []
        if mode == "zone":
            assert trip == [(None, None, "Office", None, None, "Office")]
            assert session == [(None, None, "Office")]
            assert tracker["state_topic"] == location[tesla]
        else:
            assert trip == [(None, None, None, None, None, None)]
            assert session == [(None, None, None)]
            assert tracker == {"platform": "device_tracker"}


def shown(mode: str, fix: Fix, in_office: bool) -> bytes | None:
    """What the car's location topic keeps in `mode` (None: nothing)."""
    if mode == "off":
        return None
    if mode == "zone":
        return b"Office" if in_office else b"not_home"
    if mode == "coarse":
        grid = coarsen(Location(*fix), GRID_M)
        assert grid is not None
        fix = (grid.latitude, grid.longitude)
    return json.dumps(list(fix)).encode()


async def locations_are(
    broker: Mosquitto, topics: dict[str, str], expected: dict[str, bytes | None]
) -> dict[str, bytes] | None:
    """The retained messages once each car's location topic keeps what `expected` says."""
    kept = await retained(broker.port, settle=0.2)
    for vehicle, topic in topics.items():
        want, got = expected[vehicle], kept.get(topic)
        if want is None or got is None or not got.startswith(b"{"):
            if got != want:
                return None
            continue
        payload = json.loads(got)
        if json.dumps([payload["latitude"], payload["longitude"]]).encode() != want:
            return None
    return kept


# ---- 2: a car switched from exact to zone --------------------------------------------------


async def test_a_car_switched_from_exact_to_zone_leaves_no_coordinates_retained(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    parked = await park_everywhere(sim)
    tesla, *others = parked
    topic = TOPICS.location(ref(tesla))
    config = load_config(write_config(tmp_path, sim, mosquitto), env={})

    async def exact_kept() -> dict[str, bytes] | None:
        kept = await retained(mosquitto.port, settle=0.2)
        got = [kept.get(TOPICS.location(ref(v)), b"{}") for v in parked]
        fixes = [(p.get("latitude"), p.get("longitude")) for p in map(json.loads, got)]
        return kept if fixes == list(parked.values()) else None

    async with bridge(config):
        before = await until(exact_kept, "every car's exact position retained")
    assert Outputs({"mqtt": retained_text(before)}).near([parked[tesla]])  # there, to begin with
    # The same state file and broker; only the first car (by its id) is now `zone`.
    privacy = {"location": "exact", "cars": {tesla: "zone"}}
    config = load_config(write_config(tmp_path, sim, mosquitto, privacy), env={})

    async def zoned() -> dict[str, bytes] | None:
        kept = await retained(mosquitto.port, settle=0.2)
        device = json.loads(kept.get(TOPICS.device_config(ref(tesla)), b"{}"))
        tracker = device.get("components", {}).get("location", {})
        return kept if kept.get(topic) == b"Office" and "state_topic" in tracker else None

    async with bridge(config):
        await until(zoned, "the zone's name and its tracker retained")
        kept = await retained(mosquitto.port)
    assert kept[topic] == b"Office"
    assert Outputs({"mqtt": retained_text(kept)}).near([parked[tesla]]) == []
    rough = {s for c in parked[tesla] for s in decimals_of(c, (2, 3, 4, 5, 6))}
    assert Outputs({"mqtt": retained_text(kept)}).containing(rough) == []
    tracker = json.loads(kept[TOPICS.device_config(ref(tesla))])["components"]["location"]
    assert tracker["state_topic"] == topic
    assert (tracker["payload_home"], tracker["payload_not_home"]) == ("home", "not_home")
    assert "json_attributes_topic" not in tracker
    # The other cars kept their mode: exact, a GPS tracker.
    for vehicle in others:
        payload = json.loads(kept[TOPICS.location(ref(vehicle))])
        assert (payload["latitude"], payload["longitude"]) == parked[vehicle]
        theirs = json.loads(kept[TOPICS.device_config(ref(vehicle))])["components"]["location"]
        assert theirs["json_attributes_topic"] == TOPICS.location(ref(vehicle))


# ---- 3: the VIN ----------------------------------------------------------------------------


@pytest.mark.parametrize("expose_vin", [False, True])
async def test_the_vin_is_in_no_output_but_the_discovery_it_is_exposed_to(
    expose_vin: bool,
    sim: Sim,
    mosquitto: Mosquitto,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="car2mqtt")
    parked = await park_everywhere(sim)
    tesla = next(iter(parked))
    vins = {v: sim.live(v)["cached"]["information"]["vin"] for v in parked}
    assert all(len(vin) == 17 for vin in vins.values()), vins
    # expose_vin: false is the default; true puts it in Home Assistant's device, and only there.
    vin_setting: dict[str, Any] = {"expose_vin": True} if expose_vin else {}
    path = write_config(tmp_path, sim, mosquitto, **vin_setting)
    config = load_config(path, env={})
    assert config.expose_vin is expose_vin
    history = config.history.sqlite_path(config.store)
    assert history is not None
    async with bridge(config) as run:
        await drive_and_charge(sim, history, tesla, parked[tesla])
        pages = await web_pages(run)
        # The bridge knows each car's VIN: it keeps it from every output.
        known = {
            v.state.ref.vehicle_id: v.state.info.vin
            for a in run.bridge.hub.accounts()
            for v in a.vehicles.values()
        }
        assert known == vins
    kept = await retained(mosquitto.port)
    export = run_cli("history", "export", "--config", str(path))
    assert export.returncode == 0, export.stderr
    assert f"enode_{tesla}" in export.stdout, export.stdout  # the trip and the session
    outputs = {
        "log": log_text(caplog.records),
        "export": export.stdout + export.stderr,
        **{f"web {p}": html for p, html in pages.items()},
    }
    for vehicle, vin in vins.items():
        device = json.loads(kept[TOPICS.device_config(ref(vehicle))])
        assert device["device"].pop("serial_number", None) == (vin if expose_vin else None)
        kept[TOPICS.device_config(ref(vehicle))] = json.dumps(device).encode()
    outputs["mqtt"] = retained_text(kept)  # with the one place expose_vin allows taken out
    leaks = [
        (where, vin) for where, text in outputs.items() for vin in vins.values() if vin in text
    ]
    assert leaks == []
