"""Test helpers: real servers on loopback, and a spec-checking Enode client."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from car2mqtt.net import base_url, bind
from car2mqtt.simulator.app import SimOptions, build_simulation
from car2mqtt.simulator.server import server_for
from tests.enode_spec import EnodeSpec

CLI = [sys.executable, "-m", "car2mqtt"]

# A fixed start time makes frozen-clock runs byte-for-byte reproducible.
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
API_VERSION = "2024-10-01"


@contextmanager
def serve_in_thread(server: uvicorn.Server, sock: Any) -> Iterator[None]:
    """Run a uvicorn server on a bound socket in a background thread."""
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            msg = "server did not start"
            raise RuntimeError(msg)
        time.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass
class Sim:
    """A simulator running on loopback, seen only through HTTP."""

    url: str
    info: dict[str, Any]

    @property
    def admin(self) -> str:
        """Base URL of the admin API."""
        return f"{self.url}/admin"

    @property
    def enode(self) -> str:
        """Base URL of the Enode API."""
        return f"{self.url}/enode"

    def vehicle_ids(self, user: str = "demo") -> list[str]:
        """Ids of the user's pre-linked vehicles."""
        return list(self.info["users"].get(user, []))

    def advance(self, seconds: float) -> None:
        """Move simulated time forward."""
        r = httpx.post(f"{self.admin}/clock/advance", json={"seconds": seconds})
        assert r.status_code == 200, r.text

    def admin_call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """Call the admin API."""
        return httpx.request(method, f"{self.admin}{path}", json=body, timeout=10)

    def live(self, vehicle_id: str) -> dict[str, Any]:
        """The car's physical truth and the API's cached view of it."""
        r = self.admin_call("GET", f"/enode/vehicles/{vehicle_id}")
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    def refresh(self, vehicle_id: str) -> dict[str, Any]:
        """Force the cache refresh Enode would do on its own schedule."""
        r = self.admin_call("POST", f"/enode/vehicles/{vehicle_id}/refresh")
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()["cached"]
        return data


@contextmanager
def running_sim(**overrides: Any) -> Iterator[Sim]:
    """Start a simulator (frozen clock, fixed start) with `overrides`, on a free port."""
    options = SimOptions(**{"time_factor": 0.0, "start": START, **overrides})
    sock = bind("127.0.0.1", 0)
    sim = build_simulation(options)
    url = base_url(sock)
    info = sim.describe(url)
    with serve_in_thread(server_for(sim, sock), sock):
        yield Sim(url, info)


class EnodeClient:
    """A plain HTTP client for the simulated Enode that checks every answer against the spec."""

    def __init__(self, sim: Sim, spec: EnodeSpec, *, timeout: float = 10.0) -> None:
        self.sim = sim
        self.spec = spec
        self.http = httpx.Client(base_url=sim.enode, timeout=timeout)
        self._token: str | None = None

    def close(self) -> None:
        """Release the connection pool."""
        self.http.close()

    def token(self, *, fresh: bool = False) -> str:
        """Return a client-credentials access token."""
        if self._token is None or fresh:
            creds = self.sim.info["enode"]
            r = self.http.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=(creds["clientId"], creds["clientSecret"]),
            )
            assert r.status_code == 200, r.text
            self._token = r.json()["access_token"]
        assert self._token is not None
        return self._token

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        check: bool = True,
    ) -> httpx.Response:
        """Call the API; unless `check` is False, validate the answer against the spec."""
        send_headers = {
            "Authorization": f"Bearer {token if token is not None else self.token()}",
            "Enode-Version": API_VERSION,
            **(headers or {}),
        }
        r = self.http.request(method, path, json=json_body, params=params, headers=send_headers)
        if check:
            body = r.json() if r.content else None
            self.spec.validate_response(
                method, path, r.status_code, body, r.headers.get("content-type")
            )
            if json_body is not None and r.status_code < 400:
                self.spec.validate_request(method, path, json_body)
        return r

    def get(self, path: str, **kw: Any) -> httpx.Response:
        """GET `path`."""
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        """POST `body` as JSON to `path`."""
        return self.request("POST", path, json_body=body, **kw)

    def all_vehicles(self, path: str = "/vehicles", page_size: int = 50) -> list[dict[str, Any]]:
        """Follow `after` cursors to the end and return every vehicle."""
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"pageSize": page_size}
        while True:
            r = self.get(path, params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            out.extend(page["data"])
            if page["pagination"]["after"] is None:
                return out
            params = {"pageSize": page_size, "after": page["pagination"]["after"]}


@dataclass
class Delivery:
    """One request a webhook receiver got."""

    headers: dict[str, str]
    body: bytes

    @property
    def events(self) -> list[dict[str, Any]]:
        """The decoded event array."""
        data: list[dict[str, Any]] = json.loads(self.body)
        return data

    def signature_ok(self, secret: str) -> bool:
        """Whether the X-Enode-Signature header matches HMAC-SHA1 of the raw body."""
        expected = "sha1=" + hmac.new(secret.encode(), self.body, hashlib.sha1).hexdigest()
        return hmac.compare_digest(expected, self.headers.get("x-enode-signature", ""))


@dataclass
class Receiver:
    """A webhook endpoint on loopback that records what it gets and answers as told."""

    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers to give, in order; then 200

    def events(self) -> list[dict[str, Any]]:
        """Every event received, in order."""
        return [e for d in self.deliveries for e in d.events]

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until some received events satisfy `predicate`; return those."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events() if predicate(e)]
            if found:
                return found
            time.sleep(0.02)
        seen = [e.get("event") for e in self.events()]
        msg = f"no matching webhook event within {timeout}s; got {seen}"
        raise AssertionError(msg)

    def wait_deliveries(self, count: int, timeout: float = 5.0) -> None:
        """Wait until at least `count` deliveries arrived."""
        deadline = time.monotonic() + timeout
        while len(self.deliveries) < count:
            if time.monotonic() > deadline:
                msg = f"expected {count} deliveries, got {len(self.deliveries)}"
                raise AssertionError(msg)
            time.sleep(0.02)


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    """Start a webhook receiver on a free loopback port."""
    sock = bind("127.0.0.1", 0)
    receiver = Receiver(url=f"{base_url(sock)}/hook")

    async def hook(request: Request) -> Response:
        receiver.deliveries.append(Delivery(dict(request.headers), await request.body()))
        status = receiver.statuses.pop(0) if receiver.statuses else 200
        return Response("ok" if status < 300 else "nope", status_code=status)

    app: ASGIApp = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    with serve_in_thread(uvicorn.Server(config), sock):
        yield receiver


@contextmanager
def started_cli(
    *args: str, stop: signal.Signals = signal.SIGINT, stdin: bool = False
) -> Iterator[subprocess.Popen[str]]:
    """Run `car2mqtt ARGS` as users do; stop it with `stop` (if still running) at the end.

    With `stdin`, the test types into the command through `proc.stdin`; otherwise it reads
    from /dev/null.
    """
    proc = subprocess.Popen(
        [*CLI, *args],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(stop)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `car2mqtt ARGS` to completion; the caller judges the exit code."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(  # noqa: PLW1510
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def table_row(output: str, first_cell: str) -> dict[str, str]:
    """Return the row of a rich table (as printed) whose first cell is `first_cell`, by column."""

    def cells(line: str, bar: str) -> list[str]:
        return [cell.strip() for cell in line.strip().strip(bar).split(bar)]

    lines = output.splitlines()
    header = next(cells(line, "┃") for line in lines if line.strip().startswith("┃"))
    for line in lines:
        if line.strip().startswith("│"):
            row = cells(line, "│")
            if row[0] == first_cell:
                return dict(zip(header, row, strict=True))
    msg = f"no row {first_cell!r} in:\n{output}"
    raise AssertionError(msg)
