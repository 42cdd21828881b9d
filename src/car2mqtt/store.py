"""The bridge's local state in one SQLite file: the only module that speaks SQL.

Holds what must survive a restart: OAuth tokens, the cars known per account, the discovery
topics published to Home Assistant, the last state published per entity, removals not yet
sent to the broker, account health and small `meta` values. Every write is one transaction,
committed (and synced to disk) before the method returns, so a crash never leaves half a write
behind.

The methods are synchronous and may be called directly where blocking is fine (opening, the
CLI's commands, reads at start-up). Async code goes through `Store.run`, which runs them on the
store's one writer thread, in the order they were handed over, so a slow disk or a write
waiting for another process's lock never stalls the event loop. Both paths share one
connection, guarded by one lock: a method is one transaction whichever thread runs it.

The file holds credentials, so it is created 0600 before SQLite touches it, tightened if an
existing file is looser, and kept in rollback-journal mode: SQLite's side files then live only
for the length of a write and take the database file's own permissions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar, cast

from filelock import AsyncFileLock, Timeout

from car2mqtt.errors import StoreError
from car2mqtt.models import VehicleRef

__all__ = ["APPLICATION_ID", "MIGRATIONS", "SCHEMA_VERSION", "Store"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The name of the writer thread (`Store.run`), as thread dumps and py-spy show it.
WRITER_THREAD = "car2mqtt-store"

# Written into the SQLite header so a car2mqtt state file is recognisable (`file` and
# `sqlite3` show it) and someone else's database is never migrated by mistake. ASCII "c2mq".
APPLICATION_ID = 0x63326D71

# Schema steps, oldest first: step i brings the file from user_version i to i + 1. Append new
# steps; never edit a released one, since files in the field have already run it.
MIGRATIONS: list[str] = [
    f"""
    PRAGMA application_id = {APPLICATION_ID};
    CREATE TABLE meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE tokens (
        account TEXT PRIMARY KEY,
        token TEXT NOT NULL              -- JSON object
    );
    CREATE TABLE vehicles (
        account TEXT NOT NULL,
        position INTEGER NOT NULL,       -- the order the provider listed the cars in
        provider TEXT NOT NULL,
        vehicle_id TEXT NOT NULL,
        PRIMARY KEY (account, provider, vehicle_id)
    );
    CREATE TABLE published (
        topic TEXT PRIMARY KEY,
        keys TEXT NOT NULL               -- JSON array of entity keys, sorted
    );
    CREATE TABLE states (
        key TEXT PRIMARY KEY,
        topic TEXT NOT NULL,
        payload TEXT NOT NULL            -- JSON object
    );
    CREATE TABLE account_status (
        account TEXT PRIMARY KEY,
        link_state TEXT NOT NULL,
        problem TEXT
    );
    """,
    """
    CREATE TABLE removals (
        key TEXT PRIMARY KEY,            -- the removed car's vehicle key
        topics TEXT NOT NULL             -- JSON array of retained topics still to clear
    );
    """,
    """
    CREATE TABLE vehicle_names (
        key TEXT PRIMARY KEY,            -- the car's vehicle key
        cloud_name TEXT NOT NULL,        -- the name the cloud gave when `name` was chosen
        name TEXT NOT NULL               -- the name announced to Home Assistant
    );
    CREATE TABLE commands (
        key TEXT NOT NULL,               -- the car's vehicle key
        control TEXT NOT NULL,           -- the control it came on (charging, refresh, ...)
        result TEXT NOT NULL,            -- JSON object: the last command there and its fate
        PRIMARY KEY (key, control)
    );
    """,
    """
    CREATE TABLE samples (
        key TEXT NOT NULL,               -- the car's vehicle key
        at REAL NOT NULL,                -- Unix time of the value
        battery_pct REAL,
        range_km REAL,
        odometer_km REAL,
        PRIMARY KEY (key, at)
    ) WITHOUT ROWID;
    """,
    # Samples moved to the history database (history/), kept there for 400 days.
    """
    DROP TABLE samples;
    """,
    # The API budget's counts (bridge/budget.py): this month's, per quarter hour and per car.
    """
    CREATE TABLE api_calls (
        account TEXT NOT NULL,
        vehicle TEXT NOT NULL,           -- '' for the account's quarter-hour counts
        period REAL NOT NULL,            -- the quarter hour's start, or the month's for a car
        calls INTEGER NOT NULL,
        PRIMARY KEY (account, vehicle, period)
    ) WITHOUT ROWID;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)

# How long a write waits for another connection's write to finish before giving up.
_BUSY_TIMEOUT_S = 5.0


def _statements(script: str) -> Iterator[str]:
    """Split an SQL script into complete statements (semicolons in strings or triggers stay)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                yield pending
            pending = ""
    if pending.strip(" \t\r\n;"):
        yield pending


def _dump(value: Mapping[str, Any] | list[str]) -> str:
    # allow_nan=False: NaN/Infinity are not JSON and would not read back in other tools.
    return json.dumps(value, allow_nan=False, separators=(",", ":"), sort_keys=True)


def _make_private_dirs(directory: Path) -> None:
    """Create `directory` and any missing parents with mode 0700 (existing ones are left be)."""
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for created in reversed(missing):
        created.mkdir(mode=0o700, exist_ok=True)


def _create_private_file(path: Path) -> None:
    """Create `path` with mode 0600 if missing; tighten an existing file that is looser."""
    # The file is created here, not by sqlite3, so it never exists with umask-default
    # permissions, not even for an instant.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            os.fchmod(fd, 0o600)
            logger.warning(
                "state file %s was readable by others (mode %04o); changed it to 0600",
                path,
                mode,
            )
        if os.geteuid() == 0 and (owner := os.fstat(fd).st_uid) != 0:
            # root can read and write it anyway, but the file's owner can read the tokens in it,
            # and a later run as that user would find files root created beside it unwritable.
            logger.warning(
                "state file %s belongs to uid %d, not to root, who runs car2mqtt now: "
                "that user can read its tokens; chown it to root or run car2mqtt as that user",
                path,
                owner,
            )
    finally:
        os.close(fd)


def _damaged(path: Path, detail: str) -> StoreError:
    """Return the one error a damaged state file gets: what is wrong and what to do."""
    msg = (
        f"state file {path} is damaged ({detail}). Move it aside (mv {path} {path}.damaged) "
        "and start again: the cars come back on the first poll, and an account whose link "
        "lives only in this file may need re-linking (car2mqtt status says which)"
    )
    return StoreError(msg)


class Store:
    """The bridge's persistent state, in one SQLite file."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        """Wrap an open connection; use `Store.open` instead."""
        self.path = path
        self._conn: sqlite3.Connection | None = connection
        # The connection is used from the writer thread (`run`) and from whoever calls a method
        # directly (check_same_thread=False): this lock is held around every use of it, so one
        # transaction at a time runs on it. Reentrant: a method may call another.
        self._lock = threading.RLock()
        # The writer: one thread, started by the first `run`, stopped by `close`. Guarded by
        # its own lock, never held while a write runs, so `close` can wait for the queue.
        self._writer_lock = threading.Lock()
        self._writer: ThreadPoolExecutor | None = None
        self._writer_ident: int | None = None
        self._closing = False

    # -- life cycle ----------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open (creating and migrating as needed) the state file at `path`."""
        try:
            _make_private_dirs(path.parent)
            _create_private_file(path)
        except OSError as exc:
            msg = f"cannot create state file {path}: {exc.strerror or exc}"
            raise StoreError(msg) from exc
        try:
            # isolation_level=None: no implicit transactions; every write says BEGIN itself.
            conn = sqlite3.connect(
                path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            msg = f"cannot open state file {path}: {exc}"
            raise StoreError(msg) from exc
        store = cls(path, conn)
        try:
            store._prepare()
        except BaseException:
            store.close()
            raise
        return store

    def _prepare(self) -> None:
        """Check the file is ours and not too new, set durability pragmas, migrate."""
        with self._translate("open"), self._lock:
            try:
                # The first read of the header: a file that is not SQLite fails here.
                self._check_version(self._user_version())
                self._check_integrity()
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError):
                    raise  # locked, unreadable: not damage, and said as it is
                raise _damaged(self.path, str(exc)) from exc
            conn = self._connection()
            mode = cast(str, conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0])
            if mode.lower() != "delete":
                msg = f"cannot open state file {self.path}: journal mode stuck at {mode!r}"
                raise StoreError(msg)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._migrate()

    def _migrate(self) -> None:
        """Apply pending migration steps, each in its own transaction."""
        while True:
            # BEGIN IMMEDIATE before reading the version: two processes opening a fresh file
            # at once then migrate one after the other instead of both running step 1.
            with self._transaction() as conn:
                version = self._user_version()
                self._check_version(version)
                if version == SCHEMA_VERSION:
                    return
                if version == 0:
                    self._check_empty()
                for statement in _statements(MIGRATIONS[version]):
                    conn.execute(statement)
                # PRAGMA takes no parameters; the value is our own int.
                conn.execute(f"PRAGMA user_version = {version + 1}")

    def _check_integrity(self) -> None:
        """Refuse a damaged file at start, in one line, rather than fail every poll later."""
        try:
            rows = self._connection().execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as exc:
            raise _damaged(self.path, str(exc)) from exc
        problems = [cast(str, row[0]) for row in rows]
        if problems != ["ok"]:
            shown = "; ".join(problems[:3]) + (" ..." if len(problems) > 3 else "")
            raise _damaged(self.path, shown)

    def _user_version(self) -> int:
        return cast(int, self._connection().execute("PRAGMA user_version").fetchone()[0])

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            msg = (
                f"state file {self.path} was written by a newer car2mqtt (schema version "
                f"{version}; this version knows up to {SCHEMA_VERSION}); upgrade car2mqtt"
            )
            raise StoreError(msg)
        conn = self._connection()
        app_id = cast(int, conn.execute("PRAGMA application_id").fetchone()[0])
        if app_id not in (0, APPLICATION_ID):
            msg = f"{self.path} is an SQLite database of another application, not car2mqtt's"
            raise StoreError(msg)

    def _check_empty(self) -> None:
        """Refuse to lay our schema over a database that some other program filled."""
        row = self._connection().execute("SELECT count(*) FROM sqlite_master").fetchone()
        if cast(int, row[0]):
            msg = f"{self.path} is an SQLite database but not a car2mqtt state file"
            raise StoreError(msg)

    def close(self) -> None:
        """Finish the writes handed to `run`, then close the file (closing twice is harmless).

        Blocks until the writer's queue is empty, so nothing handed over is lost on a clean
        stop. Further use of this store raises StoreError.
        """
        with self._writer_lock:
            self._closing = True
            writer, self._writer = self._writer, None
        if writer is not None:
            # A write that closes the store itself must not wait for its own thread.
            writer.shutdown(wait=threading.get_ident() != self._writer_ident)
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the store's writer thread and return its result (or raise its error).

        `fn` calls this store's methods, e.g. `lambda: store.save_many(...)`. Calls run one at a
        time on one thread, in the order `run` was called, and the event loop goes on while one
        runs or waits (the busy timeout, a slow disk). StoreError and any other exception of
        `fn` reach the caller as raised.

        Once `run` is called, `fn` runs to its end even if the awaiting task is cancelled: the
        cancellation only stops the wait (a failure then is logged, since no one sees it), and
        `close` waits for it. Each store method is one SQLite transaction, so a write is either
        applied whole or not at all; an `fn` of several methods is several transactions, so
        what must land together belongs in one method (as `save_many` does).
        """
        with self._writer_lock:
            if self._closing or self._conn is None:
                msg = f"state file {self.path} is closed"
                raise StoreError(msg)
            if self._writer is None:
                self._writer = ThreadPoolExecutor(
                    max_workers=1,
                    thread_name_prefix=WRITER_THREAD,
                    initializer=self._writer_started,
                )
            running = self._writer.submit(fn)
        waited = asyncio.wrap_future(running)
        try:
            # The shield keeps a cancellation from cancelling a write that has not started.
            return await asyncio.shield(waited)
        except asyncio.CancelledError:
            waited.add_done_callback(self._report_unawaited)
            raise

    def _writer_started(self) -> None:
        self._writer_ident = threading.get_ident()

    def _report_unawaited(self, done: asyncio.Future[Any]) -> None:
        """Log the failure of a write whose caller was cancelled (no one else would see it)."""
        if done.cancelled() or (exc := done.exception()) is None:
            return
        logger.error(
            "a write to state file %s failed after its caller had stopped waiting: %s",
            self.path,
            exc,
        )

    def __enter__(self) -> Self:
        """Return the store itself."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        self.close()

    def __repr__(self) -> str:
        """Name the file, and whether the store is closed."""
        state = "" if self._conn is not None else " closed"
        return f"<Store {str(self.path)!r}{state}>"

    # -- plumbing ------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            msg = f"state file {self.path} is closed"
            raise StoreError(msg)
        return self._conn

    @contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        """Turn sqlite3 and OS errors into StoreError naming the file."""
        try:
            yield
        except sqlite3.Error as exc:
            msg = f"cannot {action} state file {self.path}: {exc}"
            raise StoreError(msg) from exc
        except OSError as exc:
            msg = f"cannot {action} state file {self.path}: {exc.strerror or exc}"
            raise StoreError(msg) from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block as one write transaction: committed on success, else rolled back."""
        with self._lock:
            conn = self._connection()
            # IMMEDIATE takes the write lock up front, so a concurrent writer makes us wait
            # (busy timeout) rather than fail half-way with SQLITE_BUSY on upgrade.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # SQLite may already have rolled back on its own (e.g. after an I/O error).
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._translate(action), self._transaction() as conn:
            yield conn

    def _rows(
        self, action: str, sql: str, params: tuple[object, ...] = ()
    ) -> list[tuple[Any, ...]]:
        with self._translate(action), self._lock:
            return cast(list[tuple[Any, ...]], self._connection().execute(sql, params).fetchall())

    def _json_object(self, text: str, what: str) -> dict[str, Any]:
        """Parse a stored JSON object; anything else means the file was damaged or tampered with."""
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            msg = f"state file {self.path} holds a damaged {what}"
            raise StoreError(msg)
        return cast(dict[str, Any], value)

    def _json_strings(self, text: str, what: str) -> list[str]:
        """Parse a stored JSON array of strings; anything else means the file was damaged."""
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            msg = f"state file {self.path} holds damaged {what}"
            raise StoreError(msg)
        return cast(list[str], value)

    # -- tokens --------------------------------------------------------------------------

    def load_token(self, account: str) -> dict[str, Any] | None:
        """Return the token saved for `account`, or None."""
        rows = self._rows("read", "SELECT token FROM tokens WHERE account = ?", (account,))
        if not rows:
            return None
        return self._json_object(cast(str, rows[0][0]), f"token for account {account!r}")

    def save_token(self, account: str, token: Mapping[str, Any]) -> None:
        """Store `account`'s token, replacing any previous one, durably before returning."""
        text = _dump(token)
        with self._write("write") as conn:
            conn.execute(
                "INSERT INTO tokens (account, token) VALUES (?, ?)"
                " ON CONFLICT (account) DO UPDATE SET token = excluded.token",
                (account, text),
            )

    @asynccontextmanager
    async def token_lock(self, account: str, timeout_s: float = 120.0) -> AsyncIterator[None]:
        """Hold the token lock across processes: one refresh at a time per state file.

        `car2mqtt link` or `car2mqtt vehicles` may run beside the bridge on the same file; a
        rotating refresh token used by two of them at once would be lost to one. The lock is
        an flock on a side file created 0600 (filelock's AsyncFileLock: each try, and the
        release, run on a worker thread, and waiting between tries is an asyncio sleep, so the
        event loop never blocks on it). The side file stays after release: unlinking a locked
        file would let two processes lock two different files of one name.
        """
        path = self.path.with_name(f"{self.path.name}.lock")
        # A new lock object per hold: two holders in one process (two stores on one file, as
        # the bridge and a CLI command in a test) exclude each other as two processes do.
        # fallback_to_soft=False: where flock does not work, fail rather than switch to marker
        # files with other rules.
        lock = AsyncFileLock(path, mode=0o600, poll_interval=0.05, fallback_to_soft=False)
        try:
            await lock.acquire(timeout=timeout_s)
        except Timeout:
            msg = f"another process held the token lock {path} for {timeout_s:.0f} s"
            raise StoreError(msg) from None
        except OSError as exc:
            msg = f"cannot open the token lock {path}: {exc.strerror or exc}"
            raise StoreError(msg) from exc
        try:
            yield
        finally:
            await lock.release()

    def delete_token(self, account: str) -> None:
        """Forget `account`'s token (no error if there is none)."""
        with self._write("write") as conn:
            conn.execute("DELETE FROM tokens WHERE account = ?", (account,))

    # -- vehicles ------------------------------------------------------------------------

    def known_vehicles(self, account: str) -> list[VehicleRef]:
        """Return the cars last seen on `account`, in the order they were saved."""
        rows = self._rows(
            "read",
            "SELECT provider, vehicle_id FROM vehicles WHERE account = ? ORDER BY position",
            (account,),
        )
        return [
            VehicleRef(provider=cast(str, provider), account=account, vehicle_id=cast(str, vid))
            for provider, vid in rows
        ]

    def save_vehicles(self, account: str, refs: Iterable[VehicleRef]) -> None:
        """Replace the set of cars known on `account` with `refs` (duplicates kept once)."""
        unique = list(dict.fromkeys(refs))
        for ref in unique:
            if ref.account != account:
                msg = (
                    f"vehicle {ref.vehicle_id!r} belongs to account {ref.account!r},"
                    f" not {account!r}"
                )
                raise ValueError(msg)
        with self._write("write") as conn:
            conn.execute("DELETE FROM vehicles WHERE account = ?", (account,))
            conn.executemany(
                "INSERT INTO vehicles (account, position, provider, vehicle_id)"
                " VALUES (?, ?, ?, ?)",
                [(account, i, ref.provider, ref.vehicle_id) for i, ref in enumerate(unique)],
            )

    # -- published discovery -------------------------------------------------------------

    def published(self) -> dict[str, frozenset[str]]:
        """Return every discovery topic published, with the entity keys it carries."""
        rows = self._rows("read", "SELECT topic, keys FROM published")
        result: dict[str, frozenset[str]] = {}
        for topic, text in rows:
            keys = self._json_strings(cast(str, text), f"keys for topic {topic!r}")
            result[cast(str, topic)] = frozenset(keys)
        return result

    def record_published(self, topic: str, keys: Iterable[str]) -> None:
        """Record that `topic` now carries exactly `keys` (replacing what it carried before)."""
        text = _dump(sorted(set(keys)))
        with self._write("write") as conn:
            conn.execute(
                "INSERT INTO published (topic, keys) VALUES (?, ?)"
                " ON CONFLICT (topic) DO UPDATE SET keys = excluded.keys",
                (topic, text),
            )

    def forget_published(self, *topics: str) -> None:
        """Forget `topics` (once their retained discovery messages have been cleared)."""
        with self._write("write") as conn:
            conn.executemany("DELETE FROM published WHERE topic = ?", [(t,) for t in topics])

    # -- last states ---------------------------------------------------------------------

    def save_state(self, key: str, topic: str, payload: Mapping[str, Any]) -> None:
        """Store the last `payload` published for `key` on `topic`."""
        text = _dump(payload)
        with self._write("write") as conn:
            conn.execute(
                "INSERT INTO states (key, topic, payload) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET topic = excluded.topic,"
                " payload = excluded.payload",
                (key, topic, text),
            )

    def save_many(
        self,
        *,
        published: Mapping[str, Iterable[str]] | None = None,
        states: Mapping[str, tuple[str, Mapping[str, Any]]] | None = None,
    ) -> None:
        """Record many published topics and states in one transaction: one disk sync per poll."""
        published_rows = [
            (topic, _dump(sorted(set(keys)))) for topic, keys in (published or {}).items()
        ]
        state_rows = [
            (key, topic, _dump(payload)) for key, (topic, payload) in (states or {}).items()
        ]
        if not published_rows and not state_rows:
            return
        with self._write("write") as conn:
            conn.executemany(
                "INSERT INTO published (topic, keys) VALUES (?, ?)"
                " ON CONFLICT (topic) DO UPDATE SET keys = excluded.keys",
                published_rows,
            )
            conn.executemany(
                "INSERT INTO states (key, topic, payload) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET topic = excluded.topic,"
                " payload = excluded.payload",
                state_rows,
            )

    def load_states(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Return every saved state: key -> (topic, payload)."""
        rows = self._rows("read", "SELECT key, topic, payload FROM states")
        return {
            cast(str, key): (cast(str, topic), self._json_object(cast(str, text), f"state {key!r}"))
            for key, topic, text in rows
        }

    def delete_state(self, key: str) -> None:
        """Forget the state saved for `key` (no error if there is none)."""
        with self._write("write") as conn:
            conn.execute("DELETE FROM states WHERE key = ?", (key,))

    # -- removals -------------------------------------------------------------------------

    def begin_removal(self, key: str, topics: Iterable[str]) -> None:
        """Forget car `key`'s discovery and state, and remember that `topics` must be cleared."""
        cleared = list(dict.fromkeys(topics))
        with self._write("write") as conn:
            conn.execute(
                "INSERT INTO removals (key, topics) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET topics = excluded.topics",
                (key, _dump(cleared)),
            )
            conn.executemany("DELETE FROM published WHERE topic = ?", [(t,) for t in cleared])
            conn.execute("DELETE FROM states WHERE key = ?", (key,))
            conn.execute("DELETE FROM commands WHERE key = ?", (key,))
            conn.execute("DELETE FROM vehicle_names WHERE key = ?", (key,))

    def pending_removals(self) -> dict[str, list[str]]:
        """Return the removals not yet sent: car key -> retained topics to clear."""
        rows = self._rows("read", "SELECT key, topics FROM removals")
        return {
            cast(str, key): self._json_strings(cast(str, text), f"removal of {key!r}")
            for key, text in rows
        }

    def finish_removal(self, key: str) -> None:
        """Forget the removal of `key` (sent, or the car came back; no error if there is none)."""
        with self._write("write") as conn:
            conn.execute("DELETE FROM removals WHERE key = ?", (key,))

    # -- names and commands ----------------------------------------------------------------

    def vehicle_names(self) -> dict[str, tuple[str, str]]:
        """Return every car's announced name: key -> (the cloud's name then, announced name)."""
        rows = self._rows("read", "SELECT key, cloud_name, name FROM vehicle_names")
        return {cast(str, k): (cast(str, c), cast(str, n)) for k, c, n in rows}

    def save_vehicle_names(self, names: Mapping[str, tuple[str, str]]) -> None:
        """Record announced names: key -> (the cloud's name, the name announced)."""
        if not names:
            return
        with self._write("write") as conn:
            conn.executemany(
                "INSERT INTO vehicle_names (key, cloud_name, name) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET cloud_name = excluded.cloud_name,"
                " name = excluded.name",
                [(key, cloud, name) for key, (cloud, name) in names.items()],
            )

    def save_command(self, key: str, control: str, result: Mapping[str, Any]) -> None:
        """Store car `key`'s last command on `control` and its fate (JSON)."""
        text = _dump(result)
        with self._write("write") as conn:
            conn.execute(
                "INSERT INTO commands (key, control, result) VALUES (?, ?, ?)"
                " ON CONFLICT (key, control) DO UPDATE SET result = excluded.result",
                (key, control, text),
            )

    def load_commands(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Return every car's last command per control: key -> control -> JSON object."""
        rows = self._rows("read", "SELECT key, control, result FROM commands")
        found: dict[str, dict[str, dict[str, Any]]] = {}
        for key, control, text in rows:
            found.setdefault(cast(str, key), {})[cast(str, control)] = self._json_object(
                cast(str, text), f"command of {key!r}"
            )
        return found

    # -- account status ------------------------------------------------------------------

    def save_account_status(self, account: str, link_state: str, problem: str | None) -> None:
        """Store `account`'s link state and current problem (None when all is well)."""
        with self._write("write") as conn:
            conn.execute(
                "INSERT INTO account_status (account, link_state, problem) VALUES (?, ?, ?)"
                " ON CONFLICT (account) DO UPDATE SET link_state = excluded.link_state,"
                " problem = excluded.problem",
                (account, link_state, problem),
            )

    def account_statuses(self) -> dict[str, tuple[str, str | None]]:
        """Return every account's saved status: account -> (link state, problem)."""
        rows = self._rows("read", "SELECT account, link_state, problem FROM account_status")
        return {
            cast(str, account): (cast(str, link), cast(str | None, problem))
            for account, link, problem in rows
        }

    # -- API calls -----------------------------------------------------------------------

    def load_calls(self, account: str) -> tuple[dict[int, int], dict[str, int], float | None]:
        """Return `account`'s kept counts: by quarter hour, by car, and the cars' month."""
        rows = self._rows(
            "read",
            "SELECT vehicle, period, calls FROM api_calls WHERE account = ?",
            (account,),
        )
        buckets: dict[int, int] = {}
        own: dict[str, int] = {}
        month: float | None = None
        for vehicle, period, calls in rows:
            if vehicle == "":
                buckets[int(cast(float, period))] = cast(int, calls)
            else:
                own[cast(str, vehicle)] = cast(int, calls)
                month = cast(float, period)
        return buckets, own, month

    def save_calls(
        self, account: str, month: float, buckets: Mapping[int, int], own: Mapping[str, int]
    ) -> None:
        """Replace `account`'s kept counts with this month's."""
        with self._write("write") as conn:
            conn.execute("DELETE FROM api_calls WHERE account = ?", (account,))
            conn.executemany(
                "INSERT INTO api_calls (account, vehicle, period, calls) VALUES (?, '', ?, ?)",
                [(account, float(b), n) for b, n in buckets.items()],
            )
            conn.executemany(
                "INSERT INTO api_calls (account, vehicle, period, calls) VALUES (?, ?, ?, ?)",
                [(account, v, month, n) for v, n in own.items()],
            )

    # -- meta ----------------------------------------------------------------------------

    def get_meta(self, name: str) -> str | None:
        """Return the meta value `name`, or None."""
        rows = self._rows("read", "SELECT value FROM meta WHERE name = ?", (name,))
        return cast(str, rows[0][0]) if rows else None

    def set_meta(self, name: str, value: str) -> None:
        """Store the meta value `name`."""
        with self._write("write") as conn:
            conn.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    def delete_meta(self, name: str) -> None:
        """Forget the meta value `name` (no error if there is none)."""
        with self._write("write") as conn:
            conn.execute("DELETE FROM meta WHERE name = ?", (name,))
