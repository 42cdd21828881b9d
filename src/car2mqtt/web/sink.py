"""What the web UI learns from the hub: a nudge for every open page, and each car's commands."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from car2mqtt.bridge.events import CommandProgress, Event, ListingDone, VehicleRemoved
from car2mqtt.bridge.hub import VehicleHub
from car2mqtt.models import CommandResult

RECENT_STEPS = 12  # command steps shown per car
CALL_SAMPLE_S = 60.0


@dataclass(slots=True)
class CallMeter:
    """API calls per account over the last hour and day, from samples of the running total."""

    clock: Callable[[], float]
    _samples: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)

    def note(self, account: str, total: int) -> None:
        """Sample `account`'s running total of calls (at most once a minute is kept)."""
        now = self.clock()
        samples = self._samples.setdefault(account, deque())
        if not samples or now - samples[-1][0] >= CALL_SAMPLE_S:
            samples.append((now, total))
        while samples and now - samples[0][0] > 86400 + CALL_SAMPLE_S:
            samples.popleft()

    def since(self, account: str, total: int, window_s: float) -> tuple[int, bool]:
        """Return the calls in the last `window_s`, and whether the window is complete."""
        self.note(account, total)
        now, samples = self.clock(), self._samples[account]
        start = next((count for at, count in samples if now - at <= window_s), total)
        complete = now - samples[0][0] >= window_s
        # Younger than the window: the count since the bridge started (the total is per run).
        return (total - start if complete else total), complete


class WebSink:
    """Keeps each car's recent commands and wakes the open pages' event streams."""

    def __init__(self, hub: VehicleHub) -> None:
        self._hub = hub
        self._listeners: set[asyncio.Event] = set()
        self._commands: dict[str, deque[CommandResult]] = {}
        self._listings: dict[str, set[asyncio.Event]] = {}  # account -> who waits for its end
        self.closing = asyncio.Event()

    async def on_event(self, event: Event) -> None:
        """Note commands and listings; tell every open page that something changed."""
        match event:
            case CommandProgress(vehicle=vehicle, result=result):
                # Every step, not one line per command: results carry no command id, and
                # steps of one command interleave with rejections of others.
                recent = self._commands.setdefault(vehicle.key, deque(maxlen=RECENT_STEPS))
                recent.append(result)
            case VehicleRemoved(vehicle=vehicle):
                self._commands.pop(vehicle.key, None)
            case ListingDone(account=account):
                for waiting in self._listings.pop(account.name, set()):
                    waiting.set()
        for listener in self._listeners:
            listener.set()

    def commands(self, key: str) -> list[CommandResult]:
        """Return the steps of car `key`'s recent commands, newest first."""
        recent = list(self._commands.get(key, ()))
        vehicle = self._hub.vehicle(key)
        if not recent and vehicle is not None and vehicle.last_command is not None:
            recent = [vehicle.last_command]  # from an earlier run
        return recent[::-1]

    async def next_listing(self, account: str, timeout_s: float) -> bool:
        """Wait for the end of `account`'s next listing; return whether it came in time."""
        done = asyncio.Event()
        self._listings.setdefault(account, set()).add(done)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await done.wait()
        finally:
            self._listings.get(account, set()).discard(done)
        return done.is_set()

    @contextlib.asynccontextmanager
    async def listening(self) -> AsyncIterator[asyncio.Event]:
        """Yield an event set whenever the hub changes, for one open page, while the block runs."""
        changed = asyncio.Event()
        self._listeners.add(changed)
        try:
            yield changed
        finally:
            self._listeners.discard(changed)

    def close(self) -> None:
        """End every event stream (the server is stopping)."""
        self.closing.set()
        for listener in self._listeners:
            listener.set()
