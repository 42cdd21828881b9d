"""The history schema as versioned migrations, one list per database, applied in order.

A migration is never changed once released: a new version appends one. Both databases get the
same tables and columns; only the types differ (SQLite's REAL and INTEGER, PostgreSQL's DOUBLE
PRECISION and BOOLEAN).
"""

from __future__ import annotations

from collections.abc import Sequence

_TABLES = """
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    started_at {real} NOT NULL,
    ended_at {real},
    energy_kwh {real} NOT NULL,
    energy_source TEXT NOT NULL,
    soc_from {real},
    soc_to {real},
    peak_kw {real},
    mean_kw {real},
    charging_s {real} NOT NULL,
    spans INTEGER NOT NULL,
    latitude {real},
    longitude {real},
    zone TEXT,
    by_command {bool} NOT NULL
);
CREATE INDEX sessions_by_car ON sessions (key, started_at);
CREATE INDEX sessions_ended ON sessions (key, ended_at);
CREATE INDEX sessions_open ON sessions (ended_at);
CREATE TABLE trips (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    started_at {real} NOT NULL,
    ended_at {real},
    distance_km {real},
    start_odometer_km {real},
    end_odometer_km {real},
    start_latitude {real},
    start_longitude {real},
    end_latitude {real},
    end_longitude {real},
    source TEXT NOT NULL,
    start_zone TEXT,
    end_zone TEXT
);
CREATE INDEX trips_by_car ON trips (key, started_at);
CREATE INDEX trips_ended ON trips (key, ended_at);
CREATE INDEX trips_open ON trips (ended_at);
CREATE TABLE samples (
    key TEXT NOT NULL,
    at {real} NOT NULL,
    battery_pct {real},
    range_km {real},
    odometer_km {real},
    PRIMARY KEY (key, at)
);
CREATE INDEX samples_at ON samples (at);
CREATE TABLE totals (
    key TEXT PRIMARY KEY,
    energy_kwh {real} NOT NULL
)
"""


def _statements(real: str, boolean: str) -> tuple[str, ...]:
    text = _TABLES.format(real=real, bool=boolean)
    return tuple(s.strip() for s in text.split(";") if s.strip())


# version -> the statements that bring the schema from version - 1 to it
SQLITE_MIGRATIONS: Sequence[tuple[int, tuple[str, ...]]] = ((1, _statements("REAL", "INTEGER")),)
POSTGRES_MIGRATIONS: Sequence[tuple[int, tuple[str, ...]]] = (
    (1, _statements("DOUBLE PRECISION", "BOOLEAN")),
)
VERSION = SQLITE_MIGRATIONS[-1][0]

SESSION_COLUMNS = (
    "id",
    "key",
    "started_at",
    "ended_at",
    "energy_kwh",
    "energy_source",
    "soc_from",
    "soc_to",
    "peak_kw",
    "mean_kw",
    "charging_s",
    "spans",
    "latitude",
    "longitude",
    "zone",
    "by_command",
)
TRIP_COLUMNS = (
    "id",
    "key",
    "started_at",
    "ended_at",
    "distance_km",
    "start_odometer_km",
    "end_odometer_km",
    "start_latitude",
    "start_longitude",
    "end_latitude",
    "end_longitude",
    "source",
    "start_zone",
    "end_zone",
)
