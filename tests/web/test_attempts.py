"""Link attempts (unit tests of one module, on an injected clock): single-use, 10 minutes."""

from __future__ import annotations

from car2mqtt.web.attempts import STATE_TTL_S, Attempt, Attempts


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_state_is_taken_once() -> None:
    attempts = Attempts(clock=Clock())
    state = attempts.new_state()
    attempts.open(state, "car", "http://127.0.0.1:8780/link/callback")
    first = attempts.take(state)
    assert isinstance(first, Attempt)
    assert first.account == "car"
    assert "unknown or expired" in str(attempts.take(state))


def test_a_state_expires_after_ten_minutes() -> None:
    clock = Clock()
    attempts = Attempts(clock=clock)
    kept, lapsed = attempts.new_state(), attempts.new_state()
    attempts.open(lapsed, "car", "r")
    clock.now += STATE_TTL_S - 1
    attempts.open(kept, "car", "r")
    clock.now += 2
    assert STATE_TTL_S == 600.0
    assert "unknown or expired" in str(attempts.take(lapsed))
    assert isinstance(attempts.take(kept), Attempt)


def test_a_state_of_another_account_or_none_is_refused() -> None:
    attempts = Attempts(clock=Clock())
    state = attempts.new_state()
    attempts.open(state, "home", "r")
    assert "not car" in str(attempts.take(state, account="car"))
    assert "carries no state" in str(attempts.take(None))
    assert attempts.latest("home") is not None
    assert isinstance(attempts.take(state, account="home"), Attempt)
    assert attempts.latest("home") is None
