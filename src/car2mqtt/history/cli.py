"""`car2mqtt history`: the charging sessions and trips the bridge recorded, as tables and CSV.

`cli.py` mounts it with `add_history_commands`; the database, the state file and the tables
are imported only when one of these commands runs, so `car2mqtt run` carries none of it.

Each command opens the history database, reads and closes it: with SQLite (WAL) that works
while a bridge writes to the same file. Cars are shown by the name the bridge announced them
under (from the state file), never by their VIN.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from car2mqtt.commandline import ConfigOption, err, guard, run_async
from car2mqtt.errors import Car2MqttError, ConfigError
from car2mqtt.files import write_private
from car2mqtt.history.present import (
    SESSION_FIELDS,
    SOURCE_WORDS,
    TRIP_FIELDS,
    Value,
    clock_text,
    distance_of,
    duration_text,
    number_text,
    place_of,
    place_text,
    session_record,
    soc_text,
    trip_record,
)
from car2mqtt.logs import RedactingFilter, setup_logging
from car2mqtt.providers.registry import load_config

if TYPE_CHECKING:
    from car2mqtt.config import Config
    from car2mqtt.history.records import HistoryBackend, Session, Trip

# The runtime, the state file and the database are imported when a command runs (`noqa`
# below), so `car2mqtt run` carries none of this module's readers.

__all__ = ["Format", "add_history_commands", "export_paths", "parse_since"]

_UNITS = {"h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_RELATIVE = re.compile(r"(\d{1,6})\s*([hdw])")


class Format(StrEnum):
    """How `history sessions` and `history trips` write what they found."""

    TABLE = "table"
    CSV = "csv"
    JSON = "json"


CarOption = Annotated[
    str | None,
    typer.Option("--car", metavar="NAME", help="Only this car: its name (any case) or its key."),
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="WHEN",
        help="Only what started since then: a local date or time (2026-11-01, "
        "2026-11-01T08:00) or a time ago (7d, 24h, 2w).",
    ),
]
FormatOption = Annotated[
    Format,
    typer.Option(
        "--format",
        metavar="table|csv|json",
        case_sensitive=False,
        help="A table, or CSV or JSON with ISO 8601 times.",
    ),
]
ToOption = Annotated[
    Path | None,
    typer.Option(
        "--to",
        metavar="FILE",
        help="Write STEM-sessions.csv and STEM-trips.csv (--to out/history.csv: "
        "out/history-sessions.csv and out/history-trips.csv); default: both to stdout.",
    ),
]


def parse_since(text: str, now: float) -> float:
    """Return the epoch seconds `--since TEXT` means: ISO date or time (local), or `7d`/`24h`."""
    value = text.strip()
    relative = _RELATIVE.fullmatch(value.lower())
    if relative is not None:
        return now - int(relative[1]) * _UNITS[relative[2]]
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        msg = (
            f"--since {text!r} is not a date, a time (2026-11-01, 2026-11-01T08:00) "
            "or a time ago (7d, 24h, 2w)"
        )
        raise ConfigError(msg) from None
    # A time without an offset is local time, as every time these commands show.
    return (moment if moment.tzinfo else moment.astimezone()).timestamp()


def export_paths(to: Path) -> tuple[Path, Path]:
    """Return the two files `export --to TO` writes: `<stem>-sessions.csv`, `<stem>-trips.csv`.

    `--to out/history.csv` (or `out/history`) writes `out/history-sessions.csv` and
    `out/history-trips.csv`; `--to DIR` (a folder) writes `DIR/history-sessions.csv` and so on.
    """
    if to.is_dir():
        to = to / "history"
    stem = to.name[: -len(".csv")] if to.name.lower().endswith(".csv") else to.name
    if not stem:
        msg = f"--to {str(to)!r} names no file"
        raise ConfigError(msg)
    return to.with_name(f"{stem}-sessions.csv"), to.with_name(f"{stem}-trips.csv")


# ---- reading ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Found:
    sessions: list[Session]
    trips: list[Trip]
    names: dict[str, str]  # car key -> the name the bridge gave it

    def name(self, key: str) -> str:
        return self.names.get(key, key)


def _load(path: Path | None) -> Config:
    from car2mqtt.runtime import secrets_of  # noqa: PLC0415

    config = load_config(path)
    setup_logging(config.log.level, config.log.format, secrets_of(config))
    return config


def _names(config: Config) -> dict[str, str]:
    """Every car the bridge ever named, key -> name, from its state file (if it has one)."""
    from car2mqtt.store import Store  # noqa: PLC0415

    if not config.store.exists():
        return {}  # never create a state file just to read history
    with Store.open(config.store) as store:
        return {key: name for key, (_, name) in store.vehicle_names().items()}


def _unknown_car(car: str, names: dict[str, str]) -> ConfigError:
    known = sorted(set(names.values()), key=str.casefold)
    listed = f"known cars: {', '.join(known)}" if known else "no car is known yet"
    return ConfigError(f"no car named {car!r}; {listed}")


async def _keys_of(car: str, names: dict[str, str], backend: HistoryBackend | None) -> list[str]:
    """Return the keys `--car CAR` means: a name (any case) or a key; else say which exist."""
    wanted = car.strip().casefold()
    keys = [k for k, n in names.items() if wanted in (n.casefold(), k.casefold())]
    if keys:
        return keys
    # A car the state file does not name (another state file's, say) is still found by key.
    if backend is not None and (
        await backend.sessions(car.strip()) or await backend.trips(car.strip())
    ):
        return [car.strip()]
    raise _unknown_car(car, names)


async def _read(
    config: Config, car: str | None, since: float | None, *, sessions: bool, trips: bool
) -> _Found:
    from car2mqtt.history.sqlite import SqliteHistory  # noqa: PLC0415
    from car2mqtt.runtime import history_options  # noqa: PLC0415

    options = history_options(config)  # a missing PostgreSQL driver is a ConfigError there
    if options is None:
        msg = "history is off (history.enabled: false in the configuration): nothing is recorded"
        raise ConfigError(msg)
    names = _names(config)
    backend = options.backend
    if isinstance(backend, SqliteHistory) and not backend.path.exists():
        # Nothing recorded yet; opening would create the file.
        if car is not None:
            await _keys_of(car, names, None)
        err.print(
            f"no history yet: {backend.path} does not exist (car2mqtt run records it)",
            markup=False,
            highlight=False,
        )
        return _Found([], [], names)
    await backend.open()
    try:
        keys: Sequence[str | None] = [None] if car is None else await _keys_of(car, names, backend)
        found_sessions: list[Session] = []
        found_trips: list[Trip] = []
        for key in keys:
            if sessions:
                found_sessions += await backend.sessions(key, since)
            if trips:
                found_trips += await backend.trips(key, since)
    finally:
        await backend.close()
    found_sessions.sort(key=lambda s: (s.started_at, s.id))
    found_trips.sort(key=lambda t: (t.started_at, t.id))
    return _Found(found_sessions, found_trips, names)


def _reading(
    config_file: Path | None,
    car: str | None,
    since: str | None,
    *,
    sessions: bool = True,
    trips: bool = True,
) -> _Found:
    from car2mqtt.runtime import secrets_of  # noqa: PLC0415

    config = _load(config_file)
    start = None if since is None else parse_since(since, time.time())
    try:
        return run_async(_read(config, car, start, sessions=sessions, trips=trips))
    except Car2MqttError as exc:
        # A database driver's message may quote its URL, password and all.
        said = RedactingFilter(secrets_of(config)).redact(str(exc))
        if said == str(exc):
            raise
        raise type(exc)(said) from None


# ---- writing ------------------------------------------------------------------------------


def _session_records(found: _Found) -> list[dict[str, Value]]:
    return [session_record(s, found.name(s.key)) for s in found.sessions]


def _trip_records(found: _Found) -> list[dict[str, Value]]:
    return [trip_record(t, found.name(t.key)) for t in found.trips]


def _cell(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def csv_text(fields: Sequence[str], records: Sequence[dict[str, Value]]) -> str:
    """Return `records` as CSV with a header line (empty cells for unknown values)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(fields)
    writer.writerows([_cell(r[f]) for f in fields] for r in records)
    return out.getvalue()


def _json_text(records: Sequence[dict[str, Value]]) -> str:
    return json.dumps(list(records), indent=2, ensure_ascii=False) + "\n"


def _table(title: str, columns: Sequence[str], rows: list[list[str]], caption: str) -> Table:
    table = Table(title=title, caption=caption, title_style="bold", header_style="bold")
    for column in columns:
        wide = column in ("start", "end")
        table.add_column(column, no_wrap=wide, overflow="fold")
    for row in rows:
        # Text, not markup: a car's name may hold brackets.
        table.add_row(*(Text(cell) for cell in row))
    return table


def _session_table(found: _Found, tz: tzinfo | None = None) -> Table:
    rows = [
        [
            found.name(s.key),
            clock_text(s.started_at, tz),
            "plugged in" if s.ended_at is None else clock_text(s.ended_at, tz),
            "" if s.ended_at is None else duration_text(s.ended_at - s.started_at),
            number_text(s.energy_kwh),
            SOURCE_WORDS[s.energy_source],
            soc_text(s.soc_from, s.soc_to),
            number_text(s.peak_kw),
            number_text(s.mean_kw),
            place_text(place_of(s.latitude, s.longitude, s.zone)),
            "yes" if s.by_command else "no",
        ]
        for s in found.sessions
    ]
    total = sum(s.energy_kwh for s in found.sessions)
    count = len(found.sessions)
    return _table(
        "Charging sessions",
        (
            "car",
            "start",
            "end",
            "duration",
            "kWh",
            "energy from",
            "SoC",
            "peak kW",
            "mean kW",
            "place",
            "by command",
        ),
        rows,
        f"{count} session{'' if count == 1 else 's'}, {total:.1f} kWh",
    )


def _trip_table(found: _Found, tz: tzinfo | None = None) -> Table:
    rows = [
        [
            found.name(t.key),
            clock_text(t.started_at, tz),
            "under way" if t.ended_at is None else clock_text(t.ended_at, tz),
            "" if t.ended_at is None else duration_text(t.ended_at - t.started_at),
            number_text(distance_of(t)),
            place_text(place_of(t.start_latitude, t.start_longitude, t.start_zone)),
            place_text(place_of(t.end_latitude, t.end_longitude, t.end_zone)),
            t.source,
        ]
        for t in found.trips
    ]
    total = sum(d for t in found.trips if (d := distance_of(t)) is not None)
    count = len(found.trips)
    return _table(
        "Trips",
        ("car", "start", "end", "duration", "km", "from", "to", "source"),
        rows,
        f"{count} trip{'' if count == 1 else 's'}, {total:.1f} km",
    )


def _show(
    found: _Found,
    fmt: Format,
    rows: Sequence[object],
    fields: Sequence[str],
    records: Callable[[_Found], list[dict[str, Value]]],
    table: Callable[[_Found], Table],
    nothing: str,
) -> None:
    if fmt is Format.CSV:
        sys.stdout.write(csv_text(fields, records(found)))
    elif fmt is Format.JSON:
        sys.stdout.write(_json_text(records(found)))
    elif not rows:
        typer.echo(nothing)
    else:
        Console().print(table(found))


# ---- the commands -------------------------------------------------------------------------


def add_history_commands(app: typer.Typer) -> None:
    """Add `car2mqtt history sessions|trips|export` to `app`."""
    history = typer.Typer(
        help="Charging sessions and trips the bridge recorded: tables, CSV and JSON.",
        no_args_is_help=True,
    )
    app.add_typer(history, name="history")

    @history.command("sessions")
    def sessions(
        car: CarOption = None,
        since: SinceOption = None,
        fmt: FormatOption = Format.TABLE,
        config: ConfigOption = None,
    ) -> None:
        """Show the charging sessions: when, how long, kWh, SoC, power, where, by command."""

        def go() -> None:
            found = _reading(config, car, since, trips=False)
            _show(
                found,
                fmt,
                found.sessions,
                SESSION_FIELDS,
                _session_records,
                _session_table,
                "No charging sessions recorded" + (" that match." if car or since else " yet."),
            )

        guard(go)

    @history.command("trips")
    def trips(
        car: CarOption = None,
        since: SinceOption = None,
        fmt: FormatOption = Format.TABLE,
        config: ConfigOption = None,
    ) -> None:
        """Show the trips: when, how long, how far, from where to where."""

        def go() -> None:
            found = _reading(config, car, since, sessions=False)
            _show(
                found,
                fmt,
                found.trips,
                TRIP_FIELDS,
                _trip_records,
                _trip_table,
                "No trips recorded" + (" that match." if car or since else " yet."),
            )

        guard(go)

    @history.command("export")
    def export(
        to: ToOption = None,
        car: CarOption = None,
        since: SinceOption = None,
        config: ConfigOption = None,
    ) -> None:
        """Export sessions and trips as CSV: two files with --to, else both to stdout."""

        def go() -> None:
            targets = None if to is None else export_paths(to)
            if targets is not None and not targets[0].parent.is_dir():
                msg = f"cannot write {targets[0]}: the folder {targets[0].parent} does not exist"
                raise ConfigError(msg)
            found = _reading(config, car, since)
            sessions_csv = csv_text(SESSION_FIELDS, _session_records(found))
            trips_csv = csv_text(TRIP_FIELDS, _trip_records(found))
            if targets is None:
                sys.stdout.write(f"# sessions\n{sessions_csv}\n# trips\n{trips_csv}")
                return
            # Each file whole or not at all, 0600: it says where the car has been.
            write_private(targets[0], sessions_csv)
            write_private(targets[1], trips_csv)
            typer.echo(
                f"{len(found.sessions)} sessions to {targets[0]}, "
                f"{len(found.trips)} trips to {targets[1]}"
            )

        guard(go)
