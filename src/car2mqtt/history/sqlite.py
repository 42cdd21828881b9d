"""History in SQLite: its own file beside the state file, WAL, mode 0600, one thread of its own.

Every call runs on one worker thread that owns the connection, so a slow disk never stalls the
event loop, and writes never interleave.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from car2mqtt.errors import StoreError
from car2mqtt.history.records import Write
from car2mqtt.history.schema import SQLITE_MIGRATIONS
from car2mqtt.history.sql import (
    PRUNED,
    SqlReads,
    Statements,
    params_of,
)

T = TypeVar("T")


class SqliteHistory(SqlReads):
    """The default history backend."""

    SQL = Statements("?")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history")

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._db is None:
                msg = "history database is not open"
                raise StoreError(msg)
            try:
                with self._db:  # one transaction
                    return work(self._db)
            except sqlite3.Error as exc:
                msg = f"history database {self.path}: {exc}"
                raise StoreError(msg) from exc

        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    async def open(self) -> None:
        """Open (creating it 0600) and migrate the file."""

        def connect() -> None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Created private before SQLite writes a byte: it holds where the car went.
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
                self.path.chmod(0o600)
                db = sqlite3.connect(self.path, check_same_thread=False, timeout=5)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                if _version(db) < SQLITE_MIGRATIONS[-1][0]:
                    _migrate(db)
            except (OSError, sqlite3.Error) as exc:
                msg = f"cannot open the history database {self.path}: {exc}"
                raise StoreError(msg) from exc
            self._db = db

        await asyncio.get_running_loop().run_in_executor(self._thread, connect)

    async def close(self) -> None:
        """Close the file and stop the worker thread."""

        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._thread, shut)
        self._thread.shutdown(wait=False)

    async def write(self, rows: Sequence[Write]) -> None:
        """Store `rows` in one transaction."""

        def work(db: sqlite3.Connection) -> None:
            for row in rows:
                db.execute(self.SQL.statement_of(row), params_of(row))

        await self._run(work)

    async def _select(self, query: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        return await self._run(lambda db: db.execute(query, params).fetchall())

    async def prune(
        self,
        *,
        samples_before: float | None,
        sessions_before: float | None,
        trips_before: float | None,
    ) -> int:
        """Delete what is older than each limit; open sessions and trips are always kept."""
        limits = dict(zip(PRUNED, (samples_before, sessions_before, trips_before), strict=True))

        def work(db: sqlite3.Connection) -> int:
            return sum(
                db.execute(self.SQL.prune(table), (before,)).rowcount
                for table, before in limits.items()
                if before is not None
            )

        return await self._run(work)


def _version(db: sqlite3.Connection) -> int:
    """Return the schema's version; a read, so it waits on no writer (the CLI beside a bridge)."""
    found = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if found is None:
        return 0
    row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def _migrate(db: sqlite3.Connection) -> None:
    # One writer migrates; a second process opening the same new file waits for it, then
    # finds the schema there (DDL alone opens no transaction with this module).
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
        current = _version(db)
        for version, statements in SQLITE_MIGRATIONS:
            if version > current:
                for statement in statements:
                    db.execute(statement)
                db.execute("INSERT INTO schema_version VALUES (?)", (version,))
    except BaseException:
        db.rollback()
        raise
    db.commit()
