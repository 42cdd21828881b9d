"""The API budget, measured: a simulated month of polling under a cap, and the meter's cost.

    .venv/bin/python bench/budget_bench.py                      # 1, 100 and 1,000 cars
    .venv/bin/python bench/budget_bench.py --vehicles 100 --cap 500

A. A month under `budget.calls_per_vehicle_month: --cap`. The real simulator (a subprocess,
   `--vehicles` cars) and a real mosquitto; the bridge runs in this process on a frozen clock
   that starts on 1 November. After each poll the clock jumps by the interval the poller
   chose and the poller is woken, so November's 30 days of polling take seconds and every
   figure is the same from run to run. Measured from the bridge's own ledger (`bridge/budget.py`,
   which counts every API request, token requests apart): calls per car (the account-wide
   calls, a listing per 50 cars, plus the car's own), calls per day, the interval chosen.
B. The meter's cost per request: `Meter.__call__` (what every API request goes through) at
   `--vehicles` cars with per-car counts, timed over many calls in this process.

Results go to bench/results/budget.json; docs/benchmarks.md quotes them with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

import common
from bridge_bench import Mosquitto, Simulator
from car2mqtt.bridge.budget import Budget, BudgetLimits, CallLedger
from car2mqtt.bridge.timing import Timing
from car2mqtt.clock import SimClock
from car2mqtt.mqtt.link import BrokerSettings
from car2mqtt.mqtt.topics import Topics
from car2mqtt.providers.enode import EnodeProvider
from car2mqtt.providers.enode.spec import SPEC
from car2mqtt.runtime import running
from car2mqtt.store import Store

DEFAULT_OUT = common.ROOT / "bench" / "results" / "budget.json"
NOV_1 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
DEC_1 = datetime(2026, 12, 1, tzinfo=UTC).timestamp()


def budget_for(clock: SimClock, cap: int) -> Budget:
    """Return a ledger and a per-car cap for the account `bench`, days in UTC."""
    ledger = CallLedger("bench", clock, UTC, SPEC.vehicle_path)
    return Budget(ledger, BudgetLimits(per_vehicle_month=cap), rate=1.0)


async def finished(run: Any) -> float:
    """Wait for the poll under way to end; return the interval it chose."""
    poller = run.bridge.poller("bench")
    while poller.interval_now is None:
        if run.task.done():
            run.task.result()
            raise RuntimeError("the bridge stopped")
        await asyncio.sleep(0.002)
    return float(poller.interval_now)


async def month(vehicles: int, cap: int, workdir: Path) -> dict[str, Any]:
    """Measure A for one fleet size."""
    clock = SimClock(NOV_1, factor=0)
    budget = budget_for(clock, cap)
    with Mosquitto(workdir) as broker, Simulator(vehicles, 7) as sim:
        store = Store.open(Path(tempfile.mkdtemp(dir=workdir)) / "car2mqtt.db")
        enode = sim.enode
        provider = EnodeProvider.create(
            account="bench",
            user_id="demo",
            api_url=enode["apiUrl"],
            token_url=enode["tokenUrl"],
            client_id=enode["clientId"],
            client_secret=enode["clientSecret"],
            clock=clock,
            persistence=store,
            meter=budget.meter(),
        )
        timing = Timing(poll_interval_s=300.0, active_poll_interval_s=120.0)
        started = time.perf_counter()
        try:
            async with running(
                [provider],
                store=store,
                broker=BrokerSettings.from_url(broker.url, client_id="car2mqtt-budget-bench"),
                topics=Topics("bench", "homeassistant"),
                timing=timing,
                clock=clock,
                budgets={"bench": budget},
            ) as run:
                poller = run.bridge.poller("bench")
                intervals = [await finished(run)]
                while clock.time() + intervals[-1] < DEC_1:
                    poller.interval_now = None
                    clock.advance(intervals[-1])
                    run.bridge.poll_now("bench")
                    intervals.append(await finished(run))
                usage, days = budget.usage(), budget.ledger.by_day()
        finally:
            store.close()
        wall = time.perf_counter() - started
    per_day = list(days.values())
    return {
        "vehicles": vehicles,
        "cap_per_car": cap,
        "polls": len(intervals),
        "calls_per_car": usage.car,
        "calls_account": usage.account,
        "days": len(days),
        "calls_per_day_min": min(per_day),
        "calls_per_day_mean": round(statistics.fmean(per_day), 2),
        "calls_per_day_max": max(per_day),
        "interval_median_s": round(statistics.median(intervals), 1),
        "wall_s": round(wall, 1),
    }


def meter_cost(vehicles: int, cap: int, calls: int = 20_000) -> dict[str, Any]:
    """Measure B: microseconds per request through the meter, per-car counts for `vehicles`."""
    clock = SimClock(NOV_1 + 10 * 86400, factor=0)
    budget = budget_for(clock, cap * 1000)  # never refuses: only the counting is timed
    ledger = budget.ledger
    ledger.load(
        {int(NOV_1) + 900 * i: 3 for i in range(960)},
        {f"car-{i}": 1 for i in range(vehicles)},
        NOV_1,
    )
    meter = budget.meter()
    listing = httpx.Request("GET", "https://enode.invalid/users/demo/vehicles")
    own = httpx.Request("GET", "https://enode.invalid/vehicles/car-1/smart-charging-status")

    async def run() -> float:
        start = time.perf_counter()
        for i in range(calls):
            await meter(own if i % 10 == 0 else listing)
        return time.perf_counter() - start

    elapsed = asyncio.run(run())
    return {"vehicles": vehicles, "calls": calls, "us_per_request": round(elapsed / calls * 1e6, 2)}


def main() -> int:
    """Run the benchmark and write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--cap", type=int, default=500, help="calls per car and month")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    months, meters = [], []
    with tempfile.TemporaryDirectory(prefix="budget-bench-") as tmp:
        for vehicles in args.vehicles:
            found = asyncio.run(month(vehicles, args.cap, Path(tmp)))
            print(f"[budget_bench] month: {found}", file=sys.stderr)
            months.append(found)
    for vehicles in [*args.vehicles, 10_000]:
        found = meter_cost(vehicles, args.cap)
        print(f"[budget_bench] meter: {found}", file=sys.stderr)
        meters.append(found)
    result = {"machine": common.machine(), "month": months, "meter": meters}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        "| Cars | Cap/car | Polls | Calls/car | Account calls | Calls/day min/mean/max | "
        "Median interval | Wall |"
    )
    print("|---:|---:|---:|---:|---:|---|---:|---:|")
    for m in months:
        print(
            f"| {m['vehicles']:,} | {m['cap_per_car']} | {m['polls']} | {m['calls_per_car']} | "
            f"{m['calls_account']} | {m['calls_per_day_min']} / {m['calls_per_day_mean']} / "
            f"{m['calls_per_day_max']} | {m['interval_median_s']:,} s | {m['wall_s']} s |"
        )
    print()
    print("| Cars with counts | µs per request through the meter |")
    print("|---:|---:|")
    for m in meters:
        print(f"| {m['vehicles']:,} | {m['us_per_request']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
