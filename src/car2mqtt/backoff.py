"""Exponential backoff with jitter: the one formula every retry loop of car2mqtt uses."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, *, base_s: float, max_s: float, jitter: float = 0.2) -> float:
    """Return the wait before retry number `attempt` (1 = the first): base·2^(n-1), capped, ±jitter.

    The jitter keeps many clients that failed together (a broker restart, a cloud outage) from
    retrying together.
    """
    delay = min(max_s, base_s * 2.0 ** max(0, attempt - 1))
    return delay * random.uniform(1.0 - jitter, 1.0 + jitter)
