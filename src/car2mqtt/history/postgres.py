"""History in PostgreSQL, through psycopg 3's asyncio connection: for fleets, on a server they run.

One connection, used by one call at a time (the recorder writes in batches; the web UI and
the CLI read now and then). A dropped connection is opened again on the next call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import psycopg

from car2mqtt.errors import StoreError
from car2mqtt.history.records import Sample, Session, Totals, Trip, Write
from car2mqtt.history.schema import POSTGRES_MIGRATIONS, SESSION_COLUMNS, TRIP_COLUMNS
from car2mqtt.history.sql import (
    Statements,
    params_of,
    sample_of,
    session_of,
    totals_of,
    trip_of,
)

T = TypeVar("T")
SQL = Statements("%s")
CONNECT_TIMEOUT_S = 10
# Taken by the first bridge that migrates: two starting at once do not both migrate.
MIGRATION_LOCK = 4_242_001


class PostgresHistory:
    """History in a PostgreSQL database named by a `postgresql://` URL."""

    def __init__(self, url: str) -> None:
        self._url = url.replace("postgres://", "postgresql://", 1)
        self._db: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._lock = asyncio.Lock()

    def describe(self) -> str:
        """Say where history goes, without the login."""
        scheme, _, rest = self._url.partition("://")
        return f"PostgreSQL {scheme}://{rest.rpartition('@')[2]}"

    async def _connection(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._db is None or self._db.closed:
            try:
                self._db = await psycopg.AsyncConnection.connect(
                    self._url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=False
                )
            except psycopg.Error as exc:
                raise StoreError(f"cannot reach the history database ({_said(exc)})") from None
        return self._db

    async def _run(
        self, work: Callable[[psycopg.AsyncConnection[tuple[object, ...]]], Awaitable[T]]
    ) -> T:
        async with self._lock:
            db = await self._connection()
            try:
                async with db.transaction():
                    return await work(db)
            except psycopg.Error as exc:
                if db.closed or db.broken:
                    self._db = None  # opened again next time
                raise StoreError(f"history database: {_said(exc)}") from None

    async def open(self) -> None:
        """Connect and apply the migrations this database lacks."""

        async def migrate(db: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
            await db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
            cursor = await db.execute("SELECT MAX(version) FROM schema_version")
            row = await cursor.fetchone()
            current = row[0] if row and isinstance(row[0], int) else 0
            for version, statements in POSTGRES_MIGRATIONS:
                if version > current:
                    for statement in statements:
                        await db.execute(statement)
                    await db.execute("INSERT INTO schema_version VALUES (%s)", (version,))

        await self._run(migrate)

    async def close(self) -> None:
        """Disconnect."""
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def write(self, rows: Sequence[Write]) -> None:
        """Store `rows` in one transaction."""

        async def work(db: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
            async with db.cursor() as cursor:
                for kind in (Session, Trip, Sample, Totals):
                    chosen = [params_of(r) for r in rows if isinstance(r, kind)]
                    if chosen:
                        await cursor.executemany(_statement(kind), chosen)

        await self._run(work)

    async def _select(self, query: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        async def work(db: psycopg.AsyncConnection[tuple[object, ...]]) -> list[tuple[object, ...]]:
            cursor = await db.execute(query, params)
            return await cursor.fetchall()

        return await self._run(work)

    async def open_sessions(self) -> list[Session]:
        """Return the sessions not ended yet."""
        query = f"SELECT {', '.join(SESSION_COLUMNS)} FROM sessions WHERE ended_at IS NULL"
        return [session_of(r) for r in await self._select(query)]

    async def open_trips(self) -> list[Trip]:
        """Return the trips not ended yet."""
        query = f"SELECT {', '.join(TRIP_COLUMNS)} FROM trips WHERE ended_at IS NULL"
        return [trip_of(r) for r in await self._select(query)]

    async def totals(self) -> list[Totals]:
        """Return every car's energy total."""
        return [totals_of(r) for r in await self._select("SELECT key, energy_kwh FROM totals")]

    async def sessions(self, key: str | None = None, since: float | None = None) -> list[Session]:
        """Return sessions started at or after `since`, oldest first."""
        query, params = SQL.select("sessions", SESSION_COLUMNS, key, since)
        return [session_of(r) for r in await self._select(query, params)]

    async def trips(self, key: str | None = None, since: float | None = None) -> list[Trip]:
        """Return trips started at or after `since`, oldest first."""
        query, params = SQL.select("trips", TRIP_COLUMNS, key, since)
        return [trip_of(r) for r in await self._select(query, params)]

    async def samples(self, key: str, since: float) -> list[Sample]:
        """Return one car's samples since `since`, oldest first."""
        query = (
            "SELECT at, battery_pct, range_km, odometer_km FROM samples "
            "WHERE key = %s AND at >= %s ORDER BY at"
        )
        return [sample_of(key, r) for r in await self._select(query, (key, since))]

    async def prune(
        self,
        *,
        samples_before: float | None,
        sessions_before: float | None,
        trips_before: float | None,
    ) -> int:
        """Delete what is older than each limit; open sessions and trips are always kept."""

        async def work(db: psycopg.AsyncConnection[tuple[object, ...]]) -> int:
            gone = 0
            if samples_before is not None:
                cursor = await db.execute("DELETE FROM samples WHERE at < %s", (samples_before,))
                gone += max(cursor.rowcount, 0)
            for table, before in (("sessions", sessions_before), ("trips", trips_before)):
                if before is not None:
                    cursor = await db.execute(
                        f"DELETE FROM {table} WHERE ended_at IS NOT NULL AND ended_at < %s",
                        (before,),
                    )
                    gone += max(cursor.rowcount, 0)
            return gone

        return await self._run(work)


def _statement(kind: type) -> str:
    if kind is Session:
        return SQL.session
    if kind is Trip:
        return SQL.trip
    if kind is Sample:
        return SQL.sample
    return SQL.total


def _said(exc: psycopg.Error) -> str:
    """Return the driver's message, first line only (it never quotes the password)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
