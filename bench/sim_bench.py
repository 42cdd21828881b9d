#!/usr/bin/env python3
"""Benchmark the offline Enode simulator: startup, idle CPU and memory, API latency.

Runs the real `car2mqtt simulate` as a subprocess, once per fleet size, and measures:

1. startup: time until the first stdout line (the JSON description) appears, and until the
   first HTTP response (the token request) comes back;
2. idle cost: after a warm-up, the subprocess's (user + system) CPU time over wall time, as a
   percentage of one core, and its RSS, with no API traffic;
3. refresh cost: the CPU spent running a jump of simulated time through `/admin/clock/advance`,
   which executes exactly the cache refreshes that many simulated seconds would bring, turned
   into an average load at the chosen time factor (the idle window alone comes too early to
   contain a refresh wave: the first ones are due ~2 and ~7 simulated minutes after start);
4. latency, at the largest fleet only: sequential `GET /enode/vehicles?pageSize=50` requests
   over one keep-alive connection, following `pagination.after` and wrapping around, plus
   `GET /enode/vehicles/{id}` as a secondary figure.

Results go to a JSON file; a markdown summary with PASS/FAIL per target goes to stdout.
Progress goes to stderr. Nothing is asserted: this is a measurement tool.

Usage:
    .venv/bin/python bench/sim_bench.py [--vehicles N [N ...]] [--seconds S] [--requests R]
                                        [--out PATH] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

import httpx
import psutil

from common import machine

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results" / "simulator.json"
DEFAULT_SCALES = (1, 100, 1_000, 10_000)

# The product's targets, all defined at 10,000 vehicles and time factor 1.
TARGET_VEHICLES = 10_000
TARGET_CPU_PCT = 5.0
TARGET_RSS_MB = 300.0
TARGET_PAGE_MEDIAN_MS = 10.0

API_VERSION = "2024-10-01"
PAGE_SIZE = 50
MB = 1_000_000  # RSS is reported in MB of 10^6 bytes (slightly stricter than MiB)
SAMPLE_S = 1.0  # psutil sampling period during the idle window
WARMUP_REQUESTS = 10  # unmeasured requests before each latency series
STARTUP_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = 30.0
ADVANCE_TIMEOUT_S = 300.0
STDERR_TAIL_CHARS = 4_000


def say(message: str) -> None:
    """Report progress on stderr, so stdout stays a clean markdown report."""
    print(f"[sim_bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- results ---------------------------------------------------------------------------------


@dataclass(slots=True)
class IdleResult:
    """CPU and memory of the simulator while nobody talks to it."""

    warmup_s: float
    window_s: float
    cpu_pct: float  # (user + system) CPU time / wall time, % of one core
    cpu_pct_max_1s: float  # the busiest single sample
    cpu_pct_samples: list[float]
    rss_start_mb: float
    rss_max_mb: float
    rss_end_mb: float


@dataclass(slots=True)
class CycleResult:
    """The cost of running a stretch of simulated time's scheduled work in one jump."""

    simulated_s: float
    wall_s: float  # how long the admin call blocked the server
    cpu_s: float
    avg_pct: float | None  # that work spread over the real time it takes at the time factor
    rss_after_mb: float


@dataclass(slots=True)
class LatencyResult:
    """Client-side wall time of a series of sequential requests."""

    endpoint: str
    requests: int
    errors: int
    median_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    min_ms: float
    mean_ms: float
    requests_per_s: float
    server_cpu_ms_per_request: float
    median_body_bytes: int
    slowest: list[tuple[int, float]] = field(default_factory=list)  # (request index, ms)
    error_samples: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RunResult:
    """Everything measured against one simulator process."""

    vehicles: int
    command: list[str]
    startup_s: float | None = None  # until the JSON line
    startup_cpu_s: float | None = None  # CPU the process spent getting there
    ready_s: float | None = None  # until the first HTTP response
    simulator_version: str | None = None
    idle: IdleResult | None = None
    cycle: CycleResult | None = None
    page_latency: LatencyResult | None = None
    vehicle_latency: LatencyResult | None = None
    rss_final_mb: float | None = None
    shutdown_s: float | None = None
    exit_code: int | None = None
    killed: bool = False
    stderr_tail: str = ""
    extra_stdout: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def steady_cpu_pct(self) -> float | None:
        """Idle overhead plus the average refresh load: the expected long-run CPU."""
        if self.idle is None or self.cycle is None or self.cycle.avg_pct is None:
            return None
        return self.idle.cpu_pct + self.cycle.avg_pct


# ---- the subprocess ----------------------------------------------------------------------------


class Simulator:
    """A `car2mqtt simulate` subprocess that is always stopped: SIGINT, then kill."""

    def __init__(self, vehicles: int, seed: int, time_factor: float) -> None:
        self.command = [
            sys.executable,
            "-m",
            "car2mqtt",
            "simulate",
            "--port",
            "0",
            "--vehicles",
            str(vehicles),
            "--time-factor",
            f"{time_factor:g}",
            "--seed",
            str(seed),
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.ps: Any = None  # psutil.Process
        self.description: dict[str, Any] = {}
        self.startup_s = math.nan
        self.startup_cpu_s: float | None = None
        self.shutdown_s: float | None = None
        self.exit_code: int | None = None
        self.killed = False
        self.extra_stdout: deque[str] = deque(maxlen=50)
        self._first_line: queue.Queue[str | None] = queue.Queue()
        self._stderr: IO[bytes] | None = None
        self._pump: threading.Thread | None = None

    def __enter__(self) -> Simulator:
        """Start the simulator and wait for its JSON line."""
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the simulator, whatever happened."""
        self.stop()

    def start(self) -> None:
        """Launch the process and block until it announces itself."""
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=ROOT,
        )
        self.ps = psutil.Process(self.proc.pid)
        self._pump = threading.Thread(target=self._read_stdout, name="sim-stdout", daemon=True)
        self._pump.start()
        try:
            line = self._first_line.get(timeout=STARTUP_TIMEOUT_S)
        except queue.Empty:
            msg = f"no JSON line within {STARTUP_TIMEOUT_S:.0f} s"
            raise RuntimeError(msg) from None
        self.startup_s = time.perf_counter() - t0
        if line is None:
            self.proc.wait(STOP_TIMEOUT_S)
            msg = f"simulator exited ({self.proc.returncode}) before its JSON line"
            raise RuntimeError(f"{msg}: {self.stderr_tail()[-800:]}")
        with contextlib.suppress(psutil.Error):
            self.startup_cpu_s = cpu_seconds(self.ps)
        self.description = json.loads(line)

    def _read_stdout(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        first = True
        for raw in self.proc.stdout:
            text = raw.decode(errors="replace").rstrip("\n")
            if first:
                self._first_line.put(text)
                first = False
            else:
                self.extra_stdout.append(text[:500])
        if first:
            self._first_line.put(None)

    def stop(self) -> None:
        """Interrupt the simulator like Ctrl-C would; kill it if it will not go."""
        proc = self.proc
        if proc is not None and self.exit_code is None:
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
            if self._pump is not None:
                self._pump.join(STOP_TIMEOUT_S)
            if proc.stdout is not None:
                proc.stdout.close()

    def stderr_tail(self) -> str:
        """Return the end of what the simulator wrote to stderr."""
        if self._stderr is None or self._stderr.closed:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        data = self._stderr.read().decode(errors="replace")
        return data[-STDERR_TAIL_CHARS:]

    def close(self) -> None:
        """Release the stderr capture file."""
        if self._stderr is not None:
            self._stderr.close()


def cpu_seconds(ps: Any) -> float:
    """Return the user + system CPU seconds a psutil process has used."""
    times = ps.cpu_times()
    return float(times.user) + float(times.system)


def rss_mb(ps: Any) -> float:
    """Return a psutil process's resident set size in MB."""
    return float(ps.memory_info().rss) / MB


# ---- measurements ---------------------------------------------------------------------------


def measure_idle(ps: Any, warmup_s: float, window_s: float) -> IdleResult:
    """Sleep through a warm-up, then sample CPU and RSS once a second over `window_s`."""
    time.sleep(warmup_s)
    t0 = time.perf_counter()
    c0 = cpu_seconds(ps)
    rss0 = rss_mb(ps)
    rss_seen = [rss0]
    samples: list[float] = []
    prev_t, prev_c = t0, c0
    n = max(1, round(window_s / SAMPLE_S))
    for i in range(1, n + 1):
        time.sleep(max(0.0, t0 + i * window_s / n - time.perf_counter()))
        now, c = time.perf_counter(), cpu_seconds(ps)
        rss_seen.append(rss_mb(ps))
        samples.append(round((c - prev_c) / (now - prev_t) * 100, 3))
        prev_t, prev_c = now, c
    wall = prev_t - t0
    return IdleResult(
        warmup_s=warmup_s,
        window_s=round(wall, 3),
        cpu_pct=round((prev_c - c0) / wall * 100, 3),
        cpu_pct_max_1s=max(samples),
        cpu_pct_samples=samples,
        rss_start_mb=round(rss0, 1),
        rss_max_mb=round(max(rss_seen), 1),
        rss_end_mb=round(rss_seen[-1], 1),
    )


def measure_cycle(
    client: httpx.Client, base_url: str, ps: Any, simulated_s: float, time_factor: float
) -> CycleResult:
    """Jump the clock by `simulated_s` and charge the CPU it takes to the scheduled work."""
    c0 = cpu_seconds(ps)
    t0 = time.perf_counter()
    response = client.post(
        f"{base_url}/admin/clock/advance",
        json={"seconds": simulated_s},
        timeout=ADVANCE_TIMEOUT_S,
    )
    wall = time.perf_counter() - t0
    response.raise_for_status()
    cpu = cpu_seconds(ps) - c0
    real_s = simulated_s / time_factor if time_factor > 0 else None
    return CycleResult(
        simulated_s=simulated_s,
        wall_s=round(wall, 4),
        cpu_s=round(cpu, 3),
        avg_pct=round(cpu / real_s * 100, 3) if real_s else None,
        rss_after_mb=round(rss_mb(ps), 1),
    )


def percentile(sorted_values: list[float], pct: float) -> float:
    """Return the nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(
    endpoint: str,
    times_s: list[float],
    sizes: list[int],
    errors: list[str],
    total_s: float,
    server_cpu_s: float,
) -> LatencyResult:
    """Reduce per-request timings to the reported figures."""
    if not times_s:
        msg = f"every {endpoint} request failed: {errors[:3]}"
        raise RuntimeError(msg)
    ms = sorted(t * 1000 for t in times_s)
    count = len(times_s)
    slowest = sorted(enumerate(times_s), key=lambda it: it[1], reverse=True)[:5]
    return LatencyResult(
        endpoint=endpoint,
        requests=count,
        errors=len(errors),
        median_ms=round(statistics.median(ms), 3),
        p95_ms=round(percentile(ms, 95), 3),
        p99_ms=round(percentile(ms, 99), 3),
        max_ms=round(ms[-1], 3),
        min_ms=round(ms[0], 3),
        mean_ms=round(statistics.fmean(ms), 3),
        requests_per_s=round(count / total_s, 1),
        server_cpu_ms_per_request=round(server_cpu_s / max(1, count) * 1000, 3),
        median_body_bytes=int(statistics.median(sizes)) if sizes else 0,
        slowest=[(i, round(t * 1000, 2)) for i, t in slowest],
        error_samples=errors[:5],
    )


def measure_pages(
    client: httpx.Client, api_url: str, headers: dict[str, str], ps: Any, requests: int
) -> LatencyResult:
    """Time sequential pages of 50 vehicles, following `pagination.after` and wrapping."""
    url = f"{api_url}/vehicles"
    after: str | None = None
    times: list[float] = []
    sizes: list[int] = []
    errors: list[str] = []
    c0 = t_start = 0.0
    for i in range(WARMUP_REQUESTS + requests):
        if i == WARMUP_REQUESTS:
            c0, t_start = cpu_seconds(ps), time.perf_counter()
        params = {"pageSize": str(PAGE_SIZE)}
        if after is not None:
            params["after"] = after
        t0 = time.perf_counter()
        response = client.get(url, params=params, headers=headers)
        elapsed = time.perf_counter() - t0
        if response.status_code != 200:
            errors.append(f"{response.status_code}: {response.text[:200]}")
            after = None
            continue
        after = response.json()["pagination"]["after"]  # None on the last page: wrap around
        if i >= WARMUP_REQUESTS:
            times.append(elapsed)
            sizes.append(len(response.content))
    total = time.perf_counter() - t_start
    return summarize(
        f"GET /enode/vehicles?pageSize={PAGE_SIZE}",
        times,
        sizes,
        errors,
        total,
        cpu_seconds(ps) - c0,
    )


def measure_vehicles(
    client: httpx.Client,
    api_url: str,
    headers: dict[str, str],
    ps: Any,
    vehicle_ids: list[str],
    requests: int,
) -> LatencyResult:
    """Time sequential single-vehicle reads, striding through the fleet."""
    times: list[float] = []
    sizes: list[int] = []
    errors: list[str] = []
    c0 = t_start = 0.0
    stride = 7_919  # a prime, so consecutive reads land far apart in the fleet
    for i in range(WARMUP_REQUESTS + requests):
        if i == WARMUP_REQUESTS:
            c0, t_start = cpu_seconds(ps), time.perf_counter()
        vehicle_id = vehicle_ids[(i * stride) % len(vehicle_ids)]
        t0 = time.perf_counter()
        response = client.get(f"{api_url}/vehicles/{vehicle_id}", headers=headers)
        elapsed = time.perf_counter() - t0
        if response.status_code != 200:
            errors.append(f"{response.status_code}: {response.text[:200]}")
            continue
        if i >= WARMUP_REQUESTS:
            times.append(elapsed)
            sizes.append(len(response.content))
    total = time.perf_counter() - t_start
    return summarize("GET /enode/vehicles/{id}", times, sizes, errors, total, cpu_seconds(ps) - c0)


def get_token(client: httpx.Client, enode: dict[str, Any]) -> str:
    """Fetch a client-credentials access token."""
    response = client.post(
        enode["tokenUrl"],
        data={"grant_type": "client_credentials"},
        auth=(enode["clientId"], enode["clientSecret"]),
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


@dataclass(frozen=True, slots=True)
class Plan:
    """What to measure in each run."""

    seed: int
    time_factor: float
    warmup_s: float
    window_s: float
    cycle_s: float
    requests: int


def run_scale(vehicles: int, plan: Plan, *, latency: bool) -> RunResult:
    """Start one simulator with `vehicles` cars, measure it, and stop it."""
    sim = Simulator(vehicles, plan.seed, plan.time_factor)
    result = RunResult(vehicles=vehicles, command=[Path(sim.command[0]).name, *sim.command[1:]])
    try:
        with sim, httpx.Client(timeout=HTTP_TIMEOUT_S) as client:
            result.startup_s = round(sim.startup_s, 3)
            if sim.startup_cpu_s is not None:
                result.startup_cpu_s = round(sim.startup_cpu_s, 3)
            result.simulator_version = sim.description.get("version")
            enode: dict[str, Any] = sim.description["enode"]
            base_url: str = sim.description["baseUrl"]
            say(f"{vehicles} vehicles: JSON line after {sim.startup_s:.2f} s")
            # The first HTTP response: uvicorn starts serving only after the JSON line.
            t0 = time.perf_counter()
            token = get_token(client, enode)
            result.ready_s = round(sim.startup_s + time.perf_counter() - t0, 3)

            say(
                f"{vehicles} vehicles: warm-up {plan.warmup_s:g} s, idle window {plan.window_s:g} s"
            )
            result.idle = measure_idle(sim.ps, plan.warmup_s, plan.window_s)
            say(
                f"{vehicles} vehicles: idle CPU {result.idle.cpu_pct:.2f} % of a core, "
                f"RSS max {result.idle.rss_max_mb:.1f} MB"
            )

            if latency:
                headers = {"Authorization": f"Bearer {token}", "Enode-Version": API_VERSION}
                say(f"{vehicles} vehicles: {plan.requests} page requests")
                result.page_latency = measure_pages(
                    client, enode["apiUrl"], headers, sim.ps, plan.requests
                )
                ids: list[str] = sim.description["users"].get("demo", [])
                if ids:
                    say(f"{vehicles} vehicles: {plan.requests} single-vehicle requests")
                    result.vehicle_latency = measure_vehicles(
                        client, enode["apiUrl"], headers, sim.ps, ids, plan.requests
                    )

            say(f"{vehicles} vehicles: running {plan.cycle_s:g} simulated s of scheduled work")
            result.cycle = measure_cycle(client, base_url, sim.ps, plan.cycle_s, plan.time_factor)
            result.rss_final_mb = round(rss_mb(sim.ps), 1)
    except Exception as exc:  # recorded, so the other scales still run
        result.error = f"{type(exc).__name__}: {exc}"
        say(f"{vehicles} vehicles: ERROR {result.error}")
    finally:
        sim.stop()
        result.shutdown_s = None if sim.shutdown_s is None else round(sim.shutdown_s, 3)
        result.exit_code = sim.exit_code
        result.killed = sim.killed
        result.stderr_tail = sim.stderr_tail()
        result.extra_stdout = list(sim.extra_stdout)
        sim.close()
    if result.stderr_tail.strip():
        say(f"{vehicles} vehicles: simulator stderr:\n{result.stderr_tail[-1500:]}")
    return result


# ---- the machine ------------------------------------------------------------------------------


# ---- the report -------------------------------------------------------------------------------


def verdicts(runs: list[RunResult], time_factor: float) -> list[dict[str, Any]]:
    """Judge the largest successful run against each target."""
    done = [r for r in runs if r.error is None and r.idle is not None]
    if not done:
        return []
    run = max(done, key=lambda r: r.vehicles)
    caveats = []
    if run.vehicles != TARGET_VEHICLES:
        caveats.append(f"measured at {run.vehicles:,} vehicles, target is for 10,000")
    if time_factor != 1:
        caveats.append(f"time factor {time_factor:g}, target is for 1")
    note = "; ".join(caveats)
    assert run.idle is not None
    steady = run.steady_cpu_pct
    worst_cpu = max(run.idle.cpu_pct, steady if steady is not None else 0.0)
    steady_text = f", {steady:.2f} % steady-state estimate" if steady is not None else ""
    out: list[dict[str, Any]] = [
        {
            "target": f"CPU < {TARGET_CPU_PCT:g} % of one core",
            "vehicles": run.vehicles,
            "measured": f"{run.idle.cpu_pct:.2f} % idle window{steady_text}",
            "value": worst_cpu,
            "pass": worst_cpu < TARGET_CPU_PCT,
            "note": note,
        },
        {
            "target": f"RSS < {TARGET_RSS_MB:g} MB",
            "vehicles": run.vehicles,
            "measured": f"{max(run.idle.rss_max_mb, run.rss_final_mb or 0):.1f} MB max",
            "value": max(run.idle.rss_max_mb, run.rss_final_mb or 0),
            "pass": max(run.idle.rss_max_mb, run.rss_final_mb or 0) < TARGET_RSS_MB,
            "note": note,
        },
    ]
    if run.page_latency is not None:
        median = run.page_latency.median_ms
        out.append(
            {
                "target": f"median GET /vehicles?pageSize=50 < {TARGET_PAGE_MEDIAN_MS:g} ms",
                "vehicles": run.vehicles,
                "measured": f"{median:.2f} ms median",
                "value": median,
                "pass": median < TARGET_PAGE_MEDIAN_MS and run.page_latency.errors == 0,
                "note": note,
            }
        )
    return out


def one_line(text: str, limit: int = 160) -> str:
    """Squeeze a message (say, a rich-formatted CLI error) onto one short table-safe line."""
    text = text.translate({ord(c): " " for c in "╭╮╰╯│─|"})
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fmt(value: float | None, digits: int = 2) -> str:
    """Format a number for the table, or a dash."""
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def markdown(report: dict[str, Any], runs: list[RunResult]) -> str:
    """Render the results as markdown tables."""
    m = report["machine"]
    plan = report["plan"]
    lines = [
        "### Simulator benchmark",
        "",
        f"{m['date_utc']} · {m['cpu_model']} · {m['logical_cores']} cores · "
        f"{m['ram_total_gb']} GB RAM · {m['python']} · {m['kernel']} · "
        f"car2mqtt {m['car2mqtt_version']} @ {m['git_commit']}"
        + (" (src modified)" if m["git_src_dirty"] else ""),
        "",
        f"Time factor {plan['time_factor']:g}; warm-up {plan['warmup_s']:g} s, then "
        f"{plan['window_s']:g} s idle window sampled every {SAMPLE_S:g} s; refresh load from "
        f"{plan['cycle_s']:g} simulated s run through /admin/clock/advance.",
        "",
        "| Vehicles | JSON line (s) | First response (s) | Idle CPU (% core) | "
        "Busiest 1 s (%) | Refresh load (% core) | Steady est. (% core) | "
        "RSS max (MB) | RSS end (MB) | Shutdown (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        if r.error is not None and r.idle is None:
            lines.append(f"| {r.vehicles:,} | ERROR: {one_line(r.error)} |||||||||")
            continue
        idle = r.idle
        lines.append(
            f"| {r.vehicles:,} | {fmt(r.startup_s)} | {fmt(r.ready_s)} | "
            f"{fmt(idle.cpu_pct if idle else None)} | "
            f"{fmt(idle.cpu_pct_max_1s if idle else None, 1)} | "
            f"{fmt(r.cycle.avg_pct if r.cycle else None)} | {fmt(r.steady_cpu_pct)} | "
            f"{fmt(idle.rss_max_mb if idle else None, 1)} | "
            f"{fmt(idle.rss_end_mb if idle else None, 1)} | {fmt(r.shutdown_s)} |"
        )
    latency = [
        (r.vehicles, lat)
        for r in runs
        for lat in (r.page_latency, r.vehicle_latency)
        if lat is not None
    ]
    if latency:
        lines += [
            "",
            "| Endpoint | Vehicles | Requests | Errors | Median (ms) | p95 (ms) | p99 (ms) | "
            "Max (ms) | Req/s | Server CPU/req (ms) | Body (bytes) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for vehicles, lat in latency:
            lines.append(
                f"| `{lat.endpoint}` | {vehicles:,} | {lat.requests} | {lat.errors} | "
                f"{fmt(lat.median_ms)} | {fmt(lat.p95_ms)} | {fmt(lat.p99_ms)} | "
                f"{fmt(lat.max_ms)} | {fmt(lat.requests_per_s, 0)} | "
                f"{fmt(lat.server_cpu_ms_per_request)} | {lat.median_body_bytes:,} |"
            )
    lines += ["", "| Target | Vehicles | Measured | Result |", "|---|---:|---|---|"]
    for v in report["verdicts"]:
        result = "PASS" if v["pass"] else "**FAIL**"
        if v["note"]:
            result += f" ({v['note']})"
        lines.append(f"| {v['target']} | {v['vehicles']:,} | {v['measured']} | {result} |")
    if not report["verdicts"]:
        lines.append("| (no successful run) | | | |")
    problems = [r for r in runs if r.error or r.stderr_tail.strip() or r.killed or r.exit_code]
    if problems:
        lines += ["", "Problems:"]
        for r in problems:
            what = []
            if r.error:
                what.append(f"error: {one_line(r.error, 400)}")
            if r.killed:
                what.append("did not stop on SIGINT, killed")
            if r.exit_code:
                what.append(f"exit code {r.exit_code}")
            if r.stderr_tail.strip():
                what.append(f"stderr ends: {one_line(r.stderr_tail[-600:], 300)}")
            lines.append(f"- {r.vehicles:,} vehicles: " + "; ".join(what))
    return "\n".join(lines)


# ---- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description="Benchmark `car2mqtt simulate`: startup, idle CPU/RSS, API latency.",
    )
    parser.add_argument(
        "--vehicles",
        type=int,
        nargs="+",
        metavar="N",
        help="fleet sizes to run (default: 1 100 1000 10000); latency runs at the largest",
    )
    parser.add_argument(
        "--seconds", type=float, help="idle sampling window per fleet size (default 60; quick 10)"
    )
    parser.add_argument(
        "--warmup", type=float, help="seconds to wait before sampling (default 5; quick 2)"
    )
    parser.add_argument(
        "--requests", type=int, help="requests per latency series (default 1000; quick 200)"
    )
    parser.add_argument(
        "--cycle",
        type=float,
        default=900.0,
        help="simulated seconds of scheduled work to time via /admin/clock/advance (default 900)",
    )
    parser.add_argument("--time-factor", type=float, default=1.0, help="default 1")
    parser.add_argument("--seed", type=int, default=0, help="default 0")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument("--quick", action="store_true", help="a ~1 minute smoke run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return 1 if any run failed to complete, else 0."""

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through the cleanup of the running simulator

    signal.signal(signal.SIGTERM, terminate)
    args = parse_args(argv)
    quick = bool(args.quick)
    plan = Plan(
        seed=args.seed,
        time_factor=args.time_factor,
        warmup_s=args.warmup if args.warmup is not None else (2.0 if quick else 5.0),
        window_s=args.seconds if args.seconds is not None else (10.0 if quick else 60.0),
        cycle_s=args.cycle,
        requests=args.requests if args.requests is not None else (200 if quick else 1000),
    )
    scales = sorted(set(args.vehicles)) if args.vehicles else list(DEFAULT_SCALES)
    if any(n < 0 for n in scales):
        say("--vehicles must be >= 0")
        return 2
    info = machine()
    say(f"machine: {info['cpu_model']}, {info['logical_cores']} cores, {info['python']}")
    started = time.perf_counter()
    runs = [run_scale(n, plan, latency=n == max(scales) and n > 0) for n in scales]
    report: dict[str, Any] = {
        "benchmark": "car2mqtt simulator",
        "schema": 1,
        "machine": info,
        "plan": asdict(plan),
        "targets": {
            "vehicles": TARGET_VEHICLES,
            "time_factor": 1.0,
            "cpu_pct_of_one_core_lt": TARGET_CPU_PCT,
            "rss_mb_lt": TARGET_RSS_MB,
            "page_median_ms_lt": TARGET_PAGE_MEDIAN_MS,
        },
        "runs": [asdict(r) | {"steady_cpu_pct": r.steady_cpu_pct} for r in runs],
        "verdicts": verdicts(runs, plan.time_factor),
        "total_runtime_s": round(time.perf_counter() - started, 1),
    }
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    say(f"wrote {out} after {report['total_runtime_s']:.0f} s")
    print(markdown(report, runs))
    return 1 if any(r.error for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
