"""`car2mqtt history`: a real SQLite history file, filled through the backend, read by the CLI.

Each test writes rows with `SqliteHistory.write` and names with the state file's own methods,
then runs `car2mqtt history ...` in a subprocess as users do, in a fixed time zone (a POSIX
TZ rule: Central European Time, +01:00 in November) so local times are known.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sqlite3
import stat
import subprocess
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pytest

from car2mqtt.history.model import EnergySource
from car2mqtt.history.records import Session, Trip, Write
from car2mqtt.history.sqlite import SqliteHistory
from car2mqtt.store import Store
from tests.mqtt_support import free_port
from tests.support import CLI

CET = "CET-1CEST,M3.5.0,M10.5.0/3"
TESLA, ID4 = "enode_tesla1", "enode_id4"
VIN = "5YJ3E1EA7KF317000"


def at(text: str) -> float:
    """Epoch seconds of an ISO time with its offset."""
    return datetime.fromisoformat(text).timestamp()


SESSIONS = (
    Session(
        "s-old",
        TESLA,
        at("2026-10-20T12:00+02:00"),
        at("2026-10-20T13:00+02:00"),
        energy_kwh=12.0,
        energy_source=EnergySource.CLOUD,
        charging_s=3600,
        spans=1,
    ),
    Session(
        "s-home",
        TESLA,
        at("2026-11-01T08:00+01:00"),
        at("2026-11-01T10:30+01:00"),
        energy_kwh=37.5,
        energy_source=EnergySource.SOC,
        soc_from=20.0,
        soc_to=70.0,
        peak_kw=11.0,
        mean_kw=10.0,
        charging_s=8400,
        spans=2,
        latitude=48.856613,
        longitude=2.352222,
        zone="home",
        by_command=True,
    ),
    Session(
        "s-open",
        ID4,
        at("2026-11-05T19:00+01:00"),
        None,
        energy_kwh=5.25,
        energy_source=EnergySource.RATE,
        peak_kw=7.2,
        charging_s=2700,
        spans=1,
        latitude=48.1,
        longitude=11.5,
    ),
)
TRIPS = (
    Trip(
        "t-work",
        TESLA,
        at("2026-11-02T09:00+01:00"),
        at("2026-11-02T09:45+01:00"),
        distance_km=32.4,
        start_odometer_km=12000.0,
        end_odometer_km=12032.4,
        start_latitude=48.856613,
        start_longitude=2.352222,
        end_latitude=48.9,
        end_longitude=2.4,
    ),
    Trip(
        "t-now",
        ID4,
        at("2026-11-03T17:00+01:00"),
        None,
        start_odometer_km=500.0,
        start_latitude=48.1,
        start_longitude=11.5,
        source="cloud",
    ),
)


def write_history(path: Path, rows: Sequence[Write]) -> None:
    """Write `rows` through the real backend, as the recorder does."""

    async def go() -> None:
        history = SqliteHistory(path)
        await history.open()
        try:
            await history.write(rows)
        finally:
            await history.close()

    asyncio.run(go())


def configuration(tmp_path: Path, **history: object) -> Path:
    """A configuration whose account is never asked anything: history needs no cloud."""
    document = {
        "store": str(tmp_path / "car2mqtt.db"),
        "accounts": [
            {
                "name": "home",
                "provider": "enode",
                "api_url": "http://127.0.0.1:9/enode",
                "token_url": "http://127.0.0.1:9/enode/oauth2/token",
                "client_id": "id",
                "client_secret": "secret",
                "user_id": "demo",
            }
        ],
        **({"history": history} if history else {}),
    }
    path = tmp_path / "car2mqtt.yaml"
    path.write_text(json.dumps(document))
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A configuration, its state file naming two cars, and a history of both."""
    path = configuration(tmp_path)
    with Store.open(tmp_path / "car2mqtt.db") as store:
        store.save_vehicle_names(
            {TESLA: ("Tesla Model 3", "Tesla Model 3"), ID4: ("ID.4", "Volkswagen ID.4")}
        )
        # What else the state file holds of a car (its last state, VIN and all) stays there.
        store.save_state(TESLA, "car2mqtt/home/tesla1/state", {"vin": VIN, "battery": 70})
    write_history(tmp_path / "car2mqtt-history.db", [*SESSIONS, *TRIPS])
    return path


def history(*args: str, tz: str = CET, columns: int = 200) -> subprocess.CompletedProcess[str]:
    """Run `car2mqtt history ARGS` in the time zone `tz`."""
    env = {**os.environ, "COLUMNS": str(columns), "TZ": tz}
    return subprocess.run(  # noqa: PLW1510
        [*CLI, "history", *args], capture_output=True, text=True, timeout=60, env=env
    )


def ok(*args: str, tz: str = CET) -> str:
    """Run a history command that must succeed; return its stdout."""
    result = history(*args, tz=tz)
    assert result.returncode == 0, result.stderr
    assert VIN not in result.stdout + result.stderr
    return result.stdout


def one_line_error(*args: str) -> str:
    """Run a history command that must fail in one line (exit code 2); return that line."""
    result = history(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def table_rows(output: str) -> list[dict[str, str]]:
    """The rows of a rich table as printed, by column name."""

    def cells(line: str, bar: str) -> list[str]:
        return [cell.strip() for cell in line.strip().strip(bar).split(bar)]

    lines = output.splitlines()
    header = next(cells(line, "┃") for line in lines if line.strip().startswith("┃"))
    return [
        dict(zip(header, cells(line, "│"), strict=True))
        for line in lines
        if line.strip().startswith("│")
    ]


def test_sessions_show_as_a_table_in_local_time_oldest_first(config: Path) -> None:
    out = ok("sessions", "--config", str(config))
    rows = table_rows(out)
    assert [row["car"] for row in rows] == ["Tesla Model 3", "Tesla Model 3", "Volkswagen ID.4"]
    old, home, plugged = rows
    assert home == {
        "car": "Tesla Model 3",
        "start": "2026-11-01 08:00 +01:00",
        "end": "2026-11-01 10:30 +01:00",
        "duration": "2 h 30 min",
        "kWh": "37.5",
        "energy from": "battery level",
        "SoC": "20 → 70 %",
        "peak kW": "11.0",
        "mean kW": "10.0",
        "place": "home",
        "by command": "yes",
    }
    # October: summer time, +02:00; the cloud's own figure, no place known.
    assert old["start"] == "2026-10-20 12:00 +02:00"
    assert (old["energy from"], old["place"], old["SoC"]) == ("cloud", "", "")
    assert plugged["end"] == "plugged in"
    assert plugged["duration"] == ""
    assert plugged["place"] == "48.10000, 11.50000"
    assert plugged["by command"] == "no"
    assert "3 sessions, 54.8 kWh" in out
    # The same moments in another zone: local time, with its offset.
    utc = table_rows(ok("sessions", "--config", str(config), tz="UTC0"))
    assert utc[1]["start"] == "2026-11-01 07:00 +00:00"


def test_trips_show_as_a_table(config: Path) -> None:
    out = ok("trips", "--config", str(config))
    work, now = table_rows(out)
    assert work == {
        "car": "Tesla Model 3",
        "start": "2026-11-02 09:00 +01:00",
        "end": "2026-11-02 09:45 +01:00",
        "duration": "45 min",
        "km": "32.4",
        "from": "48.85661, 2.35222",
        "to": "48.90000, 2.40000",
        "source": "derived",
    }
    assert (now["car"], now["end"], now["km"], now["to"], now["source"]) == (
        "Volkswagen ID.4",
        "under way",
        "",
        "",
        "cloud",
    )
    assert "2 trips, 32.4 km" in out


def test_csv_has_a_header_and_iso_times_with_offsets(config: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(ok("sessions", "--format", "csv", "-c", str(config)))))
    assert [r["id"] for r in rows] == ["s-old", "s-home", "s-open"]
    home = rows[1]
    assert home["car"] == "Tesla Model 3"
    assert home["key"] == TESLA
    assert home["started_at"] == "2026-11-01T08:00:00+01:00"
    assert home["ended_at"] == "2026-11-01T10:30:00+01:00"
    assert home["duration_s"] == "9000"
    assert (home["energy_kwh"], home["energy_source"]) == ("37.5", "soc")
    assert (home["soc_from"], home["soc_to"], home["spans"]) == ("20.0", "70.0", "2")
    # Places as recorded, to the full precision.
    assert (home["zone"], home["latitude"], home["longitude"]) == ("home", "48.856613", "2.352222")
    assert home["by_command"] == "true"
    assert rows[2]["ended_at"] == rows[2]["duration_s"] == rows[2]["soc_from"] == ""
    trips = list(csv.DictReader(io.StringIO(ok("trips", "--format", "CSV", "-c", str(config)))))
    assert [(t["id"], t["distance_km"], t["ended_at"]) for t in trips] == [
        ("t-work", "32.4", "2026-11-02T09:45:00+01:00"),
        ("t-now", "", ""),
    ]


def test_json_is_a_list_of_records(config: Path) -> None:
    sessions = json.loads(ok("sessions", "--format", "json", "--config", str(config)))
    home = next(s for s in sessions if s["id"] == "s-home")
    assert home["started_at"] == "2026-11-01T08:00:00+01:00"
    assert home["energy_kwh"] == 37.5
    assert home["by_command"] is True
    assert home["duration_s"] == 9000
    assert [s["ended_at"] for s in sessions if s["id"] == "s-open"] == [None]
    trips = json.loads(ok("trips", "--format", "json", "--config", str(config)))
    assert trips[0]["start_latitude"] == 48.856613
    assert trips[0]["end_odometer_km"] == 12032.4
    assert trips[1]["distance_km"] is None


def test_car_is_found_by_name_in_any_case_or_by_key(config: Path) -> None:
    by_name = json.loads(
        ok("sessions", "--car", "tesla MODEL 3", "--format", "json", "-c", str(config))
    )
    assert {s["id"] for s in by_name} == {"s-old", "s-home"}
    by_key = json.loads(ok("trips", "--car", ID4, "--format", "json", "-c", str(config)))
    assert [t["id"] for t in by_key] == ["t-now"]
    assert "No charging sessions recorded that match." in ok(
        "sessions", "--car", "Volkswagen ID.4", "--since", "2026-11-06", "-c", str(config)
    )


def test_an_unknown_car_is_one_line_naming_the_known_cars(config: Path) -> None:
    line = one_line_error("sessions", "--car", "Golf", "--config", str(config))
    assert line == "error: no car named 'Golf'; known cars: Tesla Model 3, Volkswagen ID.4"
    assert one_line_error("export", "--car", "Golf", "-c", str(config)) == line


def test_since_takes_a_local_date_or_time(config: Path) -> None:
    def ids(*args: str) -> list[str]:
        shown = json.loads(ok("sessions", "--format", "json", "-c", str(config), *args))
        return [s["id"] for s in shown]

    assert ids("--since", "2026-11-01") == ["s-home", "s-open"]  # local midnight
    assert ids("--since", "2026-11-01T08:00") == ["s-home", "s-open"]
    assert ids("--since", "2026-11-01T08:01") == ["s-open"]
    assert ids("--since", "2026-11-01T07:00Z") == ["s-home", "s-open"]
    assert ids("--since", "2026-11-01T07:01+00:00") == ["s-open"]
    assert ids("--since", "2026-10-20T11:59") == ["s-old", "s-home", "s-open"]


def test_since_takes_a_time_ago(tmp_path: Path) -> None:
    config = configuration(tmp_path)
    now = time.time()
    write_history(
        tmp_path / "car2mqtt-history.db",
        [
            Session("hour", TESLA, now - 3600, now - 1800, energy_kwh=3.0),
            Session("day", TESLA, now - 30 * 3600, now - 29 * 3600, energy_kwh=20.0),
            Session("week", TESLA, now - 6 * 86400, now - 6 * 86400 + 60, energy_kwh=1.0),
            Session("month", TESLA, now - 20 * 86400, None, energy_kwh=2.0),
        ],
    )

    def ids(since: str) -> list[str]:
        shown = json.loads(ok("sessions", "--since", since, "--format", "json", "-c", str(config)))
        return [s["id"] for s in shown]

    assert ids("2h") == ["hour"]
    assert ids("24h") == ["hour"]
    assert ids("2d") == ["day", "hour"]
    assert ids("7d") == ["week", "day", "hour"]
    assert ids("3w") == ["month", "week", "day", "hour"]
    # Not named in the state file (there is none): found by key, shown by key.
    rows = table_rows(ok("sessions", "--car", TESLA, "--since", "2h", "-c", str(config)))
    assert [row["car"] for row in rows] == [TESLA]


@pytest.mark.parametrize("since", ["yesterday", "7x", "2026-13-01", "-3d", ""])
def test_a_bad_since_is_one_line(config: Path, since: str) -> None:
    line = one_line_error("trips", "--since", since, "--config", str(config))
    assert line == (
        f"error: --since {since!r} is not a date, a time (2026-11-01, 2026-11-01T08:00) "
        "or a time ago (7d, 24h, 2w)"
    )


def test_export_writes_two_csv_files_whole_and_private(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    said = ok(
        "export", "--to", str(out / "history.csv"), "--since", "2026-11-01", "-c", str(config)
    )
    sessions, trips = out / "history-sessions.csv", out / "history-trips.csv"
    assert said.strip() == f"2 sessions to {sessions}, 2 trips to {trips}"
    assert sorted(p.name for p in out.iterdir()) == ["history-sessions.csv", "history-trips.csv"]
    for path in (sessions, trips):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it says where the car has been
    assert sessions.read_text() == ok(
        "sessions", "--format", "csv", "--since", "2026-11-01", "-c", str(config)
    )
    assert trips.read_text() == ok("trips", "--format", "csv", "-c", str(config))
    # A stem without .csv, and a folder.
    ok("export", "--to", str(out / "2026"), "--car", "tesla model 3", "-c", str(config))
    assert [
        r["id"] for r in csv.DictReader(io.StringIO((out / "2026-sessions.csv").read_text()))
    ] == [
        "s-old",
        "s-home",
    ]
    ok("export", "--to", str(out), "-c", str(config))
    assert len(list(csv.DictReader(io.StringIO((out / "history-sessions.csv").read_text())))) == 3
    missing = one_line_error(
        "export", "--to", str(tmp_path / "nowhere" / "h.csv"), "-c", str(config)
    )
    assert "the folder" in missing
    assert str(tmp_path / "nowhere") in missing


def test_export_without_to_writes_both_to_stdout(config: Path) -> None:
    out = ok("export", "--config", str(config))
    head, tail = out.split("\n\n# trips\n")
    assert head.startswith("# sessions\nid,car,key,started_at,")
    assert [r["id"] for r in csv.DictReader(io.StringIO(head.split("\n", 1)[1]))] == [
        "s-old",
        "s-home",
        "s-open",
    ]
    assert [r["id"] for r in csv.DictReader(io.StringIO(tail))] == ["t-work", "t-now"]


def test_history_off_is_one_line(tmp_path: Path) -> None:
    config = configuration(tmp_path, enabled=False)
    for command in ("sessions", "trips", "export"):
        line = one_line_error(command, "--config", str(config))
        assert line == (
            "error: history is off (history.enabled: false in the configuration): "
            "nothing is recorded"
        )


def test_an_unreachable_database_is_one_line_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql://car2mqtt:hunter2secret@127.0.0.1:{free_port()}/history"
    line = one_line_error("sessions", "--config", str(configuration(tmp_path, url=url)))
    assert line.startswith("error: cannot reach the history database")
    assert "hunter2secret" not in line


def test_a_damaged_history_file_is_one_line(tmp_path: Path) -> None:
    config = configuration(tmp_path)
    (tmp_path / "car2mqtt-history.db").write_bytes(b"not a database at all" * 100)
    line = one_line_error("trips", "--config", str(config))
    assert line.startswith(
        f"error: cannot open the history database {tmp_path / 'car2mqtt-history.db'}"
    )


def test_before_anything_is_recorded_nothing_is_created(tmp_path: Path) -> None:
    config = configuration(tmp_path)
    result = history("sessions", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "No charging sessions recorded yet.\n"
    assert "car2mqtt-history.db does not exist" in result.stderr
    assert json.loads(ok("trips", "--format", "json", "-c", str(config))) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["car2mqtt.yaml"]
    assert one_line_error("trips", "--car", "Golf", "-c", str(config)) == (
        "error: no car named 'Golf'; no car is known yet"
    )


def test_reads_while_a_bridge_is_writing(config: Path, tmp_path: Path) -> None:
    """A writer in the middle of a transaction (WAL): the CLI reads what is committed."""
    writer = sqlite3.connect(tmp_path / "car2mqtt-history.db", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute(
            "INSERT INTO trips (id, key, started_at, source) VALUES ('t-later', ?, ?, 'derived')",
            (TESLA, at("2026-11-10T08:00+01:00")),
        )
        shown = json.loads(ok("trips", "--format", "json", "--config", str(config)))
        assert [t["id"] for t in shown] == ["t-work", "t-now"]
        writer.execute("COMMIT")
    finally:
        writer.close()
    shown = json.loads(ok("trips", "--format", "json", "--config", str(config)))
    assert [t["id"] for t in shown] == ["t-work", "t-now", "t-later"]


@pytest.mark.parametrize(
    "command", ["history", "history sessions", "history trips", "history export"]
)
def test_help_is_plain(command: str) -> None:
    result = subprocess.run(  # noqa: PLW1510
        [*CLI, *command.split(), "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: " in result.stdout
    assert "<" not in result.stdout.replace("<stem>", "")
