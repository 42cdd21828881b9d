"""The polling source: one per account, reading its cloud on the provider's cadence.

It owns the interval (faster while a car charges or drives, or a command is in flight), the
jittered backoff after a failure (never shorter than the cloud's Retry-After) and the watch
for a re-link saved by `car2mqtt link`. Everything it reads goes to the hub, page by page.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncGenerator

from car2mqtt.backoff import backoff_delay
from car2mqtt.bridge.budget import Budget, BudgetSpent, listing, priority
from car2mqtt.bridge.hub import VehicleHub
from car2mqtt.bridge.pace import Pace
from car2mqtt.bridge.saving import Saver
from car2mqtt.bridge.timing import Timing
from car2mqtt.clock import Clock
from car2mqtt.errors import (
    AuthError,
    BadCloudResponse,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    ReauthRequired,
    StoreError,
)
from car2mqtt.models import LinkState
from car2mqtt.mqtt.link import cancel_requests
from car2mqtt.providers.base import Provider

_LOGGER = logging.getLogger(__name__)


class Poller:
    """Reads one account's cloud until cancelled and hands what it read to the hub."""

    def __init__(
        self,
        provider: Provider,
        hub: VehicleHub,
        *,
        pace: Pace,
        saver: Saver,
        timing: Timing,
        clock: Clock,
        interval_s: float | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.provider = provider
        self._clock = clock
        self._hub = hub
        self._pace = pace
        self._saver = saver
        self._timing = timing
        self._interval_s = interval_s  # the account's configured interval
        self.polls = 0
        self.errors: Counter[str] = Counter()  # failed polls by kind (`error_kind`)
        self.last_ok_at: float | None = None  # clock time of the last poll that read it all
        self.listed = asyncio.Event()  # set once a poll has read the whole listing
        self.budget = budget
        self.interval_now: float | None = None  # the wait after the last poll, in seconds
        self._budget_said = False  # "the budget is spent" is logged once per month

    @property
    def name(self) -> str:
        """The account this poller reads."""
        return self.provider.account

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            if cancel_requests():
                # A cancel some library swallowed (MqttLink re-raises the ones aiomqtt loses;
                # a publish function of someone else's may not): stop as asked. Left pending,
                # it would also make asyncio.timeout below take its own expiry for a cancel
                # that is already handled, and the loop would never end.
                raise asyncio.CancelledError
            self._pace.wake.clear()  # before the poll: a wake during it must not be lost
            try:
                delay = await self.poll_once()
            except Exception:
                # A bug, not a cloud error: say so loudly, but keep this account (and every
                # other one) running rather than taking the whole bridge down.
                _LOGGER.exception("account %s: unexpected error while polling", self.name)
                delay = self._timing.backoff_max_s
            await self._rest(delay)

    async def poll_once(self) -> float:
        """Poll the account once, hand the result to the hub, and return how long to wait."""
        budget = self.budget
        # A command in flight: its follow-up reads come first and may use the reserve.
        urgent = self._pace.commands_in_flight > 0
        if budget is None:
            delay = await self._poll()
        else:
            with priority() if urgent else contextlib.nullcontext():
                if not budget.admits(None):
                    delay = self._spent(budget)
                else:
                    self._budget_said = False
                    before = budget.usage()
                    with listing():
                        delay = await self._poll()
                    delay = max(delay, budget.min_interval(before, urgent=urgent))
        self.interval_now = delay
        return delay

    def _spent(self, budget: Budget) -> float:
        """Say (once a month) that routine polls wait for the next month; return the wait."""
        if not self._budget_said:
            _LOGGER.warning(
                "account %s: the month's API budget is spent (%s); polling resumes when the "
                "month does, commands still go out while the reserve lasts",
                self.name,
                budget.describe(),
            )
            self._budget_said = True
        return budget.until_month_end()

    async def _poll(self) -> float:
        provider, timing, name = self.provider, self._timing, self.name
        self.polls += 1
        seen: set[str] = set()
        before = self._hub.account(name).failures
        answered = was_stale = False
        pages = provider.pages()
        try:
            # Each page goes to the hub as it arrives: a change on page 1 of 20 is published
            # while the cloud still sends the other 19.
            async for page in pages:
                if not answered:
                    answered, was_stale = True, self._hub.read_ok(name)
                    # The link as the provider sees it now, so these cars carry it at once.
                    await self._note_link(announce=False)
                seen |= await self._hub.apply(name, page, force=was_stale)
        except ReauthRequired as exc:
            self.errors["auth"] += 1
            await self._hub.set_link(name, LinkState.RELINK_REQUIRED, str(exc))
            return timing.relink_retry_s
        except AuthError as exc:
            self.errors["auth"] += 1
            # Not the user's link but our own client credentials: the fix is in the config.
            problem = f"client credentials refused: {exc}"
            await self._hub.set_link(name, LinkState.RELINK_REQUIRED, problem, config_fix=True)
            return timing.relink_retry_s
        except BudgetSpent:
            # The budget ran out halfway (a meter refused a page): not the cloud's failure.
            assert self.budget is not None
            return self._spent(self.budget)
        except ProviderError as exc:
            # A listing that broke after its first page is a failed read like any other: the
            # count goes on from where it was, not from the reset of that first page.
            self.errors[error_kind(exc)] += 1
            return await self._failed(exc, before if answered else None)
        except StoreError as exc:
            # The provider could not use the state file (a token lock or read): not a bug.
            self._saver.trouble(f"account {name}'s tokens", exc)
            return timing.backoff_base_s
        finally:
            if isinstance(pages, AsyncGenerator):
                await pages.aclose()  # its connection is not left half-read
        if not answered:
            self._hub.read_ok(name)  # a list with no car at all
        if before:
            _LOGGER.info("account %s: %s answers again", name, provider.spec.title)
        await self._note_link(announce=True)  # what the whole listing says
        await self._hub.finish_listing(name, seen, provider.unreadable)
        self.last_ok_at = self._clock.time()
        self.listed.set()
        return self._interval()

    async def _note_link(self, *, announce: bool) -> None:
        problem = self.provider.link_problem
        link = LinkState.RELINK_REQUIRED if problem else LinkState.OK
        await self._hub.set_link(self.name, link, problem, announce=announce)

    async def _failed(self, exc: ProviderError, before: int | None) -> float:
        failures = await self._hub.read_failed(
            self.name, restore=before, error=str(exc), at=self._clock.time()
        )
        if failures == 1:
            # Once per change of state, not once per attempt: no error storms in the log.
            _LOGGER.warning("account %s: %s; backing off", self.name, exc)
        delay = backoff_delay(
            failures, base_s=self._timing.backoff_base_s, max_s=self._timing.backoff_max_s
        )
        retry_after = exc.retry_after if isinstance(exc, ProviderUnavailable) else None
        delay = max(delay, retry_after or 0.0)
        self._pace.not_before = asyncio.get_running_loop().time() + delay
        return delay

    def _interval(self) -> float:
        spec, timing = self.provider.spec, self._timing
        if self._pace.pushed:
            # The cloud pushes every change: a listing now and then only catches what a lost
            # delivery missed. The watchdog wakes this poller the moment pushes stop.
            return timing.safety_poll_s
        normal = timing.poll_interval_s or self._interval_s or spec.poll_interval_s
        active = timing.active_poll_interval_s or spec.active_poll_interval_s
        vehicles = self._hub.account(self.name).vehicles.values()
        busy = self._pace.commands_in_flight > 0 or any(
            v.state.charging or v.state.speed_kmh for v in vehicles
        )
        return min(normal, active) if busy else normal

    async def _rest(self, delay: float) -> None:
        """Wait `delay` s, or until woken or re-linked, but never past the end of a backoff."""
        loop, pace = asyncio.get_running_loop(), self._pace
        deadline = loop.time() + delay
        while True:
            step = deadline - loop.time()
            relinking = self._hub.account(self.name).relink_required
            if relinking:
                step = min(step, self._timing.relink_check_s)
            if step <= 0:
                return
            woken = False
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can turn a cancellation
            # that coincides with its timeout into a TimeoutError, and the loop would go on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(step):
                    await pace.wake.wait()
                woken = True
            if cancel_requests():
                raise asyncio.CancelledError
            if woken or (relinking and await self._relinked()):
                if pace.backoff_left() <= 0:
                    return
                # The cloud asked for a pause (Retry-After): an early wake only ends it.
                pace.wake.clear()
                deadline = min(deadline, pace.not_before)

    async def _relinked(self) -> bool:
        """Whether `car2mqtt link` saved new credentials for the account (never raises)."""
        try:
            found = await self.provider.reload_credentials()
        except Exception:
            # A damaged or locked state file must not stop this account's loop, nor the others.
            _LOGGER.exception("account %s: cannot look for new credentials", self.name)
            return False
        if found:
            _LOGGER.info("account %s: found new credentials from a re-link; polling now", self.name)
        return found


ERROR_KINDS = ("unavailable", "rate_limited", "rejected", "bad_response", "auth")


def error_kind(exc: Exception) -> str:
    """Return the kind a failed read counts under (one of `ERROR_KINDS`, else `other`)."""
    kinds: tuple[tuple[type[Exception], str], ...] = (
        (RateLimited, "rate_limited"),
        (ProviderUnavailable, "unavailable"),
        (ProviderRejected, "rejected"),
        (BadCloudResponse, "bad_response"),
        (AuthError, "auth"),
    )
    return next((kind for cls, kind in kinds if isinstance(exc, cls)), "other")
