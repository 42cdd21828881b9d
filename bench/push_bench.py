"""Enode webhooks, measured: API calls with healthy pushes, push-to-MQTT latency, fallback.

    .venv/bin/python bench/push_bench.py                  # 1,000 cars, about 5 minutes
    .venv/bin/python bench/push_bench.py --vehicles 100 --hours 1 --burst 100   # a quick look

A. API calls per vehicle-hour while webhooks are healthy. The simulator runs `--scale` times
   faster than real time and the bridge reads the simulator's clock, as the demo does: Enode's
   cadences (cache refreshes, heartbeats, token lifetimes) and the bridge's safety listing
   (one an hour) keep their proportions, and `--hours` simulated hours take `hours * 3600 /
   scale` real seconds. Counted on the simulator's side, after the first listing.
B. Webhook received -> changed state on the broker, for a burst of `--burst` events (one per
   car, in deliveries of 100, all sent at once), signed like Enode's: per event, from the
   start of its delivery's POST to the subscriber seeing the car's new state.
C. Webhooks stop -> polling back: real time, the simulator at 1x, a watchdog of
   `--watchdog` s; from the pause of deliveries (and from the last delivery before it) to the
   first poll.

Results go to bench/results/push.json; docs/benchmarks.md quotes them with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import httpx

import common
from bridge_bench import Mosquitto, Simulator, free_port, percentile, sim_calls
from car2mqtt.bridge.known import PushMode
from car2mqtt.bridge.push import Registration
from car2mqtt.bridge.timing import Timing
from car2mqtt.clock import SystemClock
from car2mqtt.providers.enode.push import signature
from car2mqtt.providers.registry import load_config
from car2mqtt.runtime import Running, running_config

DEFAULT_OUT = common.ROOT / "bench" / "results" / "push.json"
BASE_TOPIC = "bench"


@dataclass(frozen=True, slots=True)
class ScaledClock:
    """The simulator's clock, read here: it started at `start` and runs `factor` times fast."""

    start: float
    factor: float
    origin: float

    def time(self) -> float:
        """Return the simulated now."""
        return self.start + (time.monotonic() - self.origin) * self.factor


async def sim_now(http: httpx.AsyncClient, sim: Simulator) -> float:
    """Return the simulator's clock, as its admin API says."""
    answer = (await http.get(sim.admin_url)).json()
    return datetime.fromisoformat(answer["now"].replace("Z", "+00:00")).timestamp()


def write_config(workdir: Path, sim: Simulator, broker: Mosquitto, web_port: int) -> Path:
    """Write a bridge configuration: one Enode account, webhooks to its own web server."""
    enode = sim.enode
    document = {
        "mqtt": {"url": f"mqtt://127.0.0.1:{broker.port}", "base_topic": BASE_TOPIC},
        "store": str(workdir / "car2mqtt.db"),
        "web": {"host": "127.0.0.1", "port": web_port},
        "accounts": [
            {
                "name": "bench",
                "provider": "enode",
                "api_url": enode["apiUrl"],
                "token_url": enode["tokenUrl"],
                "client_id": enode["clientId"],
                "client_secret": enode["clientSecret"],
                "user_id": "demo",
                "webhook": {"public_url": f"http://127.0.0.1:{web_port}"},
            }
        ],
    }
    path = workdir / "car2mqtt.yaml"
    path.write_text(json.dumps(document))
    return path


@contextlib.asynccontextmanager
async def bridge(
    workdir: Path, sim: Simulator, broker: Mosquitto, timing: Timing, clock: Any
) -> AsyncIterator[Running]:
    """Run a bridge in this process with webhooks on, until the block ends."""
    port = free_port()
    config = load_config(write_config(workdir, sim, broker, port), env={})
    async with running_config(config, timing=timing, clock=clock) as run:
        yield run


async def until(predicate: Any, limit_s: float, what: str) -> None:
    """Wait until `predicate()` holds."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            msg = f"no {what} within {limit_s:.0f} s"
            raise RuntimeError(msg)
        await asyncio.sleep(0.05)


async def api_calls(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Measure A and B in one run at `args.scale` x."""
    with Mosquitto(workdir) as broker, Simulator(args.vehicles, args.seed, args.scale) as sim:
        async with httpx.AsyncClient(timeout=30) as http:
            clock = ScaledClock(await sim_now(http, sim), args.scale, time.monotonic())
            timing = Timing(
                poll_interval_s=300.0 / args.scale,
                active_poll_interval_s=120.0 / args.scale,
                safety_poll_s=3600.0 / args.scale,  # a real wait, scaled like the polls
                push_watchdog_s=900.0,  # read on the simulator's clock
            )
            async with bridge(workdir, sim, broker, timing, clock) as run:
                account = run.bridge.hub.account("bench")
                await until(lambda: len(account.vehicles) >= args.vehicles, 300, "first listing")
                await until(lambda: account.push is PushMode.ACTIVE, 60, "active webhooks")
                start_calls, start = await sim_calls(http, sim), clock.time()
                polls = run.bridge.polls
                await asyncio.sleep(args.hours * 3600.0 / args.scale)
                calls, hours = (
                    await sim_calls(http, sim) - start_calls,
                    (clock.time() - start) / 3600,
                )
                result: dict[str, Any] = {
                    "vehicles": args.vehicles,
                    "scale": args.scale,
                    "simulated_hours": round(hours, 3),
                    "api_calls": calls,
                    "listings": run.bridge.polls - polls,
                    "calls_per_vehicle_hour": round(calls / (args.vehicles * hours), 5),
                    "push_mode_at_end": account.push.value,
                }
            return result


async def latency(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """B: the burst, with the simulator at 1x: Enode's own deliveries at their real pace."""
    with Mosquitto(workdir) as broker, Simulator(args.vehicles, args.seed, 1.0) as sim:
        async with (
            httpx.AsyncClient(timeout=60) as http,
            bridge(workdir, sim, broker, Timing(), SystemClock()) as run,
        ):
            account = run.bridge.hub.account("bench")
            await until(lambda: len(account.vehicles) >= args.vehicles, 300, "first listing")
            await until(lambda: account.push is PushMode.ACTIVE, 60, "active webhooks")
            return await burst(args, run, broker, http, sim, SystemClock())


async def burst(
    args: argparse.Namespace,
    run: Running,
    broker: Mosquitto,
    http: httpx.AsyncClient,
    sim: Simulator,
    clock: Any,
) -> dict[str, Any]:
    """B: `args.burst` signed events at once; time to each car's new state on the broker."""
    store = run.bridge.saver.store
    registration = Registration.load(store, "bench")
    assert registration is not None
    url = run.bridge.push.url_of("bench")
    token = (
        await http.post(
            sim.enode["tokenUrl"],
            data={"grant_type": "client_credentials"},
            auth=(sim.enode["clientId"], sim.enode["clientSecret"]),
        )
    ).json()["access_token"]
    vehicles: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"pageSize": 50, **({"after": after} if after else {})}
        page = (
            await http.get(
                sim.enode["apiUrl"] + "/users/demo/vehicles",
                params=params,
                headers={"Authorization": f"Bearer {token}", "Enode-Version": "2024-10-01"},
            )
        ).json()
        vehicles += page["data"]
        after = page["pagination"]["after"]
        if not after or not page["data"]:
            break
    vehicles = vehicles[: args.burst]
    # An hour ahead of the simulator: these are the newest data, whatever it refreshes meanwhile.
    stamp = datetime.fromtimestamp(clock.time() + 3600, UTC).isoformat().replace("+00:00", "Z")
    later = datetime.fromtimestamp(clock.time() + 7200, UTC).isoformat().replace("+00:00", "Z")
    wanted: dict[str, int] = {}
    events: list[dict[str, Any]] = []
    for n, vehicle in enumerate(vehicles):
        level = 1 + (n * 7 + 13) % 97
        wanted[vehicle["id"]] = level
        vehicle["chargeState"] = {
            **vehicle["chargeState"],
            "batteryLevel": level,
            "lastUpdated": stamp,
        }
        vehicle["lastSeen"] = stamp
        events.append(
            {
                "event": "user:vehicle:updated",
                "createdAt": stamp,
                "version": "2024-10-01",
                "user": {"id": "demo"},
                "vehicle": vehicle,
                "updatedFields": ["chargeState.batteryLevel"],
            }
        )
    batches = [events[i : i + 100] for i in range(0, len(events), 100)]
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    topics = {v["id"]: f"{BASE_TOPIC}/enode/{v['id']}/state" for v in vehicles}
    by_topic = {t: vid for vid, t in topics.items()}

    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="push-bench") as client:
        await client.subscribe(f"{BASE_TOPIC}/enode/+/state", qos=1)
        await asyncio.sleep(1.0)  # the retained states arrive first

        async def watch() -> None:
            async for message in client.messages:
                vid = by_topic.get(str(message.topic))
                if vid is None or vid in seen:
                    continue
                payload = message.payload
                data = json.loads(payload if isinstance(payload, bytes | str) else b"{}")
                if data.get("battery") == wanted[vid]:
                    seen[vid] = time.perf_counter()
                    if len(seen) == len(wanted):
                        return

        watcher = asyncio.create_task(watch())

        handled: list[float] = []

        async def deliver(batch: list[dict[str, Any]]) -> int:
            body = json.dumps(batch).encode()
            headers = {
                "Content-Type": "application/json",
                "X-Enode-Signature": signature(registration.secret, body),
            }
            began = time.perf_counter()
            for event in batch:
                sent[event["vehicle"]["id"]] = began
            status = (await http.post(url, content=body, headers=headers)).status_code
            handled.append((time.perf_counter() - began) * 1000)
            return status

        # The steady state first: single events, one at a time, 50 ms apart.
        singles = events[: args.singles]
        for event in singles:
            await deliver([event])
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        single = sorted(
            (seen[e["vehicle"]["id"]] - sent[e["vehicle"]["id"]]) * 1000
            for e in singles
            if e["vehicle"]["id"] in seen
        )
        handled.clear()
        # Then the burst: every car once more, in deliveries of 100, all at once.
        for vehicle in vehicles:
            wanted[vehicle["id"]] = 1 + wanted[vehicle["id"]] % 97  # differs from the first
            update = {"batteryLevel": wanted[vehicle["id"]], "lastUpdated": later}
            vehicle["chargeState"] = {**vehicle["chargeState"], **update}
            seen.pop(vehicle["id"], None)
        statuses = await asyncio.gather(*(deliver(b) for b in batches))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watcher, 60)
        watcher.cancel()
    latencies = sorted((seen[v] - sent[v]) * 1000 for v in seen)
    return {
        "events": len(events),
        "deliveries": len(batches),
        "statuses": sorted(set(statuses)),
        "published": len(seen),
        "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
        "max_ms": round(latencies[-1], 1) if latencies else None,
        # POST start -> the bridge's 200 (all of the delivery's events applied), per delivery.
        "delivery_handled_ms": sorted(round(h, 1) for h in handled),
        "single_events": len(single),
        "single_event_p50_ms": round(percentile(single, 50), 1) if single else None,
        "single_event_p99_ms": round(percentile(single, 99), 1) if single else None,
    }


async def fallback(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """C: deliveries paused; how long until polling is back."""
    with Mosquitto(workdir) as broker, Simulator(100, args.seed, 1.0) as sim:
        async with httpx.AsyncClient(timeout=30) as http:
            timing = Timing(push_watchdog_s=args.watchdog)
            async with bridge(workdir, sim, broker, timing, SystemClock()) as run:
                account = run.bridge.hub.account("bench")
                await until(lambda: account.push is PushMode.ACTIVE, 120, "active webhooks")
                polls = run.bridge.polls
                await http.put(f"{sim.admin_url}/enode/webhook-delivery", json={"paused": True})
                paused = time.time()
                last = account.last_push_at or paused
                await until(lambda: run.bridge.polls > polls, args.watchdog * 3 + 120, "fallback")
                back = time.time()
                return {
                    "watchdog_s": args.watchdog,
                    "poll_interval_s": 300.0,
                    "from_pause_s": round(back - paused, 1),
                    "from_last_delivery_s": round(back - last, 1),
                    "push_mode": account.push.value,
                }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=1000)
    parser.add_argument("--hours", type=float, default=4.0, help="simulated hours to count")
    parser.add_argument("--scale", type=float, default=60.0, help="simulator speed-up")
    parser.add_argument("--burst", type=int, default=1000, help="events in the burst")
    parser.add_argument("--singles", type=int, default=100, help="single-event deliveries")
    parser.add_argument("--watchdog", type=float, default=30.0, help="watchdog for part C (s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run A, B and C; write the JSON results."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="push-bench-") as tmp:
        work = Path(tmp)
        (work / "a").mkdir()
        (work / "b").mkdir()
        (work / "c").mkdir()
        results = {
            "machine": common.machine(),
            "api_calls": asyncio.run(api_calls(args, work / "a")),
            "latency": asyncio.run(latency(args, work / "b")),
            "fallback": asyncio.run(fallback(args, work / "c")),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
