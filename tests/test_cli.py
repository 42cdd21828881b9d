"""The command line, run as users run it: in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

CLI = [sys.executable, "-m", "car2mqtt"]


def run(args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion; the tests judge its exit code themselves."""
    return subprocess.run(args, check=False, **kw)


@contextmanager
def started(*args: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


def test_simulate_announces_itself_on_the_first_line() -> None:
    with started("simulate", "--port", "0", "--vehicles", "2", "--seed", "5") as proc:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
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
        with started("simulate", "--port", "0", *args) as proc:
            assert proc.stdout is not None
            info = json.loads(proc.stdout.readline())
            admin = httpx.get(info["adminUrl"]).json()
            assert admin["now"] == "2026-03-01T08:00:00.000Z"
            first = info["users"]["zoe"][0]
            bodies.append(httpx.get(f"{info['adminUrl']}/enode/vehicles/{first}").json())
    assert bodies[0] == bodies[1]


def test_bad_start_time() -> None:
    result = run(
        [*CLI, "simulate", "--start", "yesterday"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "'yesterday' is not an ISO 8601 time" in result.stderr


def test_bad_options_are_one_clear_line() -> None:
    result = run(
        [*CLI, "simulate", "--faults", "chaos"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "unknown profile 'chaos'" in result.stderr
    assert "flaky" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run(
            [*CLI, "simulate", "--port", str(port)], capture_output=True, text=True, timeout=30
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_version() -> None:
    result = run([*CLI, "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout.startswith("car2mqtt ")
