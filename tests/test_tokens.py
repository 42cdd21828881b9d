"""The token owner: renews before expiry, one renewal at a time, one retry on 401."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from car2mqtt.auth.oauth2 import Token
from car2mqtt.auth.tokens import BearerAuth, TokenManager, TokenPersistence
from car2mqtt.clock import SimClock
from car2mqtt.errors import ReauthRequired, StoreError
from car2mqtt.store import WRITER_THREAD, Store

T = TypeVar("T")


class MemoryStore:
    def __init__(self) -> None:
        self.saved: dict[str, dict[str, Any]] = {}

    def load_token(self, account: str) -> dict[str, Any] | None:
        return self.saved.get(account)

    def save_token(self, account: str, token: Any) -> None:
        self.saved[account] = dict(token)

    async def run(self, fn: Callable[[], T]) -> T:
        return fn()  # memory: nothing to take off the loop

    @contextlib.asynccontextmanager
    async def token_lock(self, account: str) -> AsyncIterator[None]:
        yield


def manager(
    clock: SimClock, store: TokenPersistence | None = None, ttl: float = 3599.0
) -> TokenManager:
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


# -- on a real store: off the event loop ---------------------------------------------------


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_tokens_saved_by_the_manager_are_on_disk_0600_written_off_the_loop(
    tmp_path: Path,
) -> None:
    clock = SimClock(0.0, 0.0)
    path = tmp_path / "state" / "car2mqtt.db"
    old = os.umask(0)
    try:
        with Store.open(path) as store:
            tokens = manager(clock, store)
            token = await tokens.access_token()
            await tokens.adopt(Token("from-code", 3599.0, "refresh-1"))
            # The saves ran on the store's writer thread, which exists now.
            assert any(t.name.startswith(WRITER_THREAD) for t in threading.enumerate())
    finally:
        os.umask(old)
    assert token == "token-1"
    assert private(path)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, f"{path.name}.lock"]
    assert private(path.parent / f"{path.name}.lock")
    with Store.open(path) as again:
        saved = again.load_token("home")
    assert saved is not None
    assert saved["access_token"] == "from-code"
    assert saved["refresh_token"] == "refresh-1"


async def test_a_renewal_whose_save_waits_on_the_file_does_not_stall_the_loop(
    tmp_path: Path,
) -> None:
    clock = SimClock(0.0, 0.0)
    path = tmp_path / "car2mqtt.db"
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    with Store.open(path) as store:
        tokens = TokenManager("home", _fetch_after(clock), clock, store)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process writing: our save must wait
        async with asyncio.TaskGroup() as tg:
            ticking = tg.create_task(ticker())
            renewing = tg.create_task(tokens.access_token())
            await asyncio.sleep(0.5)
            assert not renewing.done()
            assert tokens.token is None  # not used before it is saved
            assert ticks >= 20
            blocker.execute("ROLLBACK")
            blocker.close()
            assert await asyncio.wait_for(renewing, 10) == "fetched"
            ticking.cancel()
        saved = store.load_token("home")
    assert saved is not None
    assert saved["access_token"] == "fetched"


def _fetch_after(clock: SimClock) -> Callable[[Token | None], Awaitable[Token]]:
    async def fetch(_old: Token | None) -> Token:
        return Token("fetched", clock.time() + 3600, "refresh-fetched")

    return fetch


async def test_areload_adopts_a_token_saved_by_another_connection(tmp_path: Path) -> None:
    clock = SimClock(0.0, 0.0)
    path = tmp_path / "car2mqtt.db"
    with Store.open(path) as bridge_store, Store.open(path) as link_store:
        tokens = TokenManager("home", _fetch_after(clock), clock, bridge_store)
        assert await tokens.areload() is False
        link_store.save_token("home", Token("linked", clock.time() + 3599, "r2").as_dict())
        assert await tokens.areload() is True
        assert await tokens.areload() is False  # already ours
        assert await tokens.access_token() == "linked"
        assert tokens.renewals == 0


async def test_waiting_for_the_token_lock_never_blocks_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "car2mqtt.db"
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    with Store.open(path) as one, Store.open(path) as other:
        async with one.token_lock("home"), asyncio.TaskGroup() as tg:
            ticking = tg.create_task(ticker())
            with pytest.raises(StoreError, match=r"held the token lock .* for 1 s"):
                async with other.token_lock("home", timeout_s=0.6):
                    pass
            ticking.cancel()
    assert ticks >= 30  # ~60 ticks of 10 ms while it waited 0.6 s
