"""One account's pace: when its cloud may be read next, and who asked for a read soon.

The poller and the command service share it: a command wakes the poller for its follow-up
read, and no read of either may come before the end of a backoff the cloud asked for.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass(slots=True, eq=False)
class Pace:
    """The shared timing of one account's reads."""

    wake: asyncio.Event = field(default_factory=asyncio.Event)
    commands_in_flight: int = 0
    # Event-loop time before which nothing may read from the cloud: the end of a backoff,
    # Retry-After included. A wake (after a command) cannot bring the next poll before it.
    not_before: float = 0.0
    # Webhooks deliver this account's changes: reads are only a safety net meanwhile.
    pushed: bool = False

    def backoff_left(self) -> float:
        """Seconds until the cloud may be read again (0 when not backing off)."""
        return max(0.0, self.not_before - asyncio.get_running_loop().time())
