"""A car's history on its page: sessions, trips and energy per day, from the bridge's database.

The bridge runs for real (the simulator, mosquitto, its own history recorder); the tests write
rows into its history file through a second `SqliteHistory`, as a second process would (WAL),
and read the car's page over HTTP, and once in Chromium.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from car2mqtt.config import Config
from car2mqtt.history.model import EnergySource
from car2mqtt.history.records import Session, Trip, Write
from car2mqtt.history.sqlite import SqliteHistory
from car2mqtt.models import VehicleRef
from car2mqtt.providers.registry import load_config
from car2mqtt.runtime import Running
from tests.mqtt_support import Mosquitto
from tests.support import Sim
from tests.web.conftest import enode_account, get, ui_config, ui_for, until_read


def noon(days_ago: int) -> float:
    """Local noon, `days_ago` days before today: never on a day's edge."""
    day = date.today() - timedelta(days=days_ago)
    return datetime.combine(day, time(12)).astimezone().timestamp()


def local_clock(at: float) -> str:
    """A moment as the page writes it: local time with its offset."""
    moment = datetime.fromtimestamp(at).astimezone()
    return f"{moment:%Y-%m-%d %H:%M} {moment.isoformat(timespec='minutes')[16:]}"


def session(
    name: str, key: str, days_ago: int, kwh: float, *, ended: bool = True, **extra: Any
) -> Session:
    """A session started at local noon `days_ago` days ago, two hours long unless open."""
    start = noon(days_ago)
    base = Session(name, key, start, start + 7200 if ended else None, energy_kwh=kwh)
    return replace(base, **extra)


SESSION_KWH = {2: (10.0, 5.0), 5: (20.0,), 0: (3.0,), 40: (50.0,)}  # days ago -> sessions


def sessions_of(key: str) -> list[Session]:
    """Five sessions: two on one day, one at home by command, one open today, one too old."""
    return [
        session("a", key, 2, 10.0, energy_source=EnergySource.RATE, peak_kw=7.4, mean_kw=7.0),
        session("b", key, 2, 5.0, soc_from=60.0, soc_to=70.0),
        session(
            "c", key, 5, 20.0, zone="home", latitude=48.8566, longitude=2.3522, by_command=True
        ),
        session("d", key, 0, 3.0, ended=False, latitude=48.1, longitude=11.5),
        session("e", key, 40, 50.0, energy_source=EnergySource.CLOUD),
    ]


def trips_of(key: str) -> list[Trip]:
    """25 trips, one a day: the page lists the 20 newest."""
    return [
        Trip(
            f"trip-{n:02d}",
            key,
            noon(n) - 3600,
            noon(n) - 3600 + 1500,
            distance_km=10.0 + n,
            start_latitude=48.85,
            start_longitude=2.35,
            end_latitude=48.9,
            end_longitude=2.4,
        )
        for n in range(1, 26)
    ]


async def write_history(config: Config, rows: Sequence[Write]) -> None:
    """Write `rows` into the running bridge's history file, from a connection of our own."""
    path = config.history.sqlite_path(config.store)
    assert path is not None
    history = SqliteHistory(path)
    await history.open()
    try:
        await history.write(rows)
    finally:
        await history.close()


async def recording(run: Running) -> None:
    """Wait until the bridge's recorder has opened (and migrated) its database."""
    assert run.history is not None
    await asyncio.wait_for(run.history.ready.wait(), 10)
    await until_read(run)


class Tables(HTMLParser):
    """Every table of a page with an id: its body's rows, as the cells' text."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id")
            if self._table:
                self.tables[self._table] = []
        elif tag == "tbody":
            self._body = True
        elif self._table and self._body and tag == "tr":
            self.tables[self._table].append([])
        elif self._table and self._body and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag == "tbody":
            self._body = False
        elif tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables_of(html: str) -> dict[str, list[list[str]]]:
    """Every table of `html` with an id, by id."""
    parser = Tables()
    parser.feed(html)
    return parser.tables


def months_line(by_day: dict[int, tuple[float, ...]]) -> str:
    """What the page should say per month: each month the last 30 days touch, oldest first."""
    today = date.today()
    months: list[tuple[int, int]] = []
    for back in range(29, -1, -1):
        day = today - timedelta(days=back)
        if (day.year, day.month) not in months:
            months.append((day.year, day.month))
    said = []
    for year, month in months:
        total = sum(
            sum(kwh)
            for back, kwh in by_day.items()
            if ((d := today - timedelta(days=back)).year, d.month) == (year, month)
        )
        so_far = " (so far)" if (year, month) == (today.year, today.month) else ""
        said.append(f"{date(year, month, 1):%B %Y}: {total:.1f} kWh{so_far}")
    return "By month: " + " · ".join(said)


async def test_a_car_page_shows_its_sessions_trips_and_energy_per_day(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = ui_config(tmp_path, mosquitto, [enode_account(sim)])
    tesla = VehicleRef("enode", "home", sim.vehicle_ids()[0]).key
    async with ui_for(config) as run:
        await recording(run)
        await write_history(config, [*sessions_of(tesla), *trips_of(tesla)])
        answer = await get(f"{run.web_url}/cars/{tesla}")
    assert answer.status_code == 200
    html = answer.text
    tables = tables_of(html)
    # Newest first: the open one (today), the two of two days ago, home, the old one.
    sessions = tables["sessions"]
    assert [row[3] for row in sessions] == ["3.0", "5.0", "10.0", "20.0", "50.0"]
    today, second, first, home, old = sessions
    assert today[0] == local_clock(noon(0))
    assert (today[1], today[2], today[8]) == ("plugged in", "", "48.10000, 11.50000")
    assert second[5] == "60 → 70 %"
    assert first[1:3] == [local_clock(noon(2) + 7200), "2 h 00 min"]
    assert (first[4], first[6], first[7]) == ("charge rate", "7.4", "7.0")
    assert (home[8], home[9]) == ("home", "yes")
    assert (old[4], old[9]) == ("cloud", "no")
    # The 20 newest trips of 25, newest first.
    trips = tables["trips"]
    assert [row[3] for row in trips] == [f"{10.0 + n:.1f}" for n in range(1, 21)]
    assert trips[0] == [
        local_clock(noon(1) - 3600),
        local_clock(noon(1) - 3600 + 1500),
        "25 min",
        "11.0",
        "48.85000, 2.35000",
        "48.90000, 2.40000",
        "derived",
    ]
    # Energy per day: a bar for each of the three days with a session in the last 30.
    days = {n: (date.today() - timedelta(days=n)).isoformat() for n in (0, 2, 5)}
    for n, kwh in ((0, 3.0), (2, 15.0), (5, 20.0)):
        assert f"<title>{days[n]}: {kwh:.1f} kWh</title>" in html
    assert html.count('class="bar"') == 3
    assert (
        "Energy charged over the last 30 days: 38.0 kWh on 3 days; the most, 20.0 kWh, on "
        f"{days[5]}." in html
    )
    assert "top line 20 kWh, middle 10 kWh" in html
    assert months_line(SESSION_KWH) in html
    # Accessible: headers with scope, the chart named by its caption, tables by their heading.
    assert '<table class="history" id="sessions" aria-labelledby="sessions-heading">' in html
    assert '<th scope="col">kWh</th>' in html
    assert 'role="img" aria-labelledby="energy-summary"' in html
    assert '<figcaption id="energy-summary">' in html


async def test_a_car_without_history_yet_says_so(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = ui_config(tmp_path, mosquitto, [enode_account(sim)])
    tesla = VehicleRef("enode", "home", sim.vehicle_ids()[0]).key
    async with ui_for(config) as run:
        await recording(run)
        html = (await get(f"{run.web_url}/cars/{tesla}")).text
    assert "No charging sessions recorded yet." in html
    assert "No trips recorded yet." in html
    assert "No energy charged in the last 30 days." in html
    assert 'class="bar"' not in html


async def test_a_failing_history_database_leaves_the_rest_of_the_page(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = ui_config(tmp_path, mosquitto, [enode_account(sim)])
    tesla = VehicleRef("enode", "home", sim.vehicle_ids()[0]).key
    path = config.history.sqlite_path(config.store)
    assert path is not None
    async with ui_for(config) as run:
        await recording(run)
        # Someone else's hand in the file: the sessions table is gone.
        with sqlite3.connect(path) as db:
            db.execute("DROP TABLE sessions")
        db.close()
        answer = await get(f"{run.web_url}/cars/{tesla}")
        overview = await get(f"{run.web_url}/")
    assert answer.status_code == 200
    assert "History cannot be read now" in answer.text
    assert "Charging sessions" not in answer.text
    assert '<td data-value="Battery">' in answer.text  # the car's values are all there
    assert overview.status_code == 200


async def test_history_off_shows_none_of_it(sim: Sim, mosquitto: Mosquitto, tmp_path: Path) -> None:
    config = ui_config(tmp_path, mosquitto, [enode_account(sim)])
    written = tmp_path / "car2mqtt.yaml"
    document = json.loads(written.read_text())
    written.write_text(json.dumps({**document, "history": {"enabled": False}}))
    config = load_config(written, env={})
    tesla = VehicleRef("enode", "home", sim.vehicle_ids()[0]).key
    async with ui_for(config) as run:
        assert run.history is None
        await until_read(run)
        answer = await get(f"{run.web_url}/cars/{tesla}")
    assert answer.status_code == 200
    for absent in ("Charging sessions", "Trips", "Energy charged", "History cannot be read"):
        assert absent not in answer.text
    assert "Battery, last 24 hours" in answer.text


async def test_the_sessions_table_and_the_energy_chart_in_a_browser(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, page: Page
) -> None:
    config = ui_config(tmp_path, mosquitto, [enode_account(sim)])
    tesla = VehicleRef("enode", "home", sim.vehicle_ids()[0]).key
    async with ui_for(config) as run:
        await recording(run)
        await write_history(config, [*sessions_of(tesla), *trips_of(tesla)])
        await page.goto(f"{run.web_url}/")
        await page.get_by_role("link", name="Tesla Model 3").click()
        sessions = page.get_by_role("table", name="Charging sessions")
        await expect(sessions).to_be_visible()
        await expect(sessions.get_by_role("row")).to_have_count(6)  # a header and 5 sessions
        await expect(sessions.get_by_role("columnheader", name="kWh")).to_be_visible()
        home = sessions.get_by_role("row").filter(has_text="home")
        await expect(home).to_have_count(1)
        await expect(home.get_by_role("cell").last).to_have_text("yes")  # by command
        trips = page.get_by_role("table", name="Trips")
        await expect(trips.get_by_role("row")).to_have_count(21)
        chart = page.get_by_role("img", name="Energy charged over the last 30 days")
        await expect(chart).to_be_visible()
        await expect(chart.locator("rect.bar")).to_have_count(3)
        box = await chart.bounding_box()
        for _ in range(50):  # a live update may be swapping the chart in just now
            if box is not None:
                break
            await asyncio.sleep(0.1)
            box = await chart.bounding_box()
        assert box is not None
        assert box["width"] > 300
        assert box["height"] > 100
        await expect(page.locator("#energy-months")).to_contain_text("kWh (so far)")
