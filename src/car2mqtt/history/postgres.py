"""History in PostgreSQL, through psycopg 3's asyncio connection: for fleets, on a server they run.

One connection, used by one call at a time (the recorder writes in batches; the web UI and
the CLI read now and then). A dropped connection is opened again on the next call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import psycopg

from car2mqtt.config import shown_database_url
from car2mqtt.errors import StoreError
from car2mqtt.history.records import Sample, Session, Totals, Trip, Write
from car2mqtt.history.schema import POSTGRES_MIGRATIONS
from car2mqtt.history.sql import (
    PRUNED,
    SqlReads,
    Statements,
    params_of,
)

T = TypeVar("T")
CONNECT_TIMEOUT_S = 10
QUERY_TIMEOUT_S = 120.0  # one call (a batch, a prune) that takes longer is given up and retried
# Taken by the first bridge that migrates: two starting at once do not both migrate.
MIGRATION_LOCK = 4_242_001


class PostgresHistory(SqlReads):
    """History in a PostgreSQL database named by a `postgresql://` URL."""

    SQL = Statements("%s")

    def __init__(self, url: str) -> None:
        self._url = url.replace("postgres://", "postgresql://", 1)
        self._db: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._lock = asyncio.Lock()

    def describe(self) -> str:
        """Say where history goes, without the login."""
        return f"PostgreSQL {shown_database_url(self._url)}"

    async def _connection(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        if self._db is None or self._db.closed:
            try:
                self._db = await psycopg.AsyncConnection.connect(
                    self._url,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    autocommit=False,
                    # A server that vanished (not one that said no) is noticed, not waited on.
                    keepalives=1,
                    keepalives_idle=30,
                    keepalives_interval=10,
                    keepalives_count=3,
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
                async with asyncio.timeout(QUERY_TIMEOUT_S), db.transaction():
                    return await work(db)
            except TimeoutError:
                await db.close()  # whatever it was waiting on: a fresh connection next time
                self._db = None
                msg = f"history database: no answer within {QUERY_TIMEOUT_S:.0f} s"
                raise StoreError(msg) from None
            except psycopg.Error as exc:
                if db.closed or db.broken:
                    await db.close()
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
        """Disconnect (after the call in progress, if any)."""
        async with self._lock:
            if self._db is not None:
                await self._db.close()
                self._db = None

    async def write(self, rows: Sequence[Write]) -> None:
        """Store `rows` in one transaction."""

        async def work(db: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
            async with db.cursor() as cursor:
                for kind in (Session, Trip, Sample, Totals):
                    chosen = [r for r in rows if isinstance(r, kind)]
                    if chosen:
                        statement = self.SQL.statement_of(chosen[0])
                        await cursor.executemany(statement, [params_of(r) for r in chosen])

        await self._run(work)

    async def _select(self, query: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        async def work(db: psycopg.AsyncConnection[tuple[object, ...]]) -> list[tuple[object, ...]]:
            cursor = await db.execute(query, params)
            return await cursor.fetchall()

        return await self._run(work)

    async def prune(
        self,
        *,
        samples_before: float | None,
        sessions_before: float | None,
        trips_before: float | None,
    ) -> int:
        """Delete what is older than each limit; open sessions and trips are always kept."""
        limits = dict(zip(PRUNED, (samples_before, sessions_before, trips_before), strict=True))

        async def work(db: psycopg.AsyncConnection[tuple[object, ...]]) -> int:
            gone = 0
            for table, before in limits.items():
                if before is not None:
                    cursor = await db.execute(self.SQL.prune(table), (before,))
                    gone += max(cursor.rowcount, 0)
            return gone

        return await self._run(work)


def _said(exc: psycopg.Error) -> str:
    """Return the driver's message, first line only (the log redactor hides any password)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
