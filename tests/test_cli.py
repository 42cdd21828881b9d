"""The command line, run as users run it: in a subprocess."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from car2mqtt.cli import _budget_lines
from tests.support import CLI, Sim, run_cli, running_sim, started_cli


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


COMMANDS: tuple[list[str], ...] = (
    [],
    ["demo"],
    ["simulate"],
    ["run"],
    ["vehicles"],
    ["status"],
    ["config"],
    ["config", "check"],
    ["link"],
    ["link", "enode"],
    ["link", "xee"],
    ["mqtt"],
    ["mqtt", "watch"],
    ["mqtt", "publish"],
    ["sim-admin"],
)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "car2mqtt")
def test_help_shows_no_type_noise(command: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: " in result.stdout
    noise = re.findall(r"<(?:bool|str|int|float|path|list)[^>]*>", result.stdout)
    assert noise == [], result.stdout


def two_account_config(tmp_path: Path, sim: Sim) -> Path:
    enode, xee = sim.info["enode"], sim.info["xee"]
    config = {
        "store": str(tmp_path / "car2mqtt.db"),
        "accounts": [
            {
                "name": "home",
                "provider": "enode",
                "api_url": enode["apiUrl"],
                "token_url": enode["tokenUrl"],
                "client_id": enode["clientId"],
                "client_secret": enode["clientSecret"],
                "user_id": "demo",
            },
            {
                "name": "car",
                "provider": "xee",
                "api_url": xee["apiUrl"],
                "client_id": xee["clientId"],
                "client_secret": xee["clientSecret"],
                "username": xee["username"],
                "password": xee["password"],
            },
        ],
    }
    path = tmp_path / "car2mqtt.yaml"
    path.write_text(json.dumps(config))
    return path


def test_linking_an_account_of_the_other_cloud_names_it_properly(tmp_path: Path) -> None:
    with running_sim() as sim:
        path = two_account_config(tmp_path, sim)
        enode = run_cli("link", "xee", "--account", "home", "--config", str(path))
        xee = run_cli("link", "enode", "--account", "car", "--config", str(path))
    assert enode.returncode == xee.returncode == 2
    assert "account 'home' is an Enode account: use car2mqtt link enode --account home" in (
        enode.stderr
    )
    assert "account 'car' is a Xee account: use car2mqtt link xee --account car" in xee.stderr


def vehicles_at(path: Path, columns: int) -> str:
    env = {**os.environ, "COLUMNS": str(columns)}
    result = subprocess.run(  # noqa: PLW1510
        [*CLI, "vehicles", "--config", str(path)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def vehicle_rows(table: str) -> list[dict[str, str]]:
    """The rows of the vehicles table, cut at its header's column starts."""
    lines = table.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("account"))
    names = header.split()
    starts = [header.index(f" {name} ") + 1 for name in names[:-1]]
    starts.append(header.rindex(names[-1]))
    bounds = [*starts[1:], None]
    rows = lines[lines.index(header) + 1 :]
    return [
        {n: line[a:b].strip() for n, a, b in zip(names, starts, bounds, strict=True)}
        for line in rows
        if line.strip()
    ]


def test_vehicles_never_cuts_ids_and_shows_only_what_a_car_can_have(tmp_path: Path) -> None:
    with running_sim() as sim:
        path = two_account_config(tmp_path, sim)
        wide, narrow = vehicles_at(path, 120), vehicles_at(path, 70)
        enode_ids = sim.vehicle_ids()
    rows = {row["vehicle"]: row for row in vehicle_rows(wide.replace("last seen", "last_seen"))}
    assert set(enode_ids) < set(rows)  # whole ids, in a table that fits 120 columns
    for vehicle_id in enode_ids:
        assert f"  {vehicle_id}  " in narrow  # too narrow for the table: still whole
    for table in (wide, narrow):
        assert "…" not in table
        assert "unknown" not in table
    [golf] = [row for row in rows.values() if row["name"] == "Volkswagen Golf"]
    assert golf["charging"] == golf["battery"] == ""  # a petrol car never charges
    assert golf["fuel"].endswith(" l")
    assert "charging" not in narrow.split("Volkswagen Golf")[1].splitlines()[1]
    assert rows[enode_ids[0]]["charging"] in ("unplugged", "charging", "initializing")


def test_status_says_each_accounts_budget_from_the_health() -> None:
    budget = {
        "calls_hour": 3,
        "calls_today": 14,
        "calls_month": 420,
        "calls_per_vehicle_month": 500,
        "calls_per_month": None,
        "left": 80,
        "poll_interval_s": 5772.8,
    }
    health = {"accounts": {"home": {"budget": budget}, "car": {"budget": None}}}
    assert _budget_lines(health) == [
        "home: API calls 3 in the last hour, 14 today, 420 this month; 80 of 500 left; "
        "polling every 96 min"
    ]
    assert _budget_lines({}) == []
