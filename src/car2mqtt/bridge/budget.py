"""The API budget: every call an account makes to its cloud's API, counted, and a monthly cap.

`CallLedger` counts an account's API calls (never its token requests) in 15-minute buckets
over the month, and per car where the request's path names one (`ProviderSpec.vehicle_path`).
`Meter` sees every request of the account's API client and feeds it; when a `Budget` is set
it also refuses a call that would break the month's cap (`BudgetSpent`), so nothing, not even
a part that forgot to ask, can exceed it.

The poller asks `Budget.min_interval` how far apart its polls must be for what is left of
the month to last until the month ends, spread evenly. A share of the budget (`reserve`) is
kept for commands and the polls that follow them: routine calls stop before it, calls made
under `priority()` (the command service, a poll while a command is in flight) may use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import re
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from functools import partial

import httpx

from car2mqtt.bridge.saving import Saver
from car2mqtt.clock import Clock
from car2mqtt.errors import ProviderUnavailable, StoreError

BUCKET_S = 900  # every timezone's midnight falls on a quarter hour
# Where the state file keeps a month's extra listing pages, beside the cars' own counts.
PAGES_KEY = "*"
HOUR_S = 3600.0

_PRIORITY: contextvars.ContextVar[bool] = contextvars.ContextVar("budget_priority", default=False)
# Inside a listing: how many account-wide calls it has made so far.
_LISTING: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "budget_listing", default=None
)


@contextlib.contextmanager
def priority() -> Iterator[None]:
    """Mark the calls made inside the block as a command's: they may use the reserve."""
    token = _PRIORITY.set(True)
    try:
        yield
    finally:
        _PRIORITY.reset(token)


@contextlib.contextmanager
def listing() -> Iterator[None]:
    """Mark the calls made inside the block as one listing, which reads each car once.

    Its account-wide calls after the first are further pages: each reads other cars, so they
    count for the account but not again for every car. A context variable, so a command
    running meanwhile in another task is not taken for a page.
    """
    token = _LISTING.set([0])
    try:
        yield
    finally:
        _LISTING.reset(token)


class BudgetSpent(ProviderUnavailable):
    """The month's API budget has no room for this call; it resets when the month does."""


def month_start(at: float, tz: tzinfo | None) -> float:
    """Return when the month holding `at` began (epoch seconds, months as `tz` sees them)."""
    local = datetime.fromtimestamp(at, tz)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


def next_month_start(at: float, tz: tzinfo | None) -> float:
    """Return when the month after the one holding `at` begins."""
    local = datetime.fromtimestamp(at, tz).replace(day=28) + timedelta(days=4)
    return month_start(local.timestamp(), tz)


def day_start(at: float, tz: tzinfo | None) -> float:
    """Return when the day holding `at` began, in `tz`."""
    local = datetime.fromtimestamp(at, tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


class CallLedger:
    """One account's API calls this month: by quarter hour, and by car."""

    def __init__(
        self, account: str, clock: Clock, tz: tzinfo | None, vehicle_path: str | None
    ) -> None:
        self.account = account
        self.clock = clock
        self.tz = tz
        self._vehicle_re = re.compile(vehicle_path) if vehicle_path else None
        self.month = month_start(clock.time(), tz)
        self._next_month = next_month_start(self.month, tz)
        self.buckets: dict[int, int] = {}  # bucket start -> calls in it (this month)
        self.own: Counter[str] = Counter()  # vehicle id -> calls naming it (this month)
        # Running sums, so a request costs the same at 10,000 cars as at one.
        self._month_calls = 0
        self._own_calls = 0
        self.own_max = 0  # the most own calls of any car this month
        # Listing pages after the first, this month: each page reads other cars, so a listing
        # of 20 pages reads each car once, and counts once per car, not 20 times.
        self.extra_pages = 0
        self.total = 0  # since the bridge started: the `api_calls` entity
        self._recent: deque[float] = deque()  # times of the last hour's calls
        self.dirty = False  # counts the state file does not have yet

    def vehicle_of(self, path: str) -> str | None:
        """Return the car a request path names, None for an account-wide call."""
        if self._vehicle_re is None:
            return None
        found = self._vehicle_re.search(path)
        return found.group(1) if found else None

    def record(self, vehicle: str | None) -> None:
        """Count one call made now (naming `vehicle`, or account-wide)."""
        now = self.clock.time()
        self._roll(now)
        bucket = int(now // BUCKET_S) * BUCKET_S
        self.buckets[bucket] = self.buckets.get(bucket, 0) + 1
        self._month_calls += 1
        run = _LISTING.get() if vehicle is None else None
        if run is not None:
            run[0] += 1
            if run[0] > 1:
                self.extra_pages += 1
        if vehicle is not None:
            mine = self.own[vehicle] = self.own[vehicle] + 1
            self._own_calls += 1
            self.own_max = max(self.own_max, mine)
        self.total += 1
        self._recent.append(now)
        self.dirty = True

    def _roll(self, now: float) -> None:
        if self.month <= now < self._next_month:
            return
        start = month_start(now, self.tz)
        self.month, self._next_month, self.dirty = start, next_month_start(start, self.tz), True
        self.buckets = {b: n for b, n in self.buckets.items() if b >= start}
        self.own.clear()  # a car's own calls are kept for the month only
        self.extra_pages = 0
        self._recount()

    def _recount(self) -> None:
        self._month_calls = sum(self.buckets.values())
        self._own_calls = sum(self.own.values())
        self.own_max = max(self.own.values(), default=0)

    def last_hour(self) -> int:
        """Return the calls of the last 60 minutes."""
        now = self.clock.time()
        while self._recent and self._recent[0] <= now - HOUR_S:
            self._recent.popleft()
        return len(self._recent)

    def today(self) -> int:
        """Return the calls since midnight."""
        start = day_start(self.clock.time(), self.tz)
        return sum(n for b, n in self.buckets.items() if b >= start)

    def this_month(self) -> int:
        """Return the calls since the month began."""
        self._roll(self.clock.time())
        return self._month_calls

    def shared(self) -> int:
        """Return the month's calls that named no car (a listing reads every car)."""
        return self.this_month() - self._own_calls

    def per_car_shared(self) -> int:
        """Return the account-wide calls that read any one car: a listing counts once."""
        return self.shared() - self.extra_pages

    def by_day(self) -> dict[str, int]:
        """Return the month's calls per day (ISO date -> calls)."""
        days: Counter[str] = Counter()
        for bucket, calls in self.buckets.items():
            days[datetime.fromtimestamp(bucket, self.tz).date().isoformat()] += calls
        return dict(sorted(days.items()))

    def load(self, buckets: Mapping[int, int], own: Mapping[str, int], month: float | None) -> None:
        """Take the counts the state file kept (this month's only)."""
        self.month = month_start(self.clock.time(), self.tz)
        self._next_month = next_month_start(self.month, self.tz)
        self.buckets = {b: n for b, n in buckets.items() if b >= self.month}
        kept = dict(own) if month == self.month else {}
        self.extra_pages = kept.pop(PAGES_KEY, 0)
        self.own = Counter(kept)
        self._recount()

    def snapshot(self) -> tuple[float, dict[int, int], dict[str, int]]:
        """Return what the state file keeps: the month, its buckets and the cars' counts."""
        self._roll(self.clock.time())
        self.dirty = False
        own = dict(self.own)
        if self.extra_pages:
            own[PAGES_KEY] = self.extra_pages
        return self.month, dict(self.buckets), own


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    """An account's caps: calls per month for the account, per car, or both."""

    per_month: int | None = None
    per_vehicle_month: int | None = None
    reserve: float = 0.1  # the share kept for commands and their follow-up polls

    @property
    def capped(self) -> bool:
        """Whether any cap is set."""
        return self.per_month is not None or self.per_vehicle_month is not None


@dataclass(frozen=True, slots=True)
class Usage:
    """Calls made so far this month, as each cap counts them."""

    account: int  # every call
    car: int  # the busiest car's: the account-wide calls that read it (a listing once), its own


class Budget:
    """One account's budget: what is left, and how far apart routine polls must be."""

    def __init__(self, ledger: CallLedger, limits: BudgetLimits, *, rate: float = 1.0) -> None:
        self.ledger = ledger
        self.limits = limits
        # Clock seconds per event-loop second: 1, but a SimClock's factor in tests. Months
        # end on the ledger's clock, in its time zone.
        self._rate = rate

    def usage(self, vehicle: str | None = None) -> Usage:
        """Return the month's usage: the account's, and `vehicle`'s (else the busiest car's)."""
        ledger = self.ledger
        own = ledger.own[vehicle] if vehicle is not None else ledger.own_max
        # A car's count is its own calls plus the account-wide ones that read it.
        return Usage(ledger.this_month(), ledger.per_car_shared() + own)

    def _caps(self, usage: Usage, *, reserve: bool) -> list[float]:
        """Return the calls left under each cap, the reserve kept back when `reserve`."""
        limits = self.limits
        keep = 1 - limits.reserve if reserve else 1.0
        caps: list[float] = []
        if limits.per_month is not None:
            caps.append(limits.per_month * keep - usage.account)
        if limits.per_vehicle_month is not None:
            caps.append(limits.per_vehicle_month * keep - usage.car)
        return caps

    def left(self) -> int | None:
        """Return the calls left this month under the tightest cap (None without a cap)."""
        caps = self._caps(self.usage(), reserve=False)
        return max(0, math.floor(min(caps))) if caps else None

    def admits(self, vehicle: str | None) -> bool:
        """Whether one more call (naming `vehicle`) fits; a command's may use the reserve."""
        usage = self.usage(vehicle)
        run = _LISTING.get() if vehicle is None else None
        if run is not None and run[0] >= 1:
            usage = Usage(usage.account, usage.car - 1)  # a further page: no car's count grows
        caps = self._caps(usage, reserve=not _PRIORITY.get())
        return all(left >= 1 for left in caps)

    def meter(self) -> Meter:
        """Return the request hook that counts this account's calls (and caps them, if set)."""
        return Meter(self.ledger, self if self.limits.capped else None)

    def describe(self) -> str:
        """Say the month's use against each cap ("480 of 500 calls per car")."""
        usage, limits, said = self.usage(), self.limits, []
        if limits.per_month is not None:
            said.append(f"{usage.account} of {limits.per_month} calls")
        if limits.per_vehicle_month is not None:
            said.append(f"{usage.car} of {limits.per_vehicle_month} calls per car")
        return ", ".join(said) or f"{usage.account} calls, no cap"

    def until_month_end(self) -> float:
        """Event-loop seconds until the month (and the budget) starts again."""
        now = self.ledger.clock.time()
        return max(0.0, next_month_start(now, self.ledger.tz) - now) / self._rate

    def min_interval(self, before: Usage, *, urgent: bool) -> float:
        """Return how many event-loop seconds apart polls like the last one must be.

        `before` is the usage when that poll began: what it cost under each cap is what the
        next one is expected to. What is left (the reserve kept back unless `urgent`) is
        spread evenly over the rest of the month; with too little left, the wait is until
        the month ends.
        """
        now = self.usage()
        caps = self._caps(now, reserve=not urgent)
        costs: list[int] = []
        if self.limits.per_month is not None:
            costs.append(now.account - before.account)
        if self.limits.per_vehicle_month is not None:
            costs.append(now.car - before.car)
        remaining, wait = self.until_month_end(), 0.0
        for left, spent in zip(caps, costs, strict=True):
            cost = max(spent, 1)
            if left < cost:
                return remaining
            if not urgent:
                wait = max(wait, remaining * cost / left)
        return wait


class Meter:
    """Counts every request of one account's API client, and refuses one over budget.

    An httpx request hook (`Wiring.meter`): raising here keeps the request from being sent.
    """

    def __init__(self, ledger: CallLedger, budget: Budget | None) -> None:
        self.ledger = ledger
        self.budget = budget

    async def __call__(self, request: httpx.Request) -> None:
        """Count the request, unless the budget has no room for it (BudgetSpent)."""
        vehicle = self.ledger.vehicle_of(request.url.path)
        budget = self.budget
        if budget is not None and not budget.admits(vehicle):
            room = "none is left" if _PRIORITY.get() else "the rest is kept for commands"
            msg = (
                f"the month's API budget has no room for {request.method} {request.url.path} "
                f"({room}); it starts again with the next month"
            )
            raise BudgetSpent(msg, budget.until_month_end())
        self.ledger.record(vehicle)


class CallKeeper:
    """Keeps the month's counts in the state file, so a restart does not reset the budget."""

    def __init__(self, budgets: Mapping[str, Budget], saver: Saver, *, every_s: float) -> None:
        self._ledgers = [budget.ledger for budget in budgets.values()]
        self._saver = saver
        self._every_s = every_s

    def load(self) -> None:
        """Take what the state file kept (a file that cannot be read starts from zero)."""
        for ledger in self._ledgers:
            try:
                buckets, own, month = self._saver.store.load_calls(ledger.account)
            except StoreError as exc:
                self._saver.trouble(f"account {ledger.account}'s API call counts", exc)
                continue
            if buckets or own:  # none kept: what the ledger has (nothing, but in tests) stays
                ledger.load(buckets, own, month)

    async def run(self) -> None:
        """Save changed counts every interval, and once more when cancelled."""
        try:
            while True:
                await asyncio.sleep(self._every_s)
                await self.save()
        finally:
            await self.save()

    async def save(self) -> None:
        """Write the counts that changed since the last save."""
        for ledger in self._ledgers:
            if ledger.dirty:
                write = partial(self._saver.store.save_calls, ledger.account, *ledger.snapshot())
                await self._saver.save("API call counts", write)
