"""The call ledger and the budget's arithmetic, on a frozen clock (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from car2mqtt.bridge.budget import (
    Budget,
    BudgetLimits,
    CallLedger,
    Usage,
    listing,
    month_start,
    next_month_start,
    priority,
)
from car2mqtt.clock import SimClock
from car2mqtt.providers.enode.spec import SPEC as ENODE
from car2mqtt.providers.xee import SPEC as XEE

NOV_1 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
DEC_1 = datetime(2026, 12, 1, tzinfo=UTC).timestamp()


def ledger(clock: SimClock, path: str | None = ENODE.vehicle_path) -> CallLedger:
    return CallLedger("home", clock, UTC, path)


@pytest.mark.parametrize(
    ("path", "vehicle"),
    [
        ("/vehicles/abc-1/charging", "abc-1"),
        ("/vehicles/abc-1/smart-charging-status", "abc-1"),
        ("/vehicles/actions/act-9", None),  # an action's id, not a car's
        ("/users/demo/vehicles", None),  # the listing reads every car
        ("/statistics/charging", None),
    ],
)
def test_enode_calls_are_put_on_the_car_their_path_names(path: str, vehicle: str | None) -> None:
    assert ledger(SimClock(NOV_1, 0)).vehicle_of(path) == vehicle


def test_xee_status_and_trips_count_for_their_car() -> None:
    xee = ledger(SimClock(NOV_1, 0), XEE.vehicle_path)
    assert xee.vehicle_of("/v4/vehicles/42/status") == "42"
    assert xee.vehicle_of("/v4/vehicles/42/trips") == "42"
    assert xee.vehicle_of("/v4/users/me/vehicles") is None


def test_months_end_at_the_turn_of_the_year_and_in_local_time() -> None:
    dec_15 = datetime(2026, 12, 15, 12, tzinfo=UTC).timestamp()
    assert next_month_start(dec_15, UTC) == datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    cet = timezone(timedelta(hours=1))
    # 23:30 UTC on 30 November is already December in Paris.
    late = datetime(2026, 11, 30, 23, 30, tzinfo=UTC).timestamp()
    assert month_start(late, cet) == datetime(2026, 12, 1, tzinfo=cet).timestamp()


def test_hour_day_and_month_counts_and_the_roll_into_a_new_month() -> None:
    clock = SimClock(DEC_1 - 2 * 86400, 0)  # 29 November, midnight
    calls = ledger(clock)
    calls.record(None)
    clock.advance(86400 + 3000)  # 30 November, 00:50
    calls.record("car-1")
    clock.advance(1200)  # 01:10
    calls.record(None)
    assert (calls.last_hour(), calls.today(), calls.this_month()) == (2, 2, 3)
    assert calls.shared() == 2
    assert calls.by_day() == {"2026-11-29": 1, "2026-11-30": 2}
    clock.advance(DEC_1 - clock.time() + 60)  # December
    assert calls.this_month() == 0
    assert calls.own == {}
    assert calls.total == 3  # since the bridge started: the api_calls entity


def test_routine_calls_stop_at_the_reserve_and_commands_use_it() -> None:
    clock = SimClock(NOV_1, 0)
    calls = ledger(clock)
    budget = Budget(calls, BudgetLimits(per_month=100), rate=1.0)
    calls.load({int(NOV_1): 89}, {}, NOV_1)
    assert budget.admits(None)
    calls.record(None)  # 90: the routine share (90 %) is spent
    assert not budget.admits(None)
    with priority():
        assert budget.admits("car-1")
        calls.load({int(NOV_1): 100}, {}, NOV_1)
        assert not budget.admits("car-1")  # the cap itself is never passed
    assert budget.left() == 0
    assert "100 of 100 calls" in budget.describe()


def test_a_car_counts_the_listings_and_its_own_calls() -> None:
    clock = SimClock(NOV_1, 0)
    calls = ledger(clock)
    budget = Budget(calls, BudgetLimits(per_vehicle_month=50), rate=1.0)
    calls.load({int(NOV_1): 40}, {"busy": 20, "idle": 0}, NOV_1)  # 20 listings, 20 own
    assert budget.usage() == Usage(account=40, car=40)  # the busy car: 20 + 20
    assert budget.usage("idle").car == 20
    assert budget.left() == 10
    assert budget.admits("idle")  # 21 of its 45
    assert budget.admits(None) is True  # busy car: 41 of 45
    calls.load({int(NOV_1): 45}, {"busy": 25}, NOV_1)
    assert not budget.admits(None)  # a listing would be the busy car's 46th


def test_what_is_left_is_spread_evenly_over_what_is_left_of_the_month() -> None:
    clock = SimClock(NOV_1 + 10 * 86400, 0)  # 20 days left
    calls = ledger(clock)
    budget = Budget(calls, BudgetLimits(per_month=1000, reserve=0.0), rate=1.0)
    calls.load({int(NOV_1): 600}, {}, NOV_1)
    before = budget.usage()
    calls.record(None)
    calls.record(None)  # a poll of two calls
    # 398 calls left, 199 polls of two in 20 days.
    assert budget.min_interval(before, urgent=False) == pytest.approx(20 * 86400 * 2 / 398)
    assert budget.min_interval(before, urgent=True) == 0.0
    fast = Budget(calls, budget.limits, rate=1000.0)  # a SimClock's pace
    assert fast.min_interval(before, urgent=False) == pytest.approx(20 * 86.4 * 2 / 398)


def test_too_little_left_waits_for_the_next_month_and_no_cap_never_waits() -> None:
    clock = SimClock(DEC_1 - 3600, 0)
    calls = ledger(clock)
    capped = Budget(calls, BudgetLimits(per_month=10, reserve=0.0), rate=1.0)
    calls.load({int(NOV_1): 9}, {}, NOV_1)
    before = capped.usage()
    calls.record(None)
    calls.record(None)  # 11: the ledger only counts; the meter is what refuses
    assert capped.min_interval(before, urgent=True) == pytest.approx(3600)
    free = Budget(calls, BudgetLimits(), rate=1.0)
    assert free.min_interval(before, urgent=False) == 0.0
    assert free.left() is None
    assert free.admits(None)


def test_a_listing_of_many_pages_counts_once_for_each_car() -> None:
    clock = SimClock(NOV_1, 0)
    calls = ledger(clock)
    budget = Budget(calls, BudgetLimits(per_vehicle_month=500), rate=1.0)
    with listing():  # one listing of 1,000 cars: 20 pages of 50
        for page in range(20):
            assert budget.admits(None), page
            calls.record(None)
    calls.record("car-7")  # and one car's own call
    calls.record(None)  # an account-wide call outside a listing reads every car
    assert budget.usage() == Usage(account=22, car=3)
    month, buckets, own = calls.snapshot()
    again = ledger(clock)
    again.load(buckets, own, month)  # the state file keeps the pages too
    assert (again.extra_pages, dict(again.own), again.this_month()) == (19, {"car-7": 1}, 22)


def test_the_last_page_of_a_listing_fits_when_the_first_did() -> None:
    clock = SimClock(NOV_1, 0)
    calls = ledger(clock)
    budget = Budget(calls, BudgetLimits(per_vehicle_month=100, reserve=0.0), rate=1.0)
    calls.load({int(NOV_1): 99}, {}, NOV_1)
    with listing():
        for page in range(20):  # a car's 100th call, on whichever page it is
            assert budget.admits(None), page
            calls.record(None)
    assert budget.usage().car == 100
    assert not budget.admits(None)  # the next listing would be its 101st
