"""Clocks: the one seam through which every part of car2mqtt reads time.

Production code takes a `Clock`; tests and the simulator hand in a `SimClock`, so hours of
car life run in seconds and frozen time makes runs reproducible.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """A source of wall-clock time in UTC epoch seconds."""

    def time(self) -> float:
        """Return the current time in seconds since the epoch."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        """Return the system time."""
        return time.time()


class SimClock:
    """A simulated clock: runs `factor` simulated seconds per real second and can jump ahead.

    A factor of 0 freezes time, so only `advance` moves it: the deterministic mode tests use.
    """

    def __init__(self, start: float | None = None, factor: float = 1.0) -> None:
        if factor < 0:
            msg = f"time factor must be >= 0, got {factor}"
            raise ValueError(msg)
        self._base = time.time() if start is None else start
        self._real0 = time.monotonic()
        self._factor = factor

    @property
    def factor(self) -> float:
        """Simulated seconds per real second."""
        return self._factor

    def time(self) -> float:
        """Return the simulated time in epoch seconds."""
        return self._base + (time.monotonic() - self._real0) * self._factor

    def advance(self, seconds: float) -> float:
        """Jump ahead by `seconds` of simulated time and return the new time."""
        if seconds < 0:
            msg = f"cannot move time backwards ({seconds} s)"
            raise ValueError(msg)
        self._base += seconds
        return self.time()

    def set_factor(self, factor: float) -> None:
        """Change the speed of time from now on, without a jump."""
        if factor < 0:
            msg = f"time factor must be >= 0, got {factor}"
            raise ValueError(msg)
        now = self.time()
        self._base, self._real0, self._factor = now, time.monotonic(), factor

    def real_seconds_until(self, when: float) -> float:
        """Return how many real seconds pass before simulated time reaches `when`."""
        delta = when - self.time()
        if delta <= 0:
            return 0.0
        return float("inf") if self._factor == 0 else delta / self._factor


def isoformat(epoch: float) -> str:
    """Format epoch seconds as an RFC 3339 UTC timestamp with milliseconds and a Z."""
    stamp = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")
