"""The `history` section: where history goes, how long it stays, and its secret URL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from car2mqtt.config import Config, describe
from car2mqtt.errors import ConfigError
from car2mqtt.history.postgres import PostgresHistory
from car2mqtt.history.sqlite import SqliteHistory
from car2mqtt.providers.registry import load_config
from car2mqtt.runtime import history_options, secrets_of

ACCOUNT = {
    "name": "home",
    "provider": "enode",
    "client_id": "x",
    "client_secret": "y",
    "user_id": "u",
    "environment": "sandbox",
}


def config_with(tmp_path: Path, history: object = None, **env: str) -> Config:
    document: dict[str, object] = {"store": str(tmp_path / "state.db"), "accounts": [ACCOUNT]}
    if history is not None:
        document["history"] = history
    path = tmp_path / "car2mqtt.yaml"
    path.write_text(json.dumps(document))
    return load_config(path, env=env)


def test_by_default_history_is_sqlite_beside_the_state_file(tmp_path: Path) -> None:
    config = config_with(tmp_path)
    options = history_options(config)
    assert options is not None
    assert isinstance(options.backend, SqliteHistory)
    assert options.backend.path == tmp_path / "state-history.db"
    assert options.retention.samples_s == 400 * 86400
    assert (options.retention.sessions_s, options.retention.trips_s) == (None, None)


def test_off_records_nothing(tmp_path: Path) -> None:
    assert history_options(config_with(tmp_path, {"enabled": False})) is None
    assert "history: off" in describe(config_with(tmp_path, {"enabled": False}))


def test_a_postgresql_url_is_a_secret(tmp_path: Path) -> None:
    url = "postgresql://bob:hunter2@db.example:5432/cars"
    config = config_with(tmp_path, {"keep_samples_days": 30}, CAR2MQTT__HISTORY__URL=url)
    options = history_options(config)
    assert options is not None
    assert isinstance(options.backend, PostgresHistory)
    assert options.retention.samples_s == 30 * 86400
    said = "\n".join(describe(config))
    assert "PostgreSQL postgresql://db.example:5432/cars" in said
    assert "hunter2" not in said
    assert "hunter2" in secrets_of(config)  # the log redactor hides it, alone too
    assert url in secrets_of(config)


def test_zones_reach_the_recorder(tmp_path: Path) -> None:
    path = tmp_path / "car2mqtt.yaml"
    zones = [{"name": "home", "latitude": 59.91, "longitude": 10.75, "radius_m": 150}]
    path.write_text(json.dumps({"zones": zones, "accounts": [ACCOUNT]}))
    options = history_options(load_config(path, env={}))
    assert options is not None
    assert [(z.name, z.radius_m) for z in options.zones] == [("home", 150.0)]
    path.write_text(json.dumps({"zones": zones + zones, "accounts": [ACCOUNT]}))
    with pytest.raises(ConfigError, match="two zones are named 'home'"):
        load_config(path, env={})


def test_a_password_in_the_query_is_hidden_too(tmp_path: Path) -> None:
    url = "postgresql://db.example/cars?user=bob&password=hun%2Fter2&sslmode=require"
    config = config_with(tmp_path, {"url": url})
    said = "\n".join(describe(config))
    assert "PostgreSQL postgresql://db.example/cars" in said
    assert "hun" not in said
    assert {"hun%2Fter2", "hun/ter2"} <= set(secrets_of(config))


@pytest.mark.parametrize(
    ("history", "needle"),
    [
        ({"url": "postgresql://[bad/x"}, "not a database URL"),
        ({"url": "postgresql://db:port/x"}, "not a database URL"),
        ({"url": "mysql://x"}, "expected postgresql://"),
        ({"keep_samples_days": 0}, "keep_samples_days"),
        ({"queue": 5}, "queue"),
        ({"engine": "x"}, "engine"),
    ],
)
def test_bad_history_settings_are_named(tmp_path: Path, history: object, needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_with(tmp_path, history)
    assert needle in str(caught.value)
    assert "Traceback" not in str(caught.value)
