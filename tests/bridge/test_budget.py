"""The API budget over a simulated month: the real bridge, mosquitto and the simulator.

The bridge's clock is a frozen SimClock the test moves: after each poll it jumps ahead by
the interval the poller chose and wakes it, so a month of polling runs in seconds and every
figure is the same from run to run.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from car2mqtt.bridge.budget import Budget, BudgetLimits
from car2mqtt.bridge.poller import Poller
from car2mqtt.clock import SimClock
from tests.bridge.conftest import FAST, TOPICS, Harness, bridge_for, budget_of
from tests.bridge.test_controls import last_command, send
from tests.mqtt_support import Mosquitto, probe, publish
from tests.support import Sim

pytestmark = pytest.mark.asyncio

NOV_1 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
DEC_1 = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
# Production cadence (Enode's 5 minutes, 2 while charging): only the test's wakes end a rest.
MONTHLY = replace(FAST, poll_interval_s=300.0, active_poll_interval_s=120.0)


async def finished(poller: Poller) -> float:
    """Wait for the poll under way to end; return the interval it chose."""
    for _ in range(2000):
        if poller.interval_now is not None:
            return poller.interval_now
        await asyncio.sleep(0.005)
    raise AssertionError("the poll never finished")


async def next_poll(poller: Poller, clock: SimClock, harness: Harness) -> float:
    """Let the poller's rest pass on the clock, wake it, and return the interval it chose."""
    waited = await finished(poller)
    poller.interval_now = None
    clock.advance(waited)
    harness.running.bridge.poll_now("home")
    return await finished(poller)


async def run_month(harness: Harness, clock: SimClock, until: float) -> list[float]:
    """Poll from now until `until` on the clock; return every interval chosen."""
    poller = harness.running.bridge.poller("home")
    intervals = [await finished(poller)]
    while clock.time() + intervals[-1] < until:
        intervals.append(await next_poll(poller, clock, harness))
    return intervals


async def test_500_calls_per_car_last_the_month_spread_evenly(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    clock = SimClock(NOV_1, factor=0)
    budget = budget_of("home", clock, BudgetLimits(per_vehicle_month=500))
    async with bridge_for(
        sim, mosquitto, tmp_path, clock=clock, timing=MONTHLY, budgets={"home": budget}
    ) as harness:
        intervals = await run_month(harness, clock, DEC_1 - 3600)
        usage = budget.usage()
        days = budget.ledger.by_day()
    # The cap holds for every car: the listings (each reads every car) and its own calls.
    assert usage.car <= 500
    # ... and it was used: routine polls stop at the reserve (10 %), not much before.
    assert usage.car >= 0.9 * 500 - 20
    # Every day of November had its share: none starved, none took a double helping.
    assert len(days) == 30
    mean = sum(days.values()) / len(days)
    assert all(0.6 * mean <= calls <= 1.4 * mean for calls in days.values()), days
    # Stretched from Enode's 5 minutes to about 2,592,000 s / 450 polls, i.e. near 1.6 h.
    assert 0.8 * 2_592_000 / 450 < sorted(intervals)[len(intervals) // 2] < 1.2 * 2_592_000 / 450


async def test_commands_still_go_out_when_routine_polls_have_spent_theirs(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla = sim.vehicle_ids()[0]
    clock = SimClock(NOV_1, factor=0)
    budget = budget_of("home", clock, BudgetLimits(per_vehicle_month=500))
    # The month so far: 449 account-wide calls; routine polls may use 450 (the rest is kept).
    budget.ledger.load({int(NOV_1): 449}, {}, NOV_1)
    async with (
        bridge_for(
            sim, mosquitto, tmp_path, clock=clock, timing=MONTHLY, budgets={"home": budget}
        ) as harness,
        probe(mosquitto.port) as seen,
    ):
        poller = harness.running.bridge.poller("home")
        # One listing fits; after it, the next routine poll waits for December.
        assert await finished(poller) == pytest.approx(DEC_1 - NOV_1)
        assert budget.usage().car >= 450
        # A command uses the reserve: it is sent, followed and confirmed.
        await send(mosquitto.port, tesla, "max_current", b"10")
        await last_command(seen, tesla, "set_max_current", "pending")
        sim.advance(130)
        await last_command(seen, tesla, "set_max_current", "confirmed")
        assert sim.live(tesla)["maxCurrent"] == 10
        assert 451 < budget.usage().car <= 500
        # Home Assistant's sensors say where the month stands.
        await publish(mosquitto.port, TOPICS.bridge_health_request, b"")
        health = await seen.wait_json(
            TOPICS.bridge_health,
            lambda h: h["accounts"]["home"]["budget"]["busiest_car_month"] > 451,
        )
    home = health["accounts"]["home"]["budget"]
    assert health["budget"]["left"] == home["left"] == 500 - home["busiest_car_month"]
    assert home["calls_per_vehicle_month"] == 500
    assert health["budget"]["poll_interval_s"] > 20 * 86400  # routine polls wait


async def test_a_spent_budget_refuses_a_command_clearly_and_calls_nobody(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    tesla = sim.vehicle_ids()[0]
    clock = SimClock(NOV_1, factor=0)
    budget: Budget = budget_of("home", clock, BudgetLimits(per_month=200, reserve=0.0))
    budget.ledger.load({int(NOV_1): 199}, {}, NOV_1)
    async with (
        bridge_for(
            sim, mosquitto, tmp_path, clock=clock, timing=MONTHLY, budgets={"home": budget}
        ) as harness,
        probe(mosquitto.port) as seen,
    ):
        poller = harness.running.bridge.poller("home")
        await finished(poller)  # the listing took the last call: the cars are known
        await seen.wait_json(TOPICS.state(harness.ref(tesla)), lambda s: True)
        calls_before = sim.admin_call("GET", "").json()["apiCalls"]["enode"]
        await send(mosquitto.port, tesla, "max_current", b"10")
        failed = await last_command(seen, tesla, "set_max_current", "failed")
        assert "API budget" in failed["reason"]
        assert "next month" in failed["reason"]
        assert poller.interval_now == pytest.approx(DEC_1 - NOV_1)
        # Not one call reached the cloud: the meter refused it before it left.
        assert sim.admin_call("GET", "").json()["apiCalls"]["enode"] == calls_before
    assert budget.usage().account == 200
    assert sim.live(tesla)["maxCurrent"] != 10


async def test_december_starts_a_fresh_budget_and_the_counts_survive_a_restart(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    clock = SimClock(DEC_1 - 600, factor=0)
    budget = budget_of("home", clock, BudgetLimits(per_month=100))
    budget.ledger.load({int(DEC_1 - 3600): 100}, {}, NOV_1)
    async with bridge_for(
        sim, mosquitto, tmp_path, clock=clock, timing=MONTHLY, budgets={"home": budget}
    ) as harness:
        poller = harness.running.bridge.poller("home")
        assert await finished(poller) == pytest.approx(600)  # until midnight
        interval = await next_poll(poller, clock, harness)  # December 1st, 00:00
        assert clock.time() >= DEC_1
        assert budget.usage().account >= 1
        assert 300 <= interval < 2_678_400 / 80  # what is left, spread over 31 days
        used = budget.usage().account
    # Stopped: the counts are in the state file, and the next run goes on from them.
    again = budget_of("home", clock, BudgetLimits(per_month=100))
    async with bridge_for(
        sim, mosquitto, tmp_path, clock=clock, timing=MONTHLY, budgets={"home": again}
    ) as harness:
        await finished(harness.running.bridge.poller("home"))
        assert again.usage().account > used
