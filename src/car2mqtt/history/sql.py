"""SQL both databases share: the statements (by placeholder style) and rows to records and back."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from car2mqtt.history.model import EnergySource
from car2mqtt.history.records import Sample, Session, Totals, Trip, Write
from car2mqtt.history.schema import SESSION_COLUMNS, TRIP_COLUMNS


def _upsert(table: str, columns: Sequence[str], mark: str) -> str:
    marks = ", ".join([mark] * len(columns))
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != "id")
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
        f"ON CONFLICT (id) DO UPDATE SET {updates}"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Statements:
    """Every statement history runs, for one placeholder style (`?` or `%s`)."""

    mark: str

    @property
    def session(self) -> str:
        """Insert or update a session by id."""
        return _upsert("sessions", SESSION_COLUMNS, self.mark)

    @property
    def trip(self) -> str:
        """Insert or update a trip by id."""
        return _upsert("trips", TRIP_COLUMNS, self.mark)

    @property
    def sample(self) -> str:
        """Insert a sample (a second one at the same moment replaces nothing)."""
        m = self.mark
        return (
            "INSERT INTO samples (key, at, battery_pct, range_km, odometer_km) "
            f"VALUES ({m}, {m}, {m}, {m}, {m}) ON CONFLICT (key, at) DO NOTHING"
        )

    @property
    def total(self) -> str:
        """Raise a car's energy total; it never goes down."""
        m = self.mark
        return (
            f"INSERT INTO totals (key, energy_kwh) VALUES ({m}, {m}) ON CONFLICT (key) DO UPDATE "
            "SET energy_kwh = CASE WHEN excluded.energy_kwh > totals.energy_kwh "
            "THEN excluded.energy_kwh ELSE totals.energy_kwh END"
        )

    def statement_of(self, row: Write) -> str:
        """Return the statement that stores `row`."""
        if isinstance(row, Session):
            return self.session
        if isinstance(row, Trip):
            return self.trip
        if isinstance(row, Sample):
            return self.sample
        return self.total

    @property
    def samples(self) -> str:
        """One car's samples since a time, oldest first."""
        m = self.mark
        return (
            "SELECT at, battery_pct, range_km, odometer_km FROM samples "
            f"WHERE key = {m} AND at >= {m} ORDER BY at"
        )

    def prune(self, table: str) -> str:
        """Delete `table`'s rows older than a time; a session or trip still open stays."""
        column, open_kept = (
            ("at", "") if table == "samples" else ("ended_at", "ended_at IS NOT NULL AND ")
        )
        return f"DELETE FROM {table} WHERE {open_kept}{column} < {self.mark}"

    def select(
        self, table: str, columns: Sequence[str], key: str | None, since: float | None
    ) -> tuple[str, list[object]]:
        """Return the query and parameters for a car's (or every car's) rows since `since`."""
        where: list[str] = []
        params: list[object] = []
        if key is not None:
            where.append(f"key = {self.mark}")
            params.append(key)
        if since is not None:
            where.append(f"started_at >= {self.mark}")
            params.append(since)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        query = f"SELECT {', '.join(columns)} FROM {table}{clause} ORDER BY started_at, id"
        return query, params


OPEN_SESSIONS = f"SELECT {', '.join(SESSION_COLUMNS)} FROM sessions WHERE ended_at IS NULL"
OPEN_TRIPS = f"SELECT {', '.join(TRIP_COLUMNS)} FROM trips WHERE ended_at IS NULL"
TOTALS = "SELECT key, energy_kwh FROM totals"


def _latest(table: str, columns: Sequence[str]) -> str:
    # Each car's last ended row, read from the (key, ended_at) index: a restart of a fleet's
    # bridge reads one row per car, not every session of the last year.
    return (
        f"SELECT {', '.join(columns)} FROM {table} AS r WHERE r.ended_at = "
        f"(SELECT MAX(l.ended_at) FROM {table} AS l WHERE l.key = r.key)"
    )


LAST_SESSIONS = _latest("sessions", SESSION_COLUMNS)
LAST_TRIPS = _latest("trips", TRIP_COLUMNS)
PRUNED = ("samples", "sessions", "trips")


def params_of(row: Write) -> tuple[Any, ...]:
    """Return a record's values in its statement's column order."""
    if isinstance(row, Session):
        values = dataclasses.astuple(row)
        return (*values[:5], row.energy_source.value, *values[6:])
    if isinstance(row, Trip):
        return dataclasses.astuple(row)
    if isinstance(row, Sample):
        return (row.key, row.at, row.battery_pct, row.range_km, row.odometer_km)
    return (row.key, row.energy_kwh)


def session_of(row: Sequence[Any]) -> Session:
    """Read a `sessions` row."""
    fields = dict(zip(SESSION_COLUMNS, row, strict=True))
    fields["energy_source"] = EnergySource(fields["energy_source"])
    fields["by_command"] = bool(fields["by_command"])
    return Session(**fields)


def trip_of(row: Sequence[Any]) -> Trip:
    """Read a `trips` row."""
    return Trip(**dict(zip(TRIP_COLUMNS, row, strict=True)))


def totals_of(row: Sequence[Any]) -> Totals:
    """Read a `totals` row."""
    return Totals(str(row[0]), float(row[1]))


def sample_of(key: str, row: Sequence[Any]) -> Sample:
    """Read a `samples` row (at, battery, range, odometer)."""
    return Sample(key, float(row[0]), row[1], row[2], row[3])


class SqlReads(ABC):
    """The reads both databases answer the same way, on one `_select` of each backend's own."""

    SQL: ClassVar[Statements]

    @abstractmethod
    async def _select(self, query: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run `query` in a transaction of its own and return its rows."""

    async def open_sessions(self) -> list[Session]:
        """Return the sessions not ended yet."""
        return [session_of(r) for r in await self._select(OPEN_SESSIONS)]

    async def open_trips(self) -> list[Trip]:
        """Return the trips not ended yet."""
        return [trip_of(r) for r in await self._select(OPEN_TRIPS)]

    async def last_sessions(self) -> list[Session]:
        """Return each car's last ended session."""
        return [session_of(r) for r in await self._select(LAST_SESSIONS)]

    async def last_trips(self) -> list[Trip]:
        """Return each car's last ended trip."""
        return [trip_of(r) for r in await self._select(LAST_TRIPS)]

    async def totals(self) -> list[Totals]:
        """Return every car's energy total."""
        return [totals_of(r) for r in await self._select(TOTALS)]

    async def sessions(self, key: str | None = None, since: float | None = None) -> list[Session]:
        """Return sessions started at or after `since`, oldest first."""
        query, params = self.SQL.select("sessions", SESSION_COLUMNS, key, since)
        return [session_of(r) for r in await self._select(query, params)]

    async def trips(self, key: str | None = None, since: float | None = None) -> list[Trip]:
        """Return trips started at or after `since`, oldest first."""
        query, params = self.SQL.select("trips", TRIP_COLUMNS, key, since)
        return [trip_of(r) for r in await self._select(query, params)]

    async def samples(self, key: str, since: float) -> list[Sample]:
        """Return one car's samples since `since`, oldest first."""
        return [sample_of(key, r) for r in await self._select(self.SQL.samples, (key, since))]
