"""The token owner: renews before expiry, one renewal at a time, one retry on 401."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from car2mqtt.auth.oauth2 import Token
from car2mqtt.auth.tokens import BearerAuth, TokenManager
from car2mqtt.clock import SimClock
from car2mqtt.errors import ReauthRequired, StoreError
from car2mqtt.store import Store


class MemoryStore:
    def __init__(self) -> None:
        self.saved: dict[str, dict[str, Any]] = {}

    def load_token(self, account: str) -> dict[str, Any] | None:
        return self.saved.get(account)

    def save_token(self, account: str, token: Any) -> None:
        self.saved[account] = dict(token)

    @contextlib.asynccontextmanager
    async def token_lock(self, account: str) -> AsyncIterator[None]:
        yield


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
    await tokens.adopt(Token("from-code", 3599.0, "refresh-1"))
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


async def test_two_processes_on_one_state_file_never_refresh_at_once(tmp_path: Path) -> None:
    # Two Store connections stand for the bridge and `car2mqtt vehicles` run beside it. The
    # cloud's refresh tokens are single-use: a second refresh with the same one would fail.
    clock = SimClock(0.0, 0.0)
    used: set[str] = set()
    fetches = 0

    async def rotate(old: Token | None) -> Token:
        nonlocal fetches
        assert old is not None
        assert old.refresh_token is not None
        if old.refresh_token in used:
            raise ReauthRequired("invalid_request: refresh token already used")
        used.add(old.refresh_token)
        fetches += 1
        await asyncio.sleep(0.05)  # the answer takes a while: the other process wants in
        return Token(f"access-{fetches}", clock.time() + 3600, f"refresh-{fetches}")

    path = tmp_path / "car2mqtt.db"
    with Store.open(path) as bridge_store, Store.open(path) as cli_store:
        bridge_store.save_token("home", Token("access-0", 60.0, "refresh-0").as_dict())
        bridge = TokenManager("home", rotate, clock, bridge_store)
        cli = TokenManager("home", rotate, clock, cli_store)
        got = await asyncio.gather(bridge.access_token(), cli.access_token())
        saved = cli_store.load_token("home")
    assert fetches == 1, "the second one adopted the first one's new pair"
    assert list(got) == ["access-1", "access-1"]
    assert saved is not None
    assert saved["refresh_token"] == "refresh-1"


async def test_the_token_lock_is_exclusive_across_connections(tmp_path: Path) -> None:
    path = tmp_path / "car2mqtt.db"
    with Store.open(path) as one, Store.open(path) as other:
        async with one.token_lock("home"):
            with pytest.raises(StoreError, match="held the token lock"):
                async with other.token_lock("home", timeout_s=0.2):
                    pass
        async with other.token_lock("home", timeout_s=0.2):
            pass
    assert (path.parent / "car2mqtt.db.lock").stat().st_mode & 0o077 == 0


class FullDisk(MemoryStore):
    """A store whose writes fail while `full` is set, as on a full disk."""

    full = False

    def save_token(self, account: str, token: Any) -> None:
        if self.full:
            msg = "cannot write state file x: database or disk is full"
            raise StoreError(msg)
        super().save_token(account, token)


async def test_a_token_that_cannot_be_saved_is_used_from_memory_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock, store = SimClock(0.0, 0.0), FullDisk()
    tokens = manager(clock, store)
    assert await tokens.access_token() == "token-1"
    store.full = True
    clock.advance(3600)
    # Dropping it would lose a rotated refresh token, which the cloud has spent already.
    assert await tokens.access_token() == "token-2"
    clock.advance(3600)
    assert await tokens.access_token() == "token-3"  # not the outdated token-1 from the file
    said = [r for r in caplog.records if "cannot save its new token" in r.getMessage()]
    assert len(said) == 1
    assert "database or disk is full" in said[0].getMessage()
    store.full = False
    clock.advance(3600)
    assert await tokens.access_token() == "token-4"
    assert store.saved["home"]["access_token"] == "token-4"
    assert any("saved again" in r.getMessage() for r in caplog.records)
