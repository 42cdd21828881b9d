"""The command line, run as users run it: in a subprocess."""

from __future__ import annotations

import json
import socket

import httpx

from tests.support import run_cli, started_cli


def test_simulate_announces_itself_on_the_first_line() -> None:
    with started_cli(
        "simulate",
        "--port",
        "0",
        "--vehicles",
        "2",
        "--seed",
        "5",
        "--xee-vehicles",
        "3",
        "--xee-token-ttl",
        "600",
    ) as proc:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        xee = info["xee"]
        assert xee["tokenUrl"].endswith("/xee/v4/oauth/token")
        assert xee["authorizeUrl"].endswith("/xee/v4/oauth/authorize")
        assert [len(cars) for cars in xee["users"].values()] == [3]
        grant = httpx.post(
            xee["tokenUrl"],
            data={
                "grant_type": "password",
                "username": xee["username"],
                "password": xee["password"],
            },
            auth=(xee["clientId"], xee["clientSecret"]),
        )
        assert grant.status_code == 200, grant.text
        assert grant.json()["expires_in"] == 600
        assert info["enode"]["apiVersion"] == "2024-10-01"
        assert info["enode"]["tokenUrl"].endswith("/enode/oauth2/token")
        assert len(info["users"]["demo"]) == 2
        assert info["seed"] == 5
        r = httpx.post(
            info["enode"]["tokenUrl"],
            data={"grant_type": "client_credentials"},
            auth=(info["enode"]["clientId"], info["enode"]["clientSecret"]),
        )
        assert r.status_code == 200
    assert proc.returncode == 0


def test_same_seed_same_run_across_processes() -> None:
    bodies = []
    args = ("--seed", "11", "--user", "zoe", "--time-factor", "0", "--start", "2026-03-01T08:00Z")
    for _ in range(2):
        with started_cli("simulate", "--port", "0", *args) as proc:
            assert proc.stdout is not None
            info = json.loads(proc.stdout.readline())
            admin = httpx.get(info["adminUrl"]).json()
            assert admin["now"] == "2026-03-01T08:00:00.000Z"
            first = info["users"]["zoe"][0]
            bodies.append(httpx.get(f"{info['adminUrl']}/enode/vehicles/{first}").json())
    assert bodies[0] == bodies[1]


def test_bad_start_time() -> None:
    result = run_cli("simulate", "--start", "yesterday")
    assert result.returncode == 2
    assert "'yesterday' is not an ISO 8601 time" in result.stderr


def test_bad_options_are_one_clear_line() -> None:
    result = run_cli("simulate", "--faults", "chaos")
    assert result.returncode == 2
    assert "unknown profile 'chaos'" in result.stderr
    assert "flaky" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("simulate", "--port", str(port))
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("car2mqtt ")


def test_cli_profile_names_match_the_simulator() -> None:
    from car2mqtt.cli import PROFILES
    from car2mqtt.simulator.faults import PROFILES as SIMULATOR_PROFILES

    assert tuple(SIMULATOR_PROFILES) == PROFILES
