"""The command service: every command to a car, from any sink, goes through here.

It checks what the cloud can do, keeps refreshes to one a minute per car, sends one command
per car at a time in the order they came, follows each to its end (pending, then confirmed,
failed or timed out), and reports every step through the hub, so every sink sees it. A newer
command on the same control supersedes the one in flight; a restart follows what an earlier
run left open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from car2mqtt.bridge.budget import priority
from car2mqtt.bridge.hub import VehicleHub, control_of
from car2mqtt.bridge.known import KnownVehicle
from car2mqtt.bridge.pace import Pace
from car2mqtt.bridge.tasks import Spawner
from car2mqtt.bridge.timing import Timing
from car2mqtt.clock import Clock
from car2mqtt.errors import AuthError, CommandRejected, ProviderError, ProviderRejected
from car2mqtt.ha import discovery
from car2mqtt.models import CommandResult, CommandStatus
from car2mqtt.providers.base import Command, CommandValue, Provider, shown_value

_LOGGER = logging.getLogger(__name__)
EARLY_KEPT = 200


@dataclass(slots=True)
class _Followed:
    """A command whose action is followed, until it settles or a newer one replaces it."""

    result: CommandResult
    superseded_by: str | None = None
    status_failing: bool = False  # the cloud's answer on this command's status is missing
    nudge: asyncio.Event = field(default_factory=asyncio.Event)  # a push moved `result`

    def superseded(self) -> bool:
        """Whether a newer command on the same control took over."""
        return self.superseded_by is not None


@dataclass(slots=True, eq=False)
class _Car:
    """The command side of one car, made at its first command."""

    # Commands to one car go to the cloud one at a time, in the order they came: sent
    # concurrently, an older ON could reach the cloud after a newer OFF and win.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    following: dict[str, _Followed] = field(default_factory=dict)  # control -> its command
    last_refresh: float | None = None  # loop time of the last refresh sent to the cloud


class CommandService:
    """Sends commands through the providers and follows them to their end."""

    def __init__(
        self,
        hub: VehicleHub,
        providers: Mapping[str, Provider],
        *,
        paces: Mapping[str, Pace],
        spawner: Spawner,
        clock: Clock,
        timing: Timing,
    ) -> None:
        self._hub = hub
        self._providers = providers
        self._paces = paces
        self._spawner = spawner
        self._clock = clock
        self._timing = timing
        self._cars: dict[str, _Car] = {}
        # Pushed steps of actions no command knows yet: the cloud can push before the answer
        # to the request that started the action arrives.
        self._early: OrderedDict[tuple[str, str], tuple[CommandStatus, str | None]] = OrderedDict()

    def resume(self) -> None:
        """Finish what an earlier run left open: follow pending actions, fail unsent ones."""
        for vehicle, result in self._hub.take_unsettled():
            if result.action_id is None:
                # Sent to the cloud, but the bridge stopped before it answered: whether it
                # arrived is unknown, and there is nothing to follow.
                failed = replace(
                    result,
                    status=CommandStatus.FAILED,
                    at=self._now(),
                    reason="the bridge stopped before the cloud answered",
                )
                self._spawner.spawn(self._hub.record_command(vehicle, failed))
            else:
                self._spawner.spawn(_first(self._resume(vehicle, result)))

    def submit(self, vehicle: KnownVehicle, command: Command, value: CommandValue = None) -> None:
        """Check `command` and start it in the background; raise CommandRejected if it can't be."""
        provider = self._providers[vehicle.ref.account]
        if command not in provider.spec.commands:
            msg = f"{provider.spec.title} cannot {command.value.replace('_', ' ')}"
            raise CommandRejected(msg)
        # Checked here as well as where a command arrives: every sink gets the same checks.
        discovery.check_capable(command, vehicle.state.capabilities)
        if command is Command.REFRESH:
            self._check_refresh_allowed(self._car(vehicle))
        work = _first(self._run(vehicle, command, value))
        self._spawner.spawn(work, name=f"command-{vehicle.key}")

    async def rejected(
        self, vehicle: KnownVehicle, asked: str, reason: str, value: str | None = None
    ) -> None:
        """Report a command that never reached the cloud."""
        # Not saved: the saved command of this control (perhaps one still pending) stays what
        # a restart follows.
        status = CommandStatus.REJECTED
        result = CommandResult(asked, status, self._now(), reason=reason, value=value)
        await self._hub.record_command(vehicle, result, save=False)

    # ---- inside ----------------------------------------------------------------------------

    def _car(self, vehicle: KnownVehicle) -> _Car:
        return self._cars.setdefault(vehicle.key, _Car())

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.time(), UTC)

    def _check_refresh_allowed(self, car: _Car) -> None:
        """Allow one refresh per car per minute; raise CommandRejected for the rest."""
        now, last = asyncio.get_running_loop().time(), car.last_refresh
        wait = self._timing.refresh_min_interval_s
        if last is not None and now - last < wait:
            msg = (
                f"refresh dropped: one a minute per car (each wakes the car through its "
                f"cloud); the next is possible in {wait - (now - last):.0f} s"
            )
            raise CommandRejected(msg)
        car.last_refresh = now

    async def _run(self, vehicle: KnownVehicle, command: Command, value: CommandValue) -> None:
        provider, pace, car = (
            self._providers[vehicle.ref.account],
            self._pace(vehicle),
            self._car(vehicle),
        )
        shown = None if value is None else shown_value(value)
        _LOGGER.info("%s: %s%s requested", vehicle.key, command.value, f" {shown}" if shown else "")
        control = control_of(command.value)
        sent = CommandResult(command.value, CommandStatus.SENT, self._now(), value=shown)
        followed = _Followed(sent)
        with _in_flight(pace, car, control, followed):
            async with car.lock:
                await self._supersede(vehicle, car, control, command.value)
                car.following[control] = followed
                await self._hub.record_command(vehicle, followed.result)
                try:
                    result = await provider.send_command(vehicle.ref, command, value)
                except (ProviderError, AuthError) as exc:
                    status = (
                        CommandStatus.REJECTED
                        if isinstance(exc, ProviderRejected)
                        else CommandStatus.FAILED
                    )
                    result = CommandResult(
                        command.value, status, self._now(), reason=str(exc), value=shown
                    )
                followed.result = result
                await self._hub.record_command(vehicle, result)
                early = self._early.pop((vehicle.ref.account, result.action_id or ""), None)
                if early is not None and not result.status.final:
                    await self.pushed(vehicle.ref.account, result.action_id or "", *early)
            settled_at_once = followed.result.status.final
            await self._track(vehicle, followed)
        if settled_at_once:
            # The cloud refreshes its cache a little after a hint: poll once that is done.
            await asyncio.sleep(self._timing.after_command_poll_s)
        pace.wake.set()

    async def _resume(self, vehicle: KnownVehicle, result: CommandResult) -> None:
        """Follow a command an earlier run sent, to its end."""
        _LOGGER.info("%s: following %s from before the restart", vehicle.key, result)
        control, pace, car = control_of(result.command), self._pace(vehicle), self._car(vehicle)
        followed = _Followed(result)
        with _in_flight(pace, car, control, followed):
            async with car.lock:
                if control in car.following:
                    return  # a newer command came in first
                car.following[control] = followed
            # Its time limit runs from when it was sent, not from this restart.
            await self._track(vehicle, followed, started=result.at.timestamp())
        pace.wake.set()

    async def pushed(
        self, account: str, action_id: str, status: CommandStatus, reason: str | None
    ) -> bool:
        """Advance the command behind `action_id` as the cloud pushed it; False if none."""
        for vehicle in self._hub.account(account).vehicles.values():
            car = self._cars.get(vehicle.key)
            for followed in car.following.values() if car else ():
                result = followed.result
                if result.action_id != action_id or result.status.final:
                    continue
                if (status, reason) != (result.status, result.reason):
                    followed.result = replace(result, status=status, at=self._now(), reason=reason)
                    await self._hub.record_command(vehicle, followed.result)
                followed.nudge.set()
                return True
        self._early[(account, action_id)] = (status, reason)
        while len(self._early) > EARLY_KEPT:
            self._early.popitem(last=False)
        return False

    def _pace(self, vehicle: KnownVehicle) -> Pace:
        return self._paces[vehicle.ref.account]

    async def _supersede(self, vehicle: KnownVehicle, car: _Car, control: str, newer: str) -> None:
        """Stop following the older command on `control`, and say it was superseded."""
        older = car.following.pop(control, None)
        if older is None or older.result.status.final:
            return
        older.superseded_by = newer
        # The cloud itself cancels a pending action when a conflicting one arrives.
        ended = replace(
            older.result,
            status=CommandStatus.CANCELLED,
            at=self._now(),
            reason=f"superseded by {newer}",
        )
        _LOGGER.info("%s: %s superseded by %s", vehicle.key, ended.command, newer)
        await self._hub.record_command(vehicle, ended)

    async def _track(
        self, vehicle: KnownVehicle, followed: _Followed, *, started: float | None = None
    ) -> None:
        timing, pace = self._timing, self._pace(vehicle)
        provider = self._providers[vehicle.ref.account]
        started = self._clock.time() if started is None else started
        polled_early = False
        result = followed.result
        while not result.status.final:
            # The action's status is a read like any other: it waits out the account's backoff.
            # While the cloud pushes, its steps arrive by themselves: a read is a safety net.
            every = timing.command_poll_s
            if pace.pushed:
                every *= timing.pushed_command_poll_factor
            await _sleep_unless(followed.nudge, max(every, pace.backoff_left()))
            if followed.superseded():
                return  # a newer command on the same control took over
            if followed.result is not result:
                result = followed.result  # pushed: no need to ask
                continue
            if pace.backoff_left() > 0:
                continue  # a poll failed meanwhile: its backoff holds for this read too
            if not polled_early and self._clock.time() - started >= timing.after_command_poll_s:
                polled_early = True
                pace.wake.set()  # let the cloud's refreshed data show up soon
            if not self._hub.current(vehicle):
                return  # the car is gone: nothing left to report on
            try:
                latest = await provider.command_status(vehicle.ref, result)
                if followed.result is not result:
                    result = followed.result  # pushed while we asked: newer than this read
                    continue
            except (ProviderError, AuthError) as exc:
                if not followed.status_failing:
                    # Once per change of state: it is asked again every command_poll_s.
                    _LOGGER.warning(
                        "%s: cannot read what became of %s (%s); asking again",
                        vehicle.key,
                        result.command,
                        exc,
                    )
                followed.status_failing = True
                latest = result
            else:
                if followed.status_failing:
                    _LOGGER.info(
                        "%s: the status of %s can be read again", vehicle.key, result.command
                    )
                followed.status_failing = False
            if followed.superseded():
                return
            if self._clock.time() - started > timing.command_timeout_s and not latest.status.final:
                latest = CommandResult(
                    result.command, CommandStatus.FAILED, self._now(), result.action_id, "timed out"
                )
            followed.result = latest
            if latest.status != result.status or latest.reason != result.reason:
                await self._hub.record_command(vehicle, latest)
            result = latest
        _LOGGER.info(
            "%s: %s %s%s",
            vehicle.key,
            result.command,
            result.status.value,
            f" ({result.reason})" if result.reason else "",
        )


async def _sleep_unless(nudge: asyncio.Event, delay: float) -> None:
    """Wait `delay` s, or less if `nudge` is set meanwhile (then clear it)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await nudge.wait()
    nudge.clear()


@contextlib.contextmanager
def _in_flight(pace: Pace, car: _Car, control: str, followed: _Followed) -> Iterator[None]:
    """Count a command as in flight (faster polls) and stop following it when it ends."""
    pace.commands_in_flight += 1
    try:
        yield
    finally:
        pace.commands_in_flight -= 1
        if car.following.get(control) is followed:
            del car.following[control]


async def _first(work: Awaitable[None]) -> None:
    """Run a command's work ahead of routine reads: its calls may use the budget's reserve."""
    with priority():
        await work
