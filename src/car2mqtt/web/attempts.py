"""Link attempts started from the web UI: each has a random `state`, used once, for 10 minutes."""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

STATE_TTL_S = 600.0
MAX_OPEN = 100  # attempts kept at once; the oldest go first


@dataclass(frozen=True, slots=True)
class Attempt:
    """One link attempt: which account, and where the cloud sends the browser back."""

    state: str
    account: str
    redirect_uri: str
    started: float


@dataclass
class Attempts:
    """The open link attempts, by state."""

    clock: Callable[[], float] = time.monotonic
    _open: dict[str, Attempt] = field(default_factory=dict)

    def new_state(self) -> str:
        """Return a fresh random state."""
        return secrets.token_urlsafe(32)

    def open(self, state: str, account: str, redirect_uri: str) -> Attempt:
        """Keep an attempt under `state` until it is taken or expires."""
        self._expire()
        while len(self._open) >= MAX_OPEN:
            self._open.pop(next(iter(self._open)))
        attempt = Attempt(state, account, redirect_uri, self.clock())
        self._open[state] = attempt
        return attempt

    def take(self, state: str | None, account: str | None = None) -> Attempt | str:
        """Return the attempt of `state` and close it, or say why there is none.

        `account`: the attempt must be of this account (a paste on an account's page).
        """
        self._expire()
        if not state:
            return "the address carries no state, so it cannot be from a link started here"
        # Constant time over every open state: which states exist must not leak by timing.
        found = None
        for known, attempt in self._open.items():
            if hmac.compare_digest(known.encode(), state.encode()):
                found = attempt
        if found is None:
            return (
                "this link attempt is unknown or expired (attempts last 10 minutes and work "
                "once); start linking again"
            )
        if account is not None and found.account != account:
            return f"this address is from linking account {found.account}, not {account}"
        del self._open[found.state]
        return found

    def latest(self, account: str) -> Attempt | None:
        """Return the newest open attempt of `account` (for a pasted bare code)."""
        self._expire()
        mine = [a for a in self._open.values() if a.account == account]
        return mine[-1] if mine else None

    def _expire(self) -> None:
        now = self.clock()
        self._open = {s: a for s, a in self._open.items() if now - a.started < STATE_TTL_S}
