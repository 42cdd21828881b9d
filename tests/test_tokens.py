"""The token owner: renews before expiry, one renewal at a time, one retry on 401."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from car2mqtt.auth.oauth2 import Token
from car2mqtt.auth.tokens import BearerAuth, TokenManager
from car2mqtt.clock import SimClock


class MemoryStore:
    def __init__(self) -> None:
        self.saved: dict[str, dict[str, Any]] = {}

    def load_token(self, account: str) -> dict[str, Any] | None:
        return self.saved.get(account)

    def save_token(self, account: str, token: Any) -> None:
        self.saved[account] = dict(token)


def manager(clock: SimClock, store: MemoryStore | None = None, ttl: float = 3599.0) -> TokenManager:
    calls = {"n": 0}

    async def fetch(_old: Token | None) -> Token:
        calls["n"] += 1
        await asyncio.sleep(0.01)  # a slow token endpoint invites concurrent callers
        return Token(f"token-{calls['n']}", clock.time() + ttl)

    return TokenManager("home", fetch, clock, store)


async def test_one_renewal_in_flight_for_many_callers() -> None:
    tokens = manager(SimClock(0.0, 0.0))
    got = await asyncio.gather(*(tokens.access_token() for _ in range(20)))
    assert set(got) == {"token-1"}
    assert tokens.renewals == 1


async def test_renews_two_minutes_before_expiry() -> None:
    clock = SimClock(0.0, 0.0)
    tokens = manager(clock)
    assert await tokens.access_token() == "token-1"
    clock.advance(3599 - 121)
    assert await tokens.access_token() == "token-1"
    clock.advance(2)  # now less than the 120 s leeway is left
    assert await tokens.access_token() == "token-2"


async def test_saved_before_use_and_reused_after_restart() -> None:
    clock, store = SimClock(0.0, 0.0), MemoryStore()
    first = manager(clock, store)
    token = await first.access_token()
    assert store.saved["home"]["access_token"] == token
    again = manager(clock, store)
    assert await again.access_token() == token
    assert again.renewals == 0


async def test_force_renew_happens_once_for_the_same_rejected_token() -> None:
    tokens = manager(SimClock(0.0, 0.0))
    old = await tokens.access_token()
    new = await asyncio.gather(*(tokens.force_renew(old) for _ in range(5)))
    assert set(new) == {"token-2"}
    assert tokens.renewals == 2


async def test_bearer_auth_retries_a_401_exactly_once() -> None:
    tokens = manager(SimClock(0.0, 0.0))
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(401 if request.headers["Authorization"] == "Bearer token-1" else 200)

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler), auth=BearerAuth(tokens)
    ) as http:
        assert (await http.get("https://cloud.example/x")).status_code == 200
    assert seen == ["Bearer token-1", "Bearer token-2"]

    def always_401(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(401)

    seen.clear()
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(always_401), auth=BearerAuth(tokens)
    ) as http:
        assert (await http.get("https://cloud.example/x")).status_code == 401
    assert len(seen) == 2, "one retry, never a loop"


def test_token_repr_hides_secrets() -> None:
    token = Token("very-secret-access", 10.0, refresh_token="very-secret-refresh")
    assert "very-secret" not in repr(token)


async def test_a_token_saved_by_another_process_is_picked_up_without_restart() -> None:
    clock, store = SimClock(0.0, 0.0), MemoryStore()
    bridge = manager(clock, store)
    assert await bridge.access_token() == "token-1"
    assert bridge.reload() is False  # nothing new
    # `car2mqtt link` in another process saves a fresh grant.
    store.save_token("home", Token("linked", clock.time() + 3599, "refresh-2").as_dict())
    assert bridge.reload() is True
    assert await bridge.access_token() == "linked"
    assert bridge.renewals == 1  # only the first token was fetched


async def test_renewal_prefers_a_fresh_saved_grant_over_the_dead_one() -> None:
    clock, store = SimClock(0.0, 0.0), MemoryStore()
    bridge = manager(clock, store)
    rejected = await bridge.access_token()
    store.save_token("home", Token("linked", clock.time() + 3599, "refresh-2").as_dict())
    # The cloud refused our token; the one just saved by a re-link is used, not fetched anew.
    assert await bridge.force_renew(rejected) == "linked"
    assert bridge.renewals == 1


async def test_adopt_saves_before_use() -> None:
    clock, store = SimClock(0.0, 0.0), MemoryStore()
    tokens = manager(clock, store)
    tokens.adopt(Token("from-code", 3599.0, "refresh-1"))
    assert store.saved["home"]["refresh_token"] == "refresh-1"
    assert await tokens.access_token() == "from-code"


async def test_a_failed_renewal_keeps_the_old_tokens() -> None:
    clock, store = SimClock(0.0, 0.0), MemoryStore()
    old = Token("old", 100.0, "refresh-old")
    store.save_token("home", old.as_dict())

    async def fetch(_old: Token | None) -> Token:
        raise OSError("cloud down")

    tokens = TokenManager("home", fetch, clock, store)
    with pytest.raises(OSError, match="cloud down"):
        await tokens.access_token()
    assert tokens.token == old
    assert store.saved["home"] == old.as_dict()
