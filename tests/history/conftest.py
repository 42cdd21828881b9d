"""History fixtures: a real throwaway PostgreSQL server, and each backend opened fresh."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from car2mqtt.history.postgres import PostgresHistory
from car2mqtt.history.records import HistoryBackend
from car2mqtt.history.sqlite import SqliteHistory
from tests.bridge.conftest import mosquitto  # noqa: F401 - a fixture for the recorder's tests
from tests.mqtt_support import free_port

PG_PASSWORD = "pg-s3cret-history"  # a login that must never reach a log line


def _pg_bin() -> Path:
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin/initdb") if p.parts[4].isdigit()]
    assert found, "PostgreSQL is not installed: scripts/test installs it (apt postgresql)"
    return max(found, key=lambda p: int(p.parts[4])).parent  # the newest major version


def _as_postgres(*command: str) -> None:
    # initdb and the server refuse to run as root: as the user Debian's package makes.
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *command], check=True, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server on a free loopback port, with a password: its admin URL."""
    bin_dir = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix="car2mqtt-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
    password_file = root / "password"
    password_file.write_text(PG_PASSWORD)
    if os.geteuid() == 0:
        os.chown(password_file, user.pw_uid, user.pw_gid)
    data, port = root / "data", free_port()
    _as_postgres(
        str(bin_dir / "initdb"),
        "-D",
        str(data),
        "-U",
        "postgres",
        "-A",
        "scram-sha-256",
        f"--pwfile={password_file}",
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
        "--no-sync",
    )
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {root} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    log = root / "server.log"
    _as_postgres(
        str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o", options, "start"
    )
    try:
        yield f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:{port}"
    finally:
        _as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the server: its URL."""
    name = f"history_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres_server}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Each history backend in turn."""
    kind: str = request.param
    return kind


@pytest.fixture
def history_url(backend_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Where the backend under test keeps history, as `history.url` says it."""
    if backend_kind == "sqlite":
        return f"sqlite://{tmp_path / 'history.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def backend_for(url: str) -> HistoryBackend:
    """The backend `url` names (sqlite:///path or postgresql://...)."""
    if url.startswith("sqlite:///"):
        return SqliteHistory(Path(url.removeprefix("sqlite://")))
    return PostgresHistory(url)


@pytest.fixture
async def backend(history_url: str) -> AsyncIterator[HistoryBackend]:
    """The backend under test, opened (migrated) and closed after the test."""
    opened = backend_for(history_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
