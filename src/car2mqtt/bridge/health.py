"""The bridge's health: one retained JSON object on `<base>/bridge/health`.

Published every `Timing.health_s` (60 s), after each (re)connect, and at once when a message
(never a retained one) arrives on `<base>/bridge/request/health`. It reads counters the parts
that own them keep (the link, the outbox, the pollers, the hub, the history recorder) and
counts nothing itself, apart from the process's CPU time between two reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from car2mqtt.bridge.budget import Budget
from car2mqtt.bridge.hub import VehicleHub
from car2mqtt.bridge.outbox import Outbox, encode
from car2mqtt.bridge.poller import ERROR_KINDS, Poller
from car2mqtt.mqtt.link import cancel_requests
from car2mqtt.mqtt.topics import Topics

_LOGGER = logging.getLogger(__name__)


class MqttCounts(Protocol):
    """What the MQTT connection counts (`MqttLink` has it)."""

    @property
    def published(self) -> int:
        """Messages the broker took."""
        ...

    @property
    def received(self) -> int:
        """Messages the broker handed over."""
        ...

    @property
    def reconnects(self) -> int:
        """Connections after the first."""
        ...


class HistoryCounts(Protocol):
    """What the history recorder counts (`HistoryRecorder` has it)."""

    @property
    def queued(self) -> int:
        """Events waiting to be recorded."""
        ...

    @property
    def dropped(self) -> int:
        """Events the queue had no room for."""
        ...

    @property
    def lost(self) -> int:
        """Rows given up while the database failed."""
        ...


class Health:
    """Builds the health object and publishes it on its cadence and on request."""

    def __init__(
        self,
        hub: VehicleHub,
        pollers: Sequence[Poller],
        *,
        outbox: Outbox,
        topics: Topics,
        interval_s: float,
        budgets: Mapping[str, Budget] | None = None,
    ) -> None:
        self._hub = hub
        self._pollers = {poller.name: poller for poller in pollers}
        self._outbox = outbox
        self._topics = topics
        self._interval_s = interval_s
        self._budgets = dict(budgets or {})
        self._wake = asyncio.Event()
        self._started = time.monotonic()
        self._cpu_mark = (self._started, _cpu_s())
        # Joined by the runtime, which alone knows the link and whether history is recorded.
        self.mqtt: MqttCounts | None = None
        self.history: HistoryCounts | None = None

    def request(self) -> None:
        """Publish the health now (requests that arrive meanwhile are one)."""
        self._wake.set()

    async def run(self) -> None:
        """Publish every interval, when asked, and once every account is first read."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._after_first_polls())
            await self._publish_forever()

    async def _after_first_polls(self) -> None:
        # The health after connecting has no poll yet: the next is due a minute later, and
        # whoever looks at once would see empty figures until then.
        for poller in self._pollers.values():
            await poller.listed.wait()
        self.request()

    async def _publish_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):
                    await self._wake.wait()
            if cancel_requests():
                raise asyncio.CancelledError  # a stop the timeout above must not swallow
            self._wake.clear()
            try:
                await self._outbox.send(
                    self._topics.bridge_health, encode(self.snapshot()), retain=True
                )
            except Exception:
                _LOGGER.exception("unexpected error while publishing the health")

    def snapshot(self) -> dict[str, Any]:
        """Return the health object now; the CPU share is over the time since the last one."""
        now, cpu = time.monotonic(), _cpu_s()
        then, cpu_then = self._cpu_mark
        self._cpu_mark = (now, cpu)
        wall = now - then
        mqtt, history = self.mqtt, self.history
        accounts = {account.name: self._account(account.name) for account in self._hub.accounts()}
        return {
            "uptime_s": round(now - self._started),
            "rss_mb": round(_rss_bytes() / 1e6, 1),
            "cpu_pct": round(100 * (cpu - cpu_then) / wall, 1) if wall > 0 else 0.0,
            "mqtt": {
                "sent": mqtt.published if mqtt is not None else 0,
                "received": mqtt.received if mqtt is not None else 0,
                "in_flight": self._outbox.in_flight,
                "reconnects": mqtt.reconnects if mqtt is not None else 0,
            },
            "accounts": accounts,
            "budget": self._budget(accounts),
            "history": None
            if history is None
            else {"queued": history.queued, "dropped": history.dropped, "lost": history.lost},
        }

    def _account(self, name: str) -> dict[str, Any]:
        account, poller = self._hub.account(name), self._pollers.get(name)
        errors: Mapping[str, int] = poller.errors if poller is not None else {}
        return {
            "link": account.link.value,
            "last_poll": _iso(poller.last_ok_at if poller is not None else None),
            "last_webhook": _iso(account.last_push_at),
            "errors": {**dict.fromkeys(ERROR_KINDS, 0), **errors},
            "api_calls": account.api_calls(),
            "budget": self._account_budget(name),
        }

    def _account_budget(self, name: str) -> dict[str, Any] | None:
        budget, poller = self._budgets.get(name), self._pollers.get(name)
        if budget is None:
            return None
        ledger, limits = budget.ledger, budget.limits
        interval = poller.interval_now if poller is not None else None
        return {
            "calls_hour": ledger.last_hour(),
            "calls_today": ledger.today(),
            "calls_month": ledger.this_month(),
            "busiest_car_month": budget.usage().car,
            "calls_per_month": limits.per_month,
            "calls_per_vehicle_month": limits.per_vehicle_month,
            "left": budget.left(),
            "poll_interval_s": None if interval is None else round(interval, 1),
        }

    @staticmethod
    def _budget(accounts: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """Every account's figures in one: sums, the least left, the longest interval."""
        figures = [a["budget"] for a in accounts.values() if a["budget"] is not None]
        lefts = [f["left"] for f in figures if f["left"] is not None]
        intervals = [f["poll_interval_s"] for f in figures if f["poll_interval_s"] is not None]
        return {
            "calls_hour": sum(f["calls_hour"] for f in figures),
            "calls_today": sum(f["calls_today"] for f in figures),
            "calls_month": sum(f["calls_month"] for f in figures),
            "left": min(lefts) if lefts else None,
            "poll_interval_s": max(intervals) if intervals else None,
        }


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def _cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def _rss_bytes() -> int:
    """Return the process's resident memory now (Linux), else the most it ever had."""
    try:
        pages = int(Path("/proc/self/statm").read_text(encoding="ascii").split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        # ru_maxrss is in KiB on Linux (bytes on macOS, where this is a rough figure).
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
