#!/usr/bin/env python3
"""Benchmark the bridge: API calls, steady-state CPU and memory, publish latency and throughput.

Everything runs against the real simulator (`car2mqtt simulate`, a subprocess, time factor 1)
and a real mosquitto (a subprocess). Two kinds of runs:

A. **The bridge as its own process**, once per fleet size: `python -m car2mqtt run --config X`
   with a generated configuration (`poll_interval_s: 60`, the configuration's minimum). An MQTT
   probe in this process watches `car2mqtt/bridge/state`, which the bridge publishes at the end
   of every poll and every heartbeat, and every vehicle's state topic. A thread samples the
   bridge process's CPU time and RSS with psutil every 0.1 s.

   1. *API calls.* The simulator counts every Enode request, token requests included
      (`GET /admin` -> `apiCalls.enode`). The count is read right after each poll has ended,
      so calls per poll are exact. The bridge's own `api_calls` (in `bridge/state`, which
      excludes token requests) tells token requests apart. Per vehicle-hour figures are
      extrapolated from the measured calls per poll, for a 60 s and a 300 s poll.
   2. *CPU and RSS.* Warm-up: until the first poll has ended (every vehicle published). The
      window then runs from that poll's end over `--cycles` further polls. Each poll's CPU is
      the process's CPU time between the poll's start (previous end + 60 s: the bridge sleeps
      a fixed interval after each poll) and its end, minus the idle rate; the idle rate is the
      CPU rate outside every poll and heartbeat. The heartbeat (`heartbeat_s: 60` here, so
      the window holds about one per poll, as the default 300/300 configuration does per five
      minutes) is attributed the same way. The five-minute estimate is
      idle + (poll CPU + heartbeat CPU) / 300 s.

B. **The bridge in this process** (`car2mqtt.runtime.running`), where it can be watched:

   3. *Latency.* `EnodeProvider.pages` is wrapped to note when the page (the cloud's answer)
      carrying a vehicle's new battery level arrives. A battery level is changed through the
      admin API (`PUT .../battery`, then `POST .../refresh` so the cloud's cache holds it);
      the probe notes when the state message with that level arrives. Latency = arrival -
      page arrival: the bridge's own processing plus the broker round trip, not the wait for
      the next poll. Polls run every second here.
   4. *Throughput.* `bridge.republish()` (every discovery, availability, state and location
      message, store writes included) against a bare aiomqtt loop that publishes exactly the
      same topics and payloads (QoS 1, retained) to the same broker, alternating.

Results go to a JSON file; a markdown summary with PASS/FAIL per target goes to stdout.
Progress goes to stderr. Nothing is asserted: this is a measurement tool.

Usage:
    .venv/bin/python bench/bridge_bench.py [--vehicles N [N ...]] [--cycles C] [--quick]
                                           [--latency-vehicles N [N ...]] [--changes K]
                                           [--throughput-vehicles N] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import functools
import json
import logging
import math
import os
import queue
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, Self

import aiomqtt
import httpx
import psutil
import yaml

import common
from car2mqtt.bridge.timing import Timing
from car2mqtt.clock import SystemClock
from car2mqtt.models import VehicleState
from car2mqtt.mqtt.link import BrokerSettings
from car2mqtt.mqtt.topics import Topics
from car2mqtt.providers.enode import EnodeProvider
from car2mqtt.runtime import Running, running
from car2mqtt.store import Store

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results" / "bridge.json"
DEFAULT_SCALES = (1, 100, 1_000, 10_000)
DEFAULT_LATENCY_SCALES = (100, 1_000)
DEFAULT_THROUGHPUT_VEHICLES = 1_000

# The product's targets.
TARGET_VEHICLES = 10_000
TARGET_POLL_S = 300.0  # "at a 5-minute poll"
TARGET_CPU_PCT = 10.0  # of one core
TARGET_RSS_MB = 250.0
TARGET_HOME_VEHICLES = 3
TARGET_HOME_RSS_MB = 60.0
TARGET_VEHICLES_PER_LIST_CALL = 50
TARGET_TOKENS_PER_HOUR = 1

POLL_INTERVAL_S = 60  # the configuration's minimum
ACTIVE_POLL_INTERVAL_S = 120.0  # Enode's: the bridge polls this often while any car charges
HEARTBEAT_S = 60  # one heartbeat per poll, as the default 300/300 has per five minutes
TOKEN_TTL_S = 3_599.0  # the simulator's (and Enode's) access token lifetime
TOKEN_LEEWAY_S = 120.0  # car2mqtt.auth.tokens.RENEW_LEEWAY_S

BASE_TOPIC = "car2mqtt"
BRIDGE_STATE_TOPIC = f"{BASE_TOPIC}/bridge/state"
STATE_PATTERN = f"{BASE_TOPIC}/enode/+/state"
MB = 1_000_000  # RSS in MB of 10^6 bytes, as in sim_bench
SAMPLE_S = 0.1  # psutil sampling period of the bridge process
# Each poll or heartbeat span starts this much before its estimated start (the heartbeat task
# starts a little before the connect message that dates it) and ends this much after the
# `bridge/state` that ends it (CPU time is read every SAMPLE_S and counted in 10 ms ticks).
# The slack is idle time, whose CPU is subtracted at the idle rate.
LEAD_S = 1.0
TAIL_S = 0.3
STARTUP_TIMEOUT_S = 300.0  # simulator and mosquitto
STOP_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = 60.0
LOG_TAIL_CHARS = 4_000
LATENCY_POLL_S = 1.0
IN_PROCESS_LIMIT_S = 1_800.0  # for one in-process measurement, startup included
STOP_GRACE_S = 60.0  # for the in-process bridge to stop once cancelled


class TeardownHang(RuntimeError):
    """The in-process bridge did not stop when cancelled; its results are still valid."""


def say(message: str) -> None:
    """Report progress on stderr, so stdout stays a clean markdown report."""
    print(f"[bridge_bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- results -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Event:
    """One `bridge/state` message: the end of a poll, a heartbeat or a (re)connect."""

    t: float  # perf_counter at arrival
    kind: str  # "poll", "heartbeat" or "other"
    vehicles: int
    api_calls: int  # the bridge's own count: Enode API calls, token requests excluded
    states_since: int  # distinct vehicle state topics since the previous bridge/state
    sim_calls: int | None = None  # the simulator's count (tokens included), read after a poll
    cpu_s: float | None = None  # attributed CPU, idle rate subtracted
    busy_s: float | None = None  # start to end
    overlapped: bool = False


@dataclass(slots=True)
class ScaleResult:
    """The bridge as its own process against one fleet size."""

    vehicles: int
    command: list[str]
    heartbeat_s: int
    poll_interval_s: int = POLL_INTERVAL_S
    first_poll_s: float | None = None  # from Popen to the end of the first poll
    first_poll_cpu_s: float | None = None
    startup_rss_max_mb: float | None = None
    startup_calls: int | None = None  # simulator count at the end of the first poll
    window_s: float | None = None
    polls: int = 0
    heartbeats: int = 0
    window_calls: int | None = None  # simulator count over the window
    window_bridge_calls: int | None = None
    calls_per_poll: float | None = None
    list_calls_per_poll: float | None = None
    token_calls_in_window: int | None = None
    pages_expected: int = 0
    poll_cpu_s: float | None = None  # mean per poll
    poll_cpu_max_s: float | None = None
    poll_wall_s: float | None = None  # mean duration
    heartbeat_cpu_s: float | None = None
    heartbeat_wall_s: float | None = None
    heartbeat_cpu_est_s: float | None = None  # scaled from a smaller fleet when switched off
    heartbeat_est_from: int | None = None
    idle_pct: float | None = None
    window_cpu_s: float | None = None
    avg_pct_60s: float | None = None  # the window's plain average
    rss_start_mb: float | None = None
    rss_max_mb: float | None = None
    rss_end_mb: float | None = None
    busy_vehicles: int | None = None  # charging or driving, as last published
    cpu_pct_samples_1s: list[float] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    shutdown_s: float | None = None
    exit_code: int | None = None
    killed: bool = False
    log_problems: list[str] = field(default_factory=list)
    log_tail: str = ""
    error: str | None = None

    def calls_per_vehicle_hour(self, poll_s: float, *, tokens: bool = True) -> float | None:
        """Extrapolate the measured calls per poll to one vehicle-hour at `poll_s`."""
        if self.list_calls_per_poll is None or self.vehicles == 0:
            return None
        per_hour = self.list_calls_per_poll * 3600.0 / poll_s
        if tokens:
            per_hour += 3600.0 / (TOKEN_TTL_S - TOKEN_LEEWAY_S)
        return per_hour / self.vehicles

    @property
    def heartbeat_cpu(self) -> float:
        """CPU seconds per heartbeat: measured, else scaled from a smaller fleet, else 0."""
        if self.heartbeat_cpu_s is not None:
            return self.heartbeat_cpu_s
        return self.heartbeat_cpu_est_s or 0.0

    def cpu_pct_at(self, poll_s: float, heartbeat_s: float = TARGET_POLL_S) -> float | None:
        """Average CPU (% of one core) with a poll every `poll_s` and a heartbeat every 300 s."""
        if self.poll_cpu_s is None or self.idle_pct is None:
            return None
        heartbeat = self.heartbeat_cpu
        return self.idle_pct + (self.poll_cpu_s / poll_s + heartbeat / heartbeat_s) * 100.0


@dataclass(slots=True)
class LatencyResult:
    """From the cloud's page carrying a change to the probe receiving its state message."""

    vehicles: int
    changes: int
    received: int
    lost: int
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    min_ms: float | None = None
    mean_ms: float | None = None
    change_to_receive_p50_ms: float | None = None  # includes waiting for the next poll
    poll_wall_p50_ms: float | None = None  # poll() itself: HTTP pages and parsing
    cycle_p50_ms: float | None = None  # poll return to poll return
    startup_s: float | None = None
    error: str | None = None
    log_problems: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ThroughputResult:
    """`bridge.republish()` against a bare aiomqtt loop sending the same messages."""

    vehicles: int
    rounds: int
    messages: int = 0  # per round
    state_messages: int = 0
    mean_payload_bytes: float = 0.0
    bridge_msgs_per_s: list[float] = field(default_factory=list)
    bare_msgs_per_s: list[float] = field(default_factory=list)
    bridge_cpu_ms_per_msg: list[float] = field(default_factory=list)
    bare_cpu_ms_per_msg: list[float] = field(default_factory=list)
    bridge_state_per_s: float | None = None
    bridge_median: float | None = None
    bare_median: float | None = None
    ratio: float | None = None
    error: str | None = None

    def summarize(self) -> None:
        """Compute the medians and the ratio."""
        if self.bridge_msgs_per_s and self.bare_msgs_per_s:
            self.bridge_median = round(statistics.median(self.bridge_msgs_per_s), 1)
            self.bare_median = round(statistics.median(self.bare_msgs_per_s), 1)
            self.ratio = round(self.bridge_median / self.bare_median, 3)
            if self.messages:
                share = self.state_messages / self.messages
                self.bridge_state_per_s = round(self.bridge_median * share, 1)


# ---- subprocesses --------------------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(ps: Any) -> float:
    """Return the user + system CPU seconds a psutil process has used."""
    times = ps.cpu_times()
    return float(times.user) + float(times.system)


class Proc:
    """A subprocess that is always stopped: SIGINT, then kill after a timeout."""

    def __init__(self, name: str, command: list[str], *, pipe_stdout: bool = False) -> None:
        self.name = name
        self.command = command
        self.pipe_stdout = pipe_stdout
        self.proc: subprocess.Popen[bytes] | None = None
        self.ps: Any = None  # psutil.Process
        self.started_at = math.nan
        self.shutdown_s: float | None = None
        self.exit_code: int | None = None
        self.killed = False
        self._log: IO[bytes] | None = None

    def __enter__(self) -> Self:
        """Start the process (and stop it again if starting fails)."""
        try:
            self.start()
        except BaseException:
            self.stop()
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the process, whatever happened."""
        self.stop()
        self.close()

    def start(self) -> None:
        """Launch the process; its stderr (and stdout unless piped) go to a temporary file."""
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if self.pipe_stdout else self._log,
            stderr=self._log,
            cwd=ROOT,
        )
        self.ps = psutil.Process(self.proc.pid)

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Interrupt the process like Ctrl-C would; kill it if it will not go."""
        proc = self.proc
        if proc is None or self.exit_code is not None:
            return
        t0 = time.perf_counter()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.killed = True
                proc.kill()
                proc.wait()
        self.shutdown_s = time.perf_counter() - t0
        self.exit_code = proc.returncode
        self.after_stop()

    def after_stop(self) -> None:
        """Release what reads the process's output (a hook for subclasses)."""

    def log_text(self) -> str:
        """Return what the process wrote to stderr (and stdout unless piped)."""
        if self._log is None or self._log.closed:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def close(self) -> None:
        """Release the log file."""
        if self._log is not None:
            self._log.close()


class Simulator(Proc):
    """`car2mqtt simulate`, whose first stdout line describes where it listens."""

    def __init__(self, vehicles: int, seed: int, time_factor: float = 1.0) -> None:
        super().__init__(
            "simulator",
            [
                sys.executable,
                "-m",
                "car2mqtt",
                "simulate",
                "--port",
                "0",
                "--vehicles",
                str(vehicles),
                "--time-factor",
                str(time_factor),
                "--seed",
                str(seed),
            ],
            pipe_stdout=True,
        )
        self.description: dict[str, Any] = {}
        self._first_line: queue.Queue[str | None] = queue.Queue()
        self._pump: threading.Thread | None = None

    def start(self) -> None:
        """Launch the simulator and wait for its JSON line."""
        super().start()
        self._pump = threading.Thread(target=self._read_stdout, name="sim-stdout", daemon=True)
        self._pump.start()
        try:
            line = self._first_line.get(timeout=STARTUP_TIMEOUT_S)
        except queue.Empty:
            msg = f"simulator: no JSON line within {STARTUP_TIMEOUT_S:.0f} s"
            raise RuntimeError(msg) from None
        if line is None:
            msg = f"simulator exited before its JSON line: {self.log_text()[-800:]}"
            raise RuntimeError(msg)
        self.description = json.loads(line)

    def _read_stdout(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        first = True
        for raw in self.proc.stdout:
            if first:
                self._first_line.put(raw.decode(errors="replace"))
                first = False
        if first:
            self._first_line.put(None)

    def after_stop(self) -> None:
        """Close the stdout pipe once the reader is done."""
        if self._pump is not None:
            self._pump.join(STOP_TIMEOUT_S)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    @property
    def admin_url(self) -> str:
        """The admin API's base URL."""
        return str(self.description["adminUrl"])

    @property
    def enode(self) -> dict[str, Any]:
        """URLs and client credentials of the simulated Enode."""
        enode: dict[str, Any] = self.description["enode"]
        return enode

    def vehicle_ids(self) -> list[str]:
        """Return the ids of the demo user's vehicles."""
        return list(self.description["users"].get("demo", []))


class Mosquitto(Proc):
    """A mosquitto on a free loopback port, logging errors and warnings to stderr."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
            # No silent drops when the probe falls behind a burst of 10,000 state messages.
            "max_queued_messages 0\n"
        )
        super().__init__("mosquitto", [mosquitto_binary(), "-c", str(conf)])

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        super().start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            if not self.alive():
                msg = f"mosquitto exited: {self.log_text()[-500:]}"
                raise RuntimeError(msg)
            time.sleep(0.02)
        msg = "mosquitto did not start"
        raise RuntimeError(msg)

    @property
    def url(self) -> str:
        """The broker URL."""
        return f"mqtt://127.0.0.1:{self.port}"


def mosquitto_binary() -> str:
    """Find mosquitto."""
    for path in (
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
        "/opt/homebrew/sbin/mosquitto",
    ):
        if Path(path).exists():
            return path
    msg = "mosquitto is not installed (apt-get install mosquitto)"
    raise RuntimeError(msg)


def write_config(
    workdir: Path, sim: Simulator, broker: Mosquitto, *, heartbeat_s: int, poll_s: int
) -> Path:
    """Write the bridge's YAML configuration, pointed at the simulator and the broker."""
    enode = sim.enode
    config = {
        "mqtt": {"url": broker.url, "client_id": "car2mqtt-bench"},
        "store": str(workdir / "state" / "car2mqtt.db"),
        "log": {"level": "info", "format": "text"},
        "heartbeat_s": heartbeat_s,
        "accounts": [
            {
                "name": "bench",
                "provider": "enode",
                "api_url": enode["apiUrl"],
                "token_url": enode["tokenUrl"],
                "client_id": enode["clientId"],
                "client_secret": enode["clientSecret"],
                "user_id": "demo",
                "poll_interval_s": poll_s,
            }
        ],
    }
    path = workdir / "car2mqtt.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


LOG_PROBLEM = re.compile(r"^\S+\s+(WARNING|ERROR|CRITICAL)\b|Traceback|Error:")


def log_problems(text: str, limit: int = 20) -> list[str]:
    """Return the warning and error lines of a log (at most `limit`, then a count)."""
    found = [line.strip()[:300] for line in text.splitlines() if LOG_PROBLEM.search(line)]
    if len(found) > limit:
        found = [*found[:limit], f"... and {len(found) - limit} more"]
    return found


# ---- sampling the bridge process -----------------------------------------------------------------


class Sampler:
    """A thread that samples a process's CPU time and RSS every SAMPLE_S seconds."""

    def __init__(self, ps: Any) -> None:
        self._ps = ps
        self.t: list[float] = []
        self.cpu: list[float] = []
        self.rss: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        next_at = time.perf_counter()
        while not self._stop.is_set():
            try:
                with self._ps.oneshot():
                    cpu = cpu_seconds(self._ps)
                    rss = float(self._ps.memory_info().rss) / MB
            except psutil.Error:
                return
            self.t.append(time.perf_counter())
            self.cpu.append(cpu)
            self.rss.append(rss)
            next_at += SAMPLE_S
            self._stop.wait(max(0.0, next_at - time.perf_counter()))

    def cpu_at(self, t: float) -> float:
        """Return the cumulative CPU seconds at `t`, interpolated between samples."""
        ts, cs = self.t, self.cpu
        i = bisect.bisect_left(ts, t)
        if i <= 0:
            return cs[0]
        if i >= len(ts):
            return cs[-1]
        t0, t1 = ts[i - 1], ts[i]
        return cs[i - 1] + (cs[i] - cs[i - 1]) * (t - t0) / (t1 - t0)

    def cpu_between(self, a: float, b: float) -> float:
        """CPU seconds spent between `a` and `b`."""
        return max(0.0, self.cpu_at(b) - self.cpu_at(a)) if b > a else 0.0

    def rss_between(self, a: float, b: float) -> list[float]:
        """RSS samples taken between `a` and `b`."""
        lo, hi = bisect.bisect_left(self.t, a), bisect.bisect_right(self.t, b)
        return self.rss[lo:hi]

    def per_second(self, a: float, b: float) -> list[float]:
        """CPU % of one core in consecutive 1 s slices of [a, b]."""
        out = []
        t = a
        while t + 1.0 <= b:
            out.append(round(self.cpu_between(t, t + 1.0) * 100, 1))
            t += 1.0
        return out


# ---- watching the bridge over MQTT ---------------------------------------------------------------


class Watcher:
    """Classifies `bridge/state` messages and tracks the vehicles' published state."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.state_topics: set[str] = set()
        self.busy: dict[str, bool] = {}  # topic -> charging or moving, as last published
        self._since: set[str] = set()
        self._last_poll_calls = 0
        self.changed = asyncio.Event()

    def on_message(self, topic: str, payload: bytes) -> None:
        """Record one message."""
        now = time.perf_counter()
        if topic == BRIDGE_STATE_TOPIC:
            try:
                data = json.loads(payload)
                vehicles, calls = int(data["vehicles"]), int(data["api_calls"])
            except (ValueError, KeyError, TypeError):
                return
            since = len(self._since)
            self._since = set()
            if vehicles == 0:
                kind = "other"  # the republish on connect, before the first poll ends
            elif calls > self._last_poll_calls:
                kind = "poll"  # only a poll moves the bridge's API call count
                self._last_poll_calls = calls
            elif since >= vehicles:
                kind = "heartbeat"  # every vehicle's state again, without API calls
            else:
                kind = "other"
            self.events.append(Event(now, kind, vehicles, calls, since))
            self.changed.set()
            return
        self.state_topics.add(topic)
        self._since.add(topic)
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            data = json.loads(payload)
            speed = data.get("speed")
            self.busy[topic] = data.get("charging") == "ON" or bool(speed)

    def polls(self) -> list[Event]:
        """Every poll end seen so far."""
        return [e for e in self.events if e.kind == "poll"]

    async def wait(self, limit_s: float) -> None:
        """Wait until a new `bridge/state` arrives, or `limit_s` seconds."""
        self.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), limit_s)


async def watch(client: aiomqtt.Client, watcher: Watcher, *, skip_retained: bool = False) -> None:
    """Feed every message the client receives to `watcher`."""
    async for message in client.messages:
        if skip_retained and message.retain:
            continue
        payload = message.payload
        data = payload if isinstance(payload, bytes) else str(payload).encode()
        watcher.on_message(str(message.topic), data)


async def sim_calls(http: httpx.AsyncClient, sim: Simulator) -> int:
    """Return the simulator's count of Enode API requests, token requests included."""
    response = await http.get(sim.admin_url, timeout=HTTP_TIMEOUT_S)
    response.raise_for_status()
    return int(response.json()["apiCalls"]["enode"])


# ---- A: the bridge as its own process ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """What to measure."""

    seed: int
    cycles: int
    first_poll_timeout_s: float
    changes: int
    throughput_rounds: int


def run_scale(vehicles: int, plan: Plan) -> ScaleResult:
    """Start mosquitto, the simulator and `car2mqtt run`; measure the bridge; stop them all."""
    heartbeat_s = HEARTBEAT_S
    command = [sys.executable, "-m", "car2mqtt", "run", "--config", "<workdir>/car2mqtt.yaml"]
    result = ScaleResult(
        vehicles=vehicles, command=[Path(command[0]).name, *command[1:]], heartbeat_s=heartbeat_s
    )
    result.pages_expected = max(1, math.ceil(vehicles / TARGET_VEHICLES_PER_LIST_CALL))
    bridge: Proc | None = None
    with contextlib.ExitStack() as stack:
        try:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bridge-")))
            broker = stack.enter_context(Mosquitto(workdir))
            sim = stack.enter_context(Simulator(vehicles, plan.seed))
            say(f"{vehicles:,} vehicles: simulator and mosquitto up; starting `car2mqtt run`")
            config = write_config(
                workdir, sim, broker, heartbeat_s=heartbeat_s, poll_s=POLL_INTERVAL_S
            )
            command[-1] = str(config)
            bridge = stack.enter_context(Proc("bridge", command))
            asyncio.run(measure_scale(result, plan, sim, broker, bridge))
        except Exception as exc:  # recorded, so the other runs still happen
            result.error = f"{type(exc).__name__}: {exc}"
            say(f"{vehicles:,} vehicles: ERROR {result.error}")
        finally:
            if bridge is not None:
                bridge.stop()
                result.shutdown_s = (
                    None if bridge.shutdown_s is None else round(bridge.shutdown_s, 2)
                )
                result.exit_code = bridge.exit_code
                result.killed = bridge.killed
                text = bridge.log_text()
                result.log_problems = log_problems(text)
                result.log_tail = text[-LOG_TAIL_CHARS:]
    for line in result.log_problems:
        say(f"{vehicles:,} vehicles: bridge log: {line}")
    return result


async def measure_scale(
    result: ScaleResult, plan: Plan, sim: Simulator, broker: Mosquitto, bridge: Proc
) -> None:
    """Watch the bridge through its first poll and `plan.cycles` more; then analyse."""
    vehicles = result.vehicles
    watcher = Watcher()
    sampler = Sampler(bridge.ps)
    sampler.start()
    async with (
        httpx.AsyncClient() as http,
        aiomqtt.Client("127.0.0.1", broker.port, identifier=f"bench-probe-{os.getpid()}") as mqtt,
    ):
        await mqtt.subscribe(BRIDGE_STATE_TOPIC, qos=1)
        await mqtt.subscribe(STATE_PATTERN, qos=1)
        reader = asyncio.create_task(watch(mqtt, watcher))
        try:
            # Warm-up: until the first poll has ended, with every vehicle published.
            deadline = time.perf_counter() + plan.first_poll_timeout_s
            last_note = time.perf_counter()
            while not any(e.vehicles >= vehicles for e in watcher.polls()):
                if not bridge.alive():
                    msg = f"the bridge exited ({bridge.proc.returncode if bridge.proc else '?'})"
                    raise RuntimeError(msg)
                if time.perf_counter() > deadline:
                    msg = (
                        f"first poll not done after {plan.first_poll_timeout_s:.0f} s "
                        f"({len(watcher.state_topics):,} of {vehicles:,} vehicles published)"
                    )
                    raise RuntimeError(msg)
                if time.perf_counter() - last_note > 60:
                    last_note = time.perf_counter()
                    say(
                        f"{vehicles:,} vehicles: first poll running for "
                        f"{last_note - bridge.started_at:.0f} s, "
                        f"{len(watcher.state_topics):,} vehicles published"
                    )
                await watcher.wait(1.0)
            first = watcher.polls()[-1]
            first.sim_calls = await sim_calls(http, sim)
            result.first_poll_s = round(first.t - bridge.started_at, 2)
            result.first_poll_cpu_s = round(sampler.cpu_at(first.t), 2)
            result.startup_rss_max_mb = round(max(sampler.rss_between(0, first.t) or [0.0]), 1)
            result.startup_calls = first.sim_calls
            say(
                f"{vehicles:,} vehicles: first poll done after {result.first_poll_s:.1f} s "
                f"({result.first_poll_cpu_s:.1f} s CPU, {first.sim_calls} API calls); "
                f"window of {plan.cycles} poll(s)"
            )

            # The window: `cycles` polls after the first, and a heartbeat if they are on (up
            # to two more polls for one), so that it always ends at the end of a poll.
            need_heartbeat = result.heartbeat_s <= HEARTBEAT_S
            while True:
                polls = [e for e in watcher.polls() if e.t > first.t]
                for e in polls:
                    if e.sim_calls is None:  # read at once: the next poll is a minute away
                        e.sim_calls = await sim_calls(http, sim)
                beats = [e for e in watcher.events if e.kind == "heartbeat" and e.t > first.t]
                enough = len(polls) >= plan.cycles
                if enough and (not need_heartbeat or beats or len(polls) >= plan.cycles + 2):
                    break
                if not bridge.alive():
                    msg = f"the bridge exited ({bridge.proc.returncode if bridge.proc else '?'})"
                    raise RuntimeError(msg)
                await watcher.wait(2.0)
            last = polls[-1]
            await asyncio.sleep(TAIL_S + 3 * SAMPLE_S)  # samples past the window's end
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            sampler.stop()
    analyse(result, watcher, sampler, first, last, bridge.started_at)


def analyse(
    result: ScaleResult,
    watcher: Watcher,
    sampler: Sampler,
    first: Event,
    last: Event,
    started_at: float,
) -> None:
    """Turn events and samples into calls per poll and CPU per poll and per heartbeat."""
    # Each poll runs from the previous poll's end + the interval to its own end; each heartbeat
    # from the previous heartbeat's end (or the connect) + heartbeat_s to its own end.
    connect = next((e.t for e in watcher.events), started_at)
    spans: list[tuple[Event, float, float]] = []  # (event, start, end), unpadded
    prev_poll: float | None = None
    prev_beat = connect
    for e in watcher.events:
        if e.kind == "poll":
            if prev_poll is not None:
                spans.append((e, prev_poll + result.poll_interval_s, e.t))
            prev_poll = e.t
        elif e.kind == "heartbeat":
            spans.append((e, prev_beat + result.heartbeat_s, e.t))
            prev_beat = e.t
    a, b = first.t + TAIL_S, last.t + TAIL_S
    inside = [
        (e, max(s - LEAD_S, a), min(t + TAIL_S, b), s, t)
        for e, s, t in spans
        if first.t < e.t <= last.t
    ]
    # Idle: the window minus every padded span.
    merged: list[list[float]] = []
    for s, t in sorted((s, t) for _, s, t, _, _ in inside):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], t)
        else:
            merged.append([s, t])
    busy_time = sum(t - s for s, t in merged)
    busy_cpu = sum(sampler.cpu_between(s, t) for s, t in merged)
    total_cpu = sampler.cpu_between(a, b)
    idle_time = (b - a) - busy_time
    idle_rate = max(0.0, total_cpu - busy_cpu) / idle_time if idle_time > 1.0 else 0.0
    for e, s, t, start, end in inside:
        overlap = overlap_cpu = 0.0
        for other, s2, t2, start2, end2 in inside:
            if other is e:
                continue
            lo, hi = max(s, s2), min(t, t2)
            if hi > lo:  # shared (padded) time: half of its CPU each
                overlap += hi - lo
                overlap_cpu += sampler.cpu_between(lo, hi)
            e.overlapped = e.overlapped or min(end, end2) > max(start, start2)
        own = sampler.cpu_between(s, t) - overlap_cpu / 2
        e.cpu_s = round(max(0.0, own - idle_rate * (t - s - overlap / 2)), 3)
        e.busy_s = round(end - start, 3)
    inside3 = [(e, s, t) for e, s, t, _, _ in inside]
    polls = [e for e, _, _ in inside3 if e.kind == "poll"]
    beats = [e for e, _, _ in inside3 if e.kind == "heartbeat"]
    result.window_s = round(b - a, 2)
    result.polls, result.heartbeats = len(polls), len(beats)
    result.window_cpu_s = round(total_cpu, 3)
    result.avg_pct_60s = round(total_cpu / (b - a) * 100, 3)
    result.idle_pct = round(idle_rate * 100, 3)
    if polls:
        cpus = [e.cpu_s or 0.0 for e in polls]
        result.poll_cpu_s = round(statistics.fmean(cpus), 3)
        result.poll_cpu_max_s = round(max(cpus), 3)
        result.poll_wall_s = round(statistics.fmean(e.busy_s or 0.0 for e in polls), 3)
    if beats:
        result.heartbeat_cpu_s = round(statistics.fmean(e.cpu_s or 0.0 for e in beats), 3)
        result.heartbeat_wall_s = round(statistics.fmean(e.busy_s or 0.0 for e in beats), 3)
    if first.sim_calls is not None and last.sim_calls is not None and polls:
        result.window_calls = last.sim_calls - first.sim_calls
        result.window_bridge_calls = last.api_calls - first.api_calls
        result.calls_per_poll = round(result.window_calls / len(polls), 3)
        result.list_calls_per_poll = round(result.window_bridge_calls / len(polls), 3)
        result.token_calls_in_window = result.window_calls - result.window_bridge_calls
    rss = sampler.rss_between(a, b)
    if rss:
        result.rss_start_mb = round(rss[0], 1)
        result.rss_max_mb = round(max(rss), 1)
        result.rss_end_mb = round(rss[-1], 1)
    result.busy_vehicles = sum(watcher.busy.values())
    result.cpu_pct_samples_1s = sampler.per_second(a, b)
    result.events = [
        {
            "t_s": round(e.t - started_at, 3),
            "kind": e.kind,
            "vehicles": e.vehicles,
            "api_calls": e.api_calls,
            "sim_calls": e.sim_calls,
            "states_since": e.states_since,
            "cpu_s": e.cpu_s,
            "busy_s": e.busy_s,
            "overlapped": e.overlapped,
        }
        for e in watcher.events
    ]
    say(
        f"{result.vehicles:,} vehicles: {len(polls)} polls, {len(beats)} heartbeats in "
        f"{result.window_s:.0f} s; {result.calls_per_poll} calls/poll; poll CPU "
        f"{result.poll_cpu_s} s, heartbeat CPU {result.heartbeat_cpu_s} s, idle "
        f"{result.idle_pct} %; RSS max {result.rss_max_mb} MB"
    )


def estimate_heartbeats(runs: list[ScaleResult]) -> None:
    """Scale the heartbeat CPU per vehicle from the largest fleet that measured it."""
    measured = [r for r in runs if r.heartbeat_cpu_s is not None and r.vehicles > 1]
    for r in runs:
        if r.heartbeat_cpu_s is not None or not measured:
            continue
        smaller = [m for m in measured if m.vehicles <= r.vehicles]
        ref = max(smaller or measured, key=lambda m: m.vehicles)
        assert ref.heartbeat_cpu_s is not None
        r.heartbeat_cpu_est_s = round(ref.heartbeat_cpu_s * r.vehicles / ref.vehicles, 3)
        r.heartbeat_est_from = ref.vehicles


# ---- B: the bridge in this process ---------------------------------------------------------------


class TimedEnode(EnodeProvider):
    """The Enode provider, noting when each poll ends and when a watched change came in."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watch: dict[str, int] = {}  # vehicle id -> battery level being waited for
        self.seen: dict[str, float] = {}  # vehicle id -> perf_counter of its page's arrival
        self.returns: list[float] = []
        self.walls: list[float] = []

    async def pages(self) -> AsyncIterator[list[VehicleState]]:
        """Poll as usual; note when each page arrives and which watched changes it carries.

        A watched car's latency runs from the cloud's answer that carries it (its page) to
        its state message; the poll's end is noted for the cycle and wall figures.
        """
        t0 = time.perf_counter()
        async for page in super().pages():
            arrived = time.perf_counter()
            if self.watch:
                for state in page:
                    vid = state.ref.vehicle_id
                    want = self.watch.get(vid)
                    level = state.battery_pct
                    if want is not None and level is not None and round(level) == want:
                        self.seen.setdefault(vid, arrived)
            yield page
        t1 = time.perf_counter()
        self.returns.append(t1)
        self.walls.append(t1 - t0)


class LogCapture(logging.Handler):
    """Collect car2mqtt's warnings and errors while it runs in this process."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the formatted message."""
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}"[:300])


@contextlib.asynccontextmanager
async def in_process_bridge(
    sim: Simulator, broker: Mosquitto, workdir: Path, timing: Timing
) -> AsyncIterator[tuple[Running, TimedEnode]]:
    """Run a bridge in this process against `sim` and `broker`, with its own fresh store."""
    store_dir = Path(tempfile.mkdtemp(prefix="store-", dir=workdir))
    store = Store.open(store_dir / "car2mqtt.db")
    enode = sim.enode
    provider = TimedEnode.create(
        account="bench",
        user_id="demo",
        api_url=enode["apiUrl"],
        token_url=enode["tokenUrl"],
        client_id=enode["clientId"],
        client_secret=enode["clientSecret"],
        clock=SystemClock(),
        persistence=store,
    )
    assert isinstance(provider, TimedEnode)
    settings = BrokerSettings.from_url(broker.url, client_id=f"car2mqtt-bench-{os.getpid()}")
    try:
        async with running(
            [provider],
            store=store,
            broker=settings,
            topics=Topics(BASE_TOPIC, "homeassistant"),
            timing=timing,
        ) as run:
            yield run, provider
    finally:
        store.close()


async def wait_published(run: Running, watcher: Watcher, vehicles: int, limit_s: float) -> None:
    """Wait until a poll has ended with every vehicle published."""
    deadline = time.perf_counter() + limit_s
    while not any(e.vehicles >= vehicles for e in watcher.polls()):
        if run.task.done():
            run.task.result()
            msg = "the bridge stopped"
            raise RuntimeError(msg)
        if time.perf_counter() > deadline:
            msg = f"first poll not done after {limit_s:.0f} s"
            raise RuntimeError(msg)
        await watcher.wait(0.5)


def percentile(sorted_values: list[float], pct: float) -> float:
    """Return the nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def run_guarded(factory: Callable[[threading.Event], Coroutine[Any, Any, None]], what: str) -> None:
    """Run an in-process measurement on its own event loop in a daemon thread.

    If the bridge does not stop within STOP_GRACE_S once the measurement is done (a task that
    swallows its cancellation keeps `running()` waiting for ever), the thread is abandoned
    and the results measured so far are kept, so one hang cannot stall the whole benchmark.
    """
    measured = threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(factory(measured))
        except BaseException as exc:  # handed to the calling thread
            failure.append(exc)

    thread = threading.Thread(target=target, name=what, daemon=True)
    thread.start()
    deadline = time.monotonic() + IN_PROCESS_LIMIT_S
    while thread.is_alive() and not measured.is_set() and time.monotonic() < deadline:
        thread.join(0.5)
    if thread.is_alive() and not measured.is_set():
        msg = f"{what}: not done after {IN_PROCESS_LIMIT_S:.0f} s"
        raise RuntimeError(msg)
    thread.join(STOP_GRACE_S)
    if thread.is_alive():
        msg = (
            f"{what}: the in-process bridge did not stop within {STOP_GRACE_S:.0f} s of being "
            "cancelled (results kept; thread abandoned)"
        )
        raise TeardownHang(msg)
    if failure:
        raise failure[0]


def run_in_process(
    latency_scales: list[int], throughput_vehicles: int | None, plan: Plan
) -> tuple[list[LatencyResult], ThroughputResult | None]:
    """Latency at each of `latency_scales`, and throughput at `throughput_vehicles`."""
    latencies: list[LatencyResult] = []
    throughput: ThroughputResult | None = None
    scales = sorted(set(latency_scales) | ({throughput_vehicles} if throughput_vehicles else set()))
    capture = LogCapture()
    logger = logging.getLogger("car2mqtt")
    logger.addHandler(capture)
    logger.setLevel(logging.WARNING)
    try:
        for vehicles in scales:
            with contextlib.ExitStack() as stack:
                try:
                    workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="br-")))
                    broker = stack.enter_context(Mosquitto(workdir))
                    sim = stack.enter_context(Simulator(vehicles, plan.seed))
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    say(f"in-process {vehicles:,} vehicles: ERROR {error}")
                    if vehicles in latency_scales:
                        latencies.append(LatencyResult(vehicles, 0, 0, 0, error=error))
                    if vehicles == throughput_vehicles:
                        throughput = ThroughputResult(vehicles, 0, error=error)
                    continue
                if vehicles in latency_scales:
                    capture.lines.clear()
                    lat = LatencyResult(vehicles, 0, 0, 0)
                    try:
                        run_guarded(
                            functools.partial(measure_latency, lat, sim, broker, workdir, plan),
                            f"latency at {vehicles:,} vehicles",
                        )
                    except Exception as exc:
                        lat.error = f"{type(exc).__name__}: {exc}"
                        say(f"latency at {vehicles:,} vehicles: ERROR {lat.error}")
                    lat.log_problems = capture.lines[:20]
                    latencies.append(lat)
                if vehicles == throughput_vehicles:
                    throughput = ThroughputResult(vehicles, plan.throughput_rounds)
                    try:
                        run_guarded(
                            functools.partial(measure_throughput, throughput, sim, broker, workdir),
                            f"throughput at {vehicles:,} vehicles",
                        )
                    except Exception as exc:
                        throughput.error = f"{type(exc).__name__}: {exc}"
                        say(f"throughput at {vehicles:,} vehicles: ERROR {throughput.error}")
    finally:
        logger.removeHandler(capture)
    return latencies, throughput


async def measure_latency(
    result: LatencyResult,
    sim: Simulator,
    broker: Mosquitto,
    workdir: Path,
    plan: Plan,
    measured: threading.Event,
) -> None:
    """Change battery levels through the admin API; time page arrival -> state message."""
    vehicles = result.vehicles
    ids = sim.vehicle_ids()
    timing = Timing(
        poll_interval_s=LATENCY_POLL_S, active_poll_interval_s=LATENCY_POLL_S, heartbeat_s=3600.0
    )
    received: dict[str, float] = {}
    current: dict[str, int] = {}
    watch: dict[str, int] = {}

    def on_state(topic: str, payload: bytes) -> None:
        t = time.perf_counter()
        vid = topic.split("/")[-2]
        try:
            level = json.loads(payload).get("battery")
        except (ValueError, AttributeError):
            return
        if not isinstance(level, (int, float)):
            return
        current[vid] = round(level)
        if watch.get(vid) == round(level) and vid not in received:
            received[vid] = t

    t_start = time.perf_counter()
    async with (
        httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as http,
        aiomqtt.Client("127.0.0.1", broker.port, identifier=f"bench-lat-{os.getpid()}") as mqtt,
    ):
        await mqtt.subscribe(STATE_PATTERN, qos=1)
        await mqtt.subscribe(BRIDGE_STATE_TOPIC, qos=1)
        watcher = Watcher()

        async def reader() -> None:
            async for message in mqtt.messages:
                payload = message.payload
                data = payload if isinstance(payload, bytes) else str(payload).encode()
                if str(message.topic) == BRIDGE_STATE_TOPIC:
                    watcher.on_message(str(message.topic), data)
                else:
                    on_state(str(message.topic), data)

        task = asyncio.create_task(reader())
        try:
            async with in_process_bridge(sim, broker, workdir, timing) as (run, provider):
                await wait_published(run, watcher, vehicles, 600.0)
                result.startup_s = round(time.perf_counter() - t_start, 2)
                say(f"latency at {vehicles:,} vehicles: bridge up in {result.startup_s:.1f} s")
                rng = random.Random(plan.seed)
                per_round = max(1, min(len(ids), 25, plan.changes // 8 or 1))
                latencies: list[float] = []
                since_change: list[float] = []
                lost = 0
                changes = 0
                while changes < plan.changes:
                    batch = rng.sample(ids, min(per_round, plan.changes - changes))
                    received.clear()
                    provider.seen.clear()
                    watch.clear()
                    changed_at: dict[str, float] = {}
                    for vid in batch:
                        level = current.get(vid, 50)
                        new = rng.choice([x for x in range(10, 96) if x != level])
                        watch[vid] = new
                        provider.watch = dict(watch)
                        admin = f"{sim.admin_url}/enode/vehicles/{vid}"
                        r = await http.put(f"{admin}/battery", json={"level": new})
                        r.raise_for_status()
                        r = await http.post(f"{admin}/refresh")
                        r.raise_for_status()
                        changed_at[vid] = time.perf_counter()
                    changes += len(batch)
                    deadline = time.perf_counter() + 30.0
                    while len(received) < len(batch) and time.perf_counter() < deadline:
                        if run.task.done():
                            run.task.result()
                        await asyncio.sleep(0.01)
                    for vid in batch:
                        if vid in received and vid in provider.seen:
                            latencies.append(received[vid] - provider.seen[vid])
                            since_change.append(received[vid] - changed_at[vid])
                        else:
                            lost += 1
                provider.watch = {}
                cycles = [
                    b - a for a, b in zip(provider.returns, provider.returns[1:], strict=False)
                ]
                walls = sorted(provider.walls[1:]) or sorted(provider.walls)
                result.changes, result.received, result.lost = changes, len(latencies), lost
                summarize_latency(result, latencies, since_change, walls, cycles)
                measured.set()  # what follows is teardown
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    say(
        f"latency at {vehicles:,} vehicles: {len(latencies)} of {changes} changes, "
        f"p50 {result.p50_ms} ms, p99 {result.p99_ms} ms"
    )


def summarize_latency(
    result: LatencyResult,
    latencies: list[float],
    since_change: list[float],
    walls: list[float],
    cycles: list[float],
) -> None:
    """Reduce the timings (seconds) to the reported figures (ms)."""
    if latencies:
        ms = sorted(x * 1000 for x in latencies)
        result.p50_ms = round(statistics.median(ms), 2)
        result.p90_ms = round(percentile(ms, 90), 2)
        result.p99_ms = round(percentile(ms, 99), 2)
        result.max_ms = round(ms[-1], 2)
        result.min_ms = round(ms[0], 2)
        result.mean_ms = round(statistics.fmean(ms), 2)
        result.change_to_receive_p50_ms = round(statistics.median(since_change) * 1000, 1)
    if walls:
        result.poll_wall_p50_ms = round(statistics.median(walls) * 1000, 1)
    if cycles:
        result.cycle_p50_ms = round(statistics.median(cycles) * 1000, 1)


async def measure_throughput(
    result: ThroughputResult,
    sim: Simulator,
    broker: Mosquitto,
    workdir: Path,
    measured: threading.Event,
) -> None:
    """Alternate `bridge.republish()` and a bare loop publishing the same messages."""
    # No polls or heartbeats during the measurement: only the first poll, at startup.
    timing = Timing(poll_interval_s=3600.0, active_poll_interval_s=3600.0, heartbeat_s=3600.0)
    watcher = Watcher()
    async with (
        aiomqtt.Client("127.0.0.1", broker.port, identifier=f"bench-watch-{os.getpid()}") as probe,
        in_process_bridge(sim, broker, workdir, timing) as (run, _),
    ):
        # Subscribed before the bridge connects; retained messages are an earlier bridge's.
        await probe.subscribe(BRIDGE_STATE_TOPIC, qos=1)
        reader = asyncio.create_task(watch(probe, watcher, skip_retained=True))
        try:
            await wait_published(run, watcher, result.vehicles, 600.0)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        # An unmeasured republish records what the bridge sends.
        sent: list[tuple[str, bytes | str]] = []
        publish = run.link.publish

        async def recording(
            topic: str, payload: bytes | str, *, retain: bool = False, qos: int = 1
        ) -> bool:
            sent.append((topic, payload))
            return await publish(topic, payload, retain=retain, qos=qos)

        run.bridge.attach(recording)
        await run.bridge.republish()
        run.bridge.attach(publish)
        result.messages = len(sent)
        result.state_messages = sum(1 for topic, _ in sent if topic.endswith("/state"))
        sizes = [len(p.encode() if isinstance(p, str) else p) for _, p in sent]
        result.mean_payload_bytes = round(statistics.fmean(sizes), 1) if sizes else 0.0
        say(
            f"throughput at {result.vehicles:,} vehicles: {len(sent)} messages per republish "
            f"({result.state_messages} state, mean {result.mean_payload_bytes:.0f} bytes)"
        )
        async with aiomqtt.Client(
            "127.0.0.1",
            broker.port,
            identifier=f"bench-bare-{os.getpid()}",
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as bare:
            for _ in range(result.rounds):
                before = run.link.published
                c0, t0 = time.process_time(), time.perf_counter()
                await run.bridge.republish()
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                count = run.link.published - before
                result.bridge_msgs_per_s.append(round(count / wall, 1))
                result.bridge_cpu_ms_per_msg.append(round(cpu / max(1, count) * 1000, 4))
                c0, t0 = time.process_time(), time.perf_counter()
                for topic, payload in sent:
                    await bare.publish(topic, payload, qos=1, retain=True)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                result.bare_msgs_per_s.append(round(len(sent) / wall, 1))
                result.bare_cpu_ms_per_msg.append(round(cpu / max(1, len(sent)) * 1000, 4))
        result.summarize()
        measured.set()  # what follows is teardown
    say(
        f"throughput at {result.vehicles:,} vehicles: bridge {result.bridge_median} msg/s, "
        f"bare {result.bare_median} msg/s, ratio {result.ratio}"
    )


# ---- the machine ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Describe the machine, the broker and the code under test."""
    mosquitto = subprocess.run(
        [mosquitto_binary(), "-h"], capture_output=True, text=True, check=False, timeout=10
    ).stdout.splitlines()
    return common.machine(
        mosquitto=mosquitto[0].strip() if mosquitto else "unknown",
        aiomqtt=metadata.version("aiomqtt"),
    )


# ---- the report ----------------------------------------------------------------------------------


def verdict(
    target: str, vehicles: int | None, measured: str, ok: bool | None, note: str = ""
) -> dict[str, Any]:
    """One row of the targets table."""
    return {"target": target, "vehicles": vehicles, "measured": measured, "pass": ok, "note": note}


def verdicts(runs: list[ScaleResult]) -> list[dict[str, Any]]:
    """Judge the runs against each target."""
    out: list[dict[str, Any]] = []
    done = [r for r in runs if r.list_calls_per_poll is not None]
    if done:
        worst = max(done, key=lambda r: (r.list_calls_per_poll or 0.0) / r.pages_expected)
        over = [r for r in done if (r.list_calls_per_poll or 0.0) > r.pages_expected]
        tokens = [r for r in done if (r.token_calls_in_window or 0) > 0]
        per_h = 3600.0 / (TOKEN_TTL_S - TOKEN_LEEWAY_S)
        parts = [
            f"{r.vehicles:,}: {r.list_calls_per_poll:g}/poll (≤ {r.pages_expected})" for r in done
        ]
        tok_note = (
            f"token requests inside the windows: {sum(r.token_calls_in_window or 0 for r in done)}"
            f"; one token per {TOKEN_TTL_S - TOKEN_LEEWAY_S:.0f} s lifetime = {per_h:.2f}/h"
        )
        out.append(
            verdict(
                f"≤ 1 list call per {TARGET_VEHICLES_PER_LIST_CALL} vehicles per poll, "
                f"+ {TARGET_TOKENS_PER_HOUR} token per hour",
                worst.vehicles,
                "; ".join(parts),
                not over and not tokens,
                tok_note,
            )
        )
    big = [r for r in runs if r.vehicles >= TARGET_VEHICLES and r.poll_cpu_s is not None]
    largest = max(
        (r for r in runs if r.poll_cpu_s is not None), key=lambda r: r.vehicles, default=None
    )
    cpu_run = big[0] if big else largest
    if cpu_run is not None:
        note = "" if big else f"measured at {cpu_run.vehicles:,} vehicles, target is for 10,000"
        est = cpu_run.cpu_pct_at(TARGET_POLL_S) or 0.0
        busy = cpu_run.cpu_pct_at(ACTIVE_POLL_INTERVAL_S) or 0.0
        if cpu_run.heartbeat_cpu_s is None and cpu_run.heartbeat_cpu_est_s is None:
            note = "; ".join(x for x in (note, "heartbeat CPU not measured: left out") if x)
        elif cpu_run.heartbeat_cpu_s is None:
            scaled = f"heartbeat CPU scaled from {cpu_run.heartbeat_est_from:,} vehicles"
            note = "; ".join(x for x in (note, scaled) if x)
        out.append(
            verdict(
                f"CPU < {TARGET_CPU_PCT:g} % of one core at a 5-minute poll",
                cpu_run.vehicles,
                f"{est:.2f} % estimated ({cpu_run.poll_cpu_s:.2f} s CPU per poll"
                + f", {cpu_run.heartbeat_cpu:.2f} s per heartbeat"
                + f"); {busy:.2f} % at the 2-minute polls the bridge switches to while a car "
                "charges",
                est < TARGET_CPU_PCT,
                note,
            )
        )
    rss_run = next((r for r in runs if r.vehicles >= TARGET_VEHICLES and r.rss_max_mb), None)
    if rss_run is None:
        rss_run = max((r for r in runs if r.rss_max_mb), key=lambda r: r.vehicles, default=None)
    if rss_run is not None and rss_run.rss_max_mb is not None:
        note = "" if rss_run.vehicles >= TARGET_VEHICLES else "not measured at 10,000 vehicles"
        startup = f"; {rss_run.startup_rss_max_mb:.1f} MB max during the first poll"
        out.append(
            verdict(
                f"RSS < {TARGET_RSS_MB:g} MB",
                rss_run.vehicles,
                f"{rss_run.rss_max_mb:.1f} MB max in steady state{startup}",
                rss_run.rss_max_mb < TARGET_RSS_MB,
                note,
            )
        )
    home = [r for r in runs if r.vehicles <= TARGET_HOME_VEHICLES and r.rss_max_mb]
    if home:
        worst_home = max(home, key=lambda r: r.rss_max_mb or 0.0)
        assert worst_home.rss_max_mb is not None
        out.append(
            verdict(
                f"idle home setup (≤ {TARGET_HOME_VEHICLES} cars) RSS < {TARGET_HOME_RSS_MB:g} MB",
                worst_home.vehicles,
                f"{worst_home.rss_max_mb:.1f} MB max",
                worst_home.rss_max_mb < TARGET_HOME_RSS_MB,
            )
        )
    return out


def one_line(text: str, limit: int = 160) -> str:
    """Squeeze a message onto one short table-safe line."""
    text = " ".join(text.replace("|", "/").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fmt(value: float | None, digits: int = 2) -> str:
    """Format a number for the table, or a dash."""
    return "–" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def markdown(
    report: dict[str, Any],
    runs: list[ScaleResult],
    latencies: list[LatencyResult],
    throughput: ThroughputResult | None,
) -> str:
    """Render the results as markdown tables."""
    m = report["machine"]
    lines = [
        "### Bridge benchmark",
        "",
        f"{m['date_utc']} · {m['cpu_model']} · {m['logical_cores']} cores · "
        f"{m['ram_total_gb']} GB RAM · {m['python']} · {m['kernel']} · {m['mosquitto']} · "
        f"car2mqtt {m['car2mqtt_version']} @ {m['git_commit']}"
        + (" (src modified)" if m["git_src_dirty"] else ""),
        "",
        f"`car2mqtt run` as a subprocess, `poll_interval_s: {POLL_INTERVAL_S}`, `heartbeat_s: "
        f"{HEARTBEAT_S}`; window = {report['plan']['cycles']} poll(s) after the first.",
        "",
        "| Vehicles | First poll (s) | First poll CPU (s) | Calls/poll | List calls/poll "
        "| Tokens in window | Calls/vehicle-h @60 s | @300 s | Poll CPU (s) | Poll wall (s) "
        "| Heartbeat CPU (s) | Idle (% core) | Avg @60 s (% core) | Est. @300 s (% core) "
        "| RSS max (MB) | RSS first poll (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        if r.error is not None and r.poll_cpu_s is None:
            lines.append(f"| {r.vehicles:,} | ERROR: {one_line(r.error)} |" + " – |" * 14)
            continue
        heartbeat = fmt(r.heartbeat_cpu_s, 3)
        if r.heartbeat_cpu_s is None and r.heartbeat_cpu_est_s is not None:
            heartbeat = f"≈{r.heartbeat_cpu_est_s:.3f}"
        lines.append(
            f"| {r.vehicles:,} | {fmt(r.first_poll_s, 1)} | {fmt(r.first_poll_cpu_s, 1)} | "
            f"{fmt(r.calls_per_poll, 1)} | {fmt(r.list_calls_per_poll, 1)} | "
            f"{r.token_calls_in_window if r.token_calls_in_window is not None else '–'} | "
            f"{fmt(r.calls_per_vehicle_hour(POLL_INTERVAL_S), 2)} | "
            f"{fmt(r.calls_per_vehicle_hour(TARGET_POLL_S), 3)} | {fmt(r.poll_cpu_s, 3)} | "
            f"{fmt(r.poll_wall_s, 2)} | {heartbeat} | {fmt(r.idle_pct, 2)} | "
            f"{fmt(r.avg_pct_60s, 2)} | {fmt(r.cpu_pct_at(TARGET_POLL_S), 2)} | "
            f"{fmt(r.rss_max_mb, 1)} | {fmt(r.startup_rss_max_mb, 1)} |"
        )
    if latencies:
        lines += [
            "",
            "| Latency: cloud page → state message | Vehicles | Changes | Received | p50 (ms) "
            "| p90 (ms) | p99 (ms) | Max (ms) | Change → message p50 (ms) | poll() p50 (ms) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for lat in latencies:
            if lat.error is not None and lat.p50_ms is None:
                lines.append(f"| ERROR: {one_line(lat.error)} | {lat.vehicles:,} |" + " – |" * 8)
                continue
            lines.append(
                f"| in-process, polls every {LATENCY_POLL_S:g} s | {lat.vehicles:,} | "
                f"{lat.changes} | {lat.received} | {fmt(lat.p50_ms)} | {fmt(lat.p90_ms)} | "
                f"{fmt(lat.p99_ms)} | {fmt(lat.max_ms)} | {fmt(lat.change_to_receive_p50_ms, 0)} "
                f"| {fmt(lat.poll_wall_p50_ms, 0)} |"
            )
    if throughput is not None:
        t = throughput
        lines += [
            "",
            "| Throughput | Vehicles | Messages/round | State msgs | Mean payload (B) "
            "| Bridge (msg/s) | Bare aiomqtt (msg/s) | Ratio | Bridge state msgs/s "
            "| Bridge CPU/msg (ms) | Bare CPU/msg (ms) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        if t.error is not None and t.ratio is None:
            lines.append(f"| ERROR: {one_line(t.error)} | {t.vehicles:,} |" + " – |" * 9)
        else:
            bridge_cpu = (
                statistics.median(t.bridge_cpu_ms_per_msg) if t.bridge_cpu_ms_per_msg else None
            )
            bare_cpu = statistics.median(t.bare_cpu_ms_per_msg) if t.bare_cpu_ms_per_msg else None
            lines.append(
                f"| `republish()` vs same messages, QoS 1, median of {t.rounds} | "
                f"{t.vehicles:,} | {t.messages:,} | {t.state_messages:,} | "
                f"{fmt(t.mean_payload_bytes, 0)} | {fmt(t.bridge_median, 0)} | "
                f"{fmt(t.bare_median, 0)} | {fmt(t.ratio, 3)} | {fmt(t.bridge_state_per_s, 0)} | "
                f"{fmt(bridge_cpu, 3)} | {fmt(bare_cpu, 3)} |"
            )
    lines += ["", "| Target | Vehicles | Measured | Result |", "|---|---:|---|---|"]
    for v in report["verdicts"]:
        result = "PASS" if v["pass"] else "**FAIL**"
        if v["note"]:
            result += f" ({v['note']})"
        vehicles = f"{v['vehicles']:,}" if v["vehicles"] is not None else ""
        lines.append(f"| {v['target']} | {vehicles} | {v['measured']} | {result} |")
    if not report["verdicts"]:
        lines.append("| (no successful run) | | | |")
    problems = [r for r in runs if r.error or r.log_problems or r.killed or r.exit_code]
    problems_lat = [lat for lat in latencies if lat.error or lat.log_problems or lat.lost]
    if problems or problems_lat or (throughput is not None and throughput.error):
        lines += ["", "Problems:"]
        for r in problems:
            what = []
            if r.error:
                what.append(f"error: {one_line(r.error, 300)}")
            if r.killed:
                what.append("did not stop on SIGINT, killed")
            if r.exit_code:
                what.append(f"exit code {r.exit_code}")
            if r.log_problems:
                what.append(f"log: {one_line(' / '.join(r.log_problems[:3]), 400)}")
            lines.append(f"- `car2mqtt run` at {r.vehicles:,} vehicles: " + "; ".join(what))
        for lat in problems_lat:
            what = []
            if lat.error:
                what.append(f"error: {one_line(lat.error, 300)}")
            if lat.lost:
                what.append(f"{lat.lost} changes never arrived")
            if lat.log_problems:
                what.append(f"log: {one_line(' / '.join(lat.log_problems[:3]), 400)}")
            lines.append(f"- latency at {lat.vehicles:,} vehicles: " + "; ".join(what))
        if throughput is not None and throughput.error:
            lines.append(f"- throughput: {one_line(throughput.error, 300)}")
    return "\n".join(lines)


# ---- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description="Benchmark the bridge: API calls, CPU/RSS, publish latency and throughput.",
    )
    parser.add_argument(
        "--vehicles",
        type=int,
        nargs="*",
        metavar="N",
        help="fleet sizes for `car2mqtt run` (default: 1 100 1000 10000; quick: 100; none: skip)",
    )
    parser.add_argument(
        "--cycles", type=int, help="polls measured after the first (default 2; quick 1)"
    )
    parser.add_argument(
        "--first-poll-timeout",
        type=float,
        default=3600.0,
        help="seconds to wait for the first poll to publish every vehicle (default 3600)",
    )
    parser.add_argument(
        "--latency-vehicles",
        type=int,
        nargs="*",
        metavar="N",
        help="fleet sizes for the latency runs (default: 100 1000; quick: 100; none: skip)",
    )
    parser.add_argument(
        "--changes", type=int, help="battery changes per latency run (default 200; quick 50)"
    )
    parser.add_argument(
        "--throughput-vehicles",
        type=int,
        help="fleet size for the throughput run (default 1000; quick 100; 0: skip)",
    )
    parser.add_argument("--rounds", type=int, help="republish rounds per side (default 5; quick 3)")
    parser.add_argument("--seed", type=int, default=0, help="simulator seed (default 0)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument("--quick", action="store_true", help="a ~2 minute smoke run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return 1 if any run failed to complete, else 0."""

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through the cleanup of every subprocess

    signal.signal(signal.SIGTERM, terminate)
    # A shell starts background jobs with SIGINT ignored, and children inherit that: the
    # subprocesses would then ignore the SIGINT they are stopped with. A Python-level handler
    # is reset to the default across exec, so this gives every child a working SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = parse_args(argv)
    quick = bool(args.quick)
    plan = Plan(
        seed=args.seed,
        cycles=max(1, args.cycles if args.cycles is not None else (1 if quick else 2)),
        first_poll_timeout_s=args.first_poll_timeout,
        changes=args.changes if args.changes is not None else (50 if quick else 200),
        throughput_rounds=args.rounds if args.rounds is not None else (3 if quick else 5),
    )
    if args.vehicles is not None:
        scales = sorted(set(args.vehicles))
    else:
        scales = [100] if quick else list(DEFAULT_SCALES)
    if args.latency_vehicles is not None:
        latency_scales = sorted(set(args.latency_vehicles))
    else:
        latency_scales = [100] if quick else list(DEFAULT_LATENCY_SCALES)
    if args.throughput_vehicles is not None:
        throughput_vehicles = args.throughput_vehicles or None
    else:
        throughput_vehicles = 100 if quick else DEFAULT_THROUGHPUT_VEHICLES
    if any(n < 1 for n in [*scales, *latency_scales]):
        say("fleet sizes must be >= 1")
        return 2
    info = machine()
    say(f"machine: {info['cpu_model']}, {info['logical_cores']} cores, {info['python']}")
    started = time.perf_counter()
    runs = [run_scale(n, plan) for n in scales]
    estimate_heartbeats(runs)
    latencies, throughput = run_in_process(latency_scales, throughput_vehicles, plan)
    report: dict[str, Any] = {
        "benchmark": "car2mqtt bridge",
        "schema": 1,
        "machine": info,
        "plan": asdict(plan)
        | {
            "vehicles": scales,
            "latency_vehicles": latency_scales,
            "throughput_vehicles": throughput_vehicles,
            "poll_interval_s": POLL_INTERVAL_S,
            "heartbeat_s": HEARTBEAT_S,
            "latency_poll_s": LATENCY_POLL_S,
            "sample_s": SAMPLE_S,
        },
        "targets": {
            "vehicles": TARGET_VEHICLES,
            "poll_s": TARGET_POLL_S,
            "cpu_pct_of_one_core_lt": TARGET_CPU_PCT,
            "rss_mb_lt": TARGET_RSS_MB,
            "home_vehicles": TARGET_HOME_VEHICLES,
            "home_rss_mb_lt": TARGET_HOME_RSS_MB,
            "vehicles_per_list_call": TARGET_VEHICLES_PER_LIST_CALL,
            "tokens_per_hour": TARGET_TOKENS_PER_HOUR,
        },
        "runs": [
            asdict(r)
            | {
                "calls_per_vehicle_hour_60s": r.calls_per_vehicle_hour(POLL_INTERVAL_S),
                "calls_per_vehicle_hour_300s": r.calls_per_vehicle_hour(TARGET_POLL_S),
                "calls_per_vehicle_hour_120s": r.calls_per_vehicle_hour(ACTIVE_POLL_INTERVAL_S),
                "cpu_pct_est_300s": r.cpu_pct_at(TARGET_POLL_S),
                "cpu_pct_est_120s": r.cpu_pct_at(ACTIVE_POLL_INTERVAL_S),
            }
            for r in runs
        ],
        "latency": [asdict(lat) for lat in latencies],
        "throughput": asdict(throughput) if throughput is not None else None,
        "verdicts": verdicts(runs),
        "total_runtime_s": round(time.perf_counter() - started, 1),
    }
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    say(f"wrote {out} after {report['total_runtime_s']:.0f} s")
    print(markdown(report, runs, latencies, throughput))
    failed = any(r.error for r in runs) or any(lat.error for lat in latencies)
    return 1 if failed or (throughput is not None and throughput.error) else 0


if __name__ == "__main__":
    sys.exit(main())
