"""Both history backends, against a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from car2mqtt.errors import StoreError
from car2mqtt.history.model import EnergySource
from car2mqtt.history.postgres import PostgresHistory
from car2mqtt.history.records import HistoryBackend, Sample, Session, Totals, Trip
from car2mqtt.history.schema import VERSION
from car2mqtt.history.sqlite import SqliteHistory
from tests.history.conftest import PG_PASSWORD, backend_for

SESSION = Session(
    id="s1",
    key="enode_car",
    started_at=1000.0,
    energy_kwh=3.5,
    energy_source=EnergySource.SOC,
    soc_from=40.0,
    soc_to=45.0,
    peak_kw=11.0,
    spans=1,
    latitude=59.9,
    longitude=10.7,
    by_command=True,
)
TRIP = Trip(id="t1", key="enode_car", started_at=500.0, ended_at=900.0, distance_km=12.5)


async def test_rows_come_back_as_they_were_written(backend: HistoryBackend) -> None:
    samples = [Sample("enode_car", 1000.0 + i, 40.0 + i, 300.0, 1000.0) for i in range(3)]
    await backend.write([SESSION, TRIP, *samples, Totals("enode_car", 3.5)])
    assert await backend.sessions() == [SESSION]
    assert await backend.open_sessions() == [SESSION]
    assert await backend.trips("enode_car") == [TRIP]
    assert await backend.open_trips() == []
    assert await backend.samples("enode_car", 1001.0) == samples[1:]
    assert await backend.totals() == [Totals("enode_car", 3.5)]
    assert await backend.sessions("other") == []
    assert await backend.sessions(since=1001.0) == []


async def test_a_session_is_updated_in_place_and_the_total_never_goes_down(
    backend: HistoryBackend,
) -> None:
    await backend.write([SESSION, Totals("enode_car", 3.5)])
    done = replace(SESSION, ended_at=5000.0, energy_kwh=20.0, energy_source=EnergySource.CLOUD)
    await backend.write([done, Totals("enode_car", 20.0), Totals("enode_car", 12.0)])
    assert await backend.sessions() == [done]
    assert await backend.open_sessions() == []
    assert await backend.totals() == [Totals("enode_car", 20.0)]


async def test_prune_keeps_what_is_recent_and_what_is_open(backend: HistoryBackend) -> None:
    old = replace(SESSION, id="old", started_at=10.0, ended_at=20.0)
    still_open = replace(SESSION, id="open", started_at=10.0)
    await backend.write(
        [
            old,
            still_open,
            SESSION,
            Sample("enode_car", 5.0, 1, 1, 1),
            Sample("enode_car", 50, 1, 1, 1),
        ]
    )
    gone = await backend.prune(samples_before=40.0, sessions_before=100.0, trips_before=None)
    assert gone == 2
    assert {s.id for s in await backend.sessions()} == {"open", "s1"}
    assert [s.at for s in await backend.samples("enode_car", 0)] == [50.0]


async def test_opening_again_migrates_nothing_twice(history_url: str) -> None:
    for _ in range(2):
        again = backend_for(history_url)
        await again.open()
        await again.write([SESSION])
        await again.close()
    if history_url.startswith("sqlite"):
        path = history_url.removeprefix("sqlite://")
        versions = sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchall()
    else:
        with psycopg.connect(history_url) as db:
            versions = db.execute("SELECT version FROM schema_version").fetchall()
    assert [v[0] for v in versions] == [VERSION]


async def test_the_sqlite_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    history = SqliteHistory(tmp_path / "deep" / "history.db")
    await history.open()
    await history.write([SESSION])
    await history.close()
    mode = stat.S_IMODE((tmp_path / "deep" / "history.db").stat().st_mode)
    assert mode == 0o600
    journal = sqlite3.connect(tmp_path / "deep" / "history.db").execute("PRAGMA journal_mode")
    assert journal.fetchone()[0] == "wal"


async def test_an_unreachable_postgresql_is_a_store_error_without_the_password(
    postgres_server: str,
) -> None:
    port = postgres_server.rsplit(":", 1)[1]
    wrong = PostgresHistory(f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:{port}/nowhere_db")
    with pytest.raises(StoreError) as caught:
        await wrong.open()
    assert "nowhere_db" in str(caught.value)
    assert PG_PASSWORD not in str(caught.value)
    assert "does not exist" in str(caught.value)
    assert wrong.describe() == f"PostgreSQL postgresql://127.0.0.1:{port}/nowhere_db"


async def test_two_processes_opening_a_new_file_at_once_both_find_the_schema(
    tmp_path: Path,
) -> None:
    path = tmp_path / "history.db"
    first, second = SqliteHistory(path), SqliteHistory(path)
    await asyncio.gather(first.open(), second.open())
    await first.write([SESSION])
    assert await second.sessions() == [SESSION]
    await first.close()
    await second.close()
    versions = sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchall()
    assert versions == [(VERSION,)]


async def test_each_cars_last_session_and_trip(backend: HistoryBackend) -> None:
    older = replace(SESSION, id="a", started_at=10.0, ended_at=20.0)
    newer = replace(SESSION, id="b", started_at=30.0, ended_at=40.0)
    other = replace(SESSION, id="c", key="enode_other", started_at=5.0, ended_at=6.0)
    still_open = replace(SESSION, id="d", started_at=50.0)
    trips = [replace(TRIP, id="t0", ended_at=800.0), TRIP, replace(TRIP, id="t2", ended_at=None)]
    await backend.write([older, newer, other, still_open, *trips])
    assert sorted(s.id for s in await backend.last_sessions()) == ["b", "c"]
    assert [t.id for t in await backend.last_trips()] == ["t1"]
    assert [t.id for t in await backend.open_trips()] == ["t2"]
    gone = await backend.prune(samples_before=None, sessions_before=None, trips_before=850.0)
    assert gone == 1
    assert sorted(t.id for t in await backend.trips()) == ["t1", "t2"]
