"""One token owner per account: renews before expiry, one renewal at a time, persisted.

Reads and saves made from async code (renewals, `adopt`, `areload`) go through the
persistence's `run`, off the event loop (the store's writer thread). The two sync readers stay
sync for their callers: the constructor (a start-up read) and `reload`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

import httpx

from car2mqtt.auth.oauth2 import Token
from car2mqtt.clock import Clock
from car2mqtt.errors import StoreError

_LOGGER = logging.getLogger(__name__)

# Renew this long before expiry: long enough that no request carries a token that dies
# in flight, short enough to use most of its life (a typical cloud token lasts an hour).
RENEW_LEEWAY_S = 120.0

T = TypeVar("T")


class TokenPersistence(Protocol):
    """Where tokens survive restarts (the store)."""

    def load_token(self, account: str) -> dict[str, Any] | None:
        """Return the saved token of `account`, if any."""
        ...

    def save_token(self, account: str, token: Mapping[str, Any]) -> None:
        """Durably save `account`'s token before returning."""
        ...

    def token_lock(self, account: str) -> AbstractAsyncContextManager[None]:
        """Hold `account`'s token lock against other processes sharing the store."""
        ...

    async def run(self, fn: Callable[[], T]) -> T:
        """Run `fn` (calls of the two methods above) off the event loop; return its result.

        Once called, `fn` runs to its end even if the caller is cancelled (the store's
        writer); an in-memory persistence may simply call it.
        """
        ...


class TokenManager:
    """Owns one account's access token: the only code that asks for a new one."""

    def __init__(
        self,
        account: str,
        fetch: Callable[[Token | None], Awaitable[Token]],
        clock: Clock,
        persistence: TokenPersistence | None = None,
        leeway_s: float = RENEW_LEEWAY_S,
    ) -> None:
        self.account = account
        self._fetch = fetch
        self._clock = clock
        self._persistence = persistence
        self._leeway = leeway_s
        self._lock = asyncio.Lock()
        # What the file holds while a newer token could not be saved (a full disk): older than
        # ours, so never adopted as "saved by another process".
        self._outdated: Token | None = None
        self._token: Token | None = self._saved()
        self.renewals = 0
        self.refused = 0  # renewals forced by a 401 on a token we thought was valid

    @property
    def token(self) -> Token | None:
        """The current token, if any (never log it)."""
        return self._token

    def _saved(self) -> Token | None:
        """Read the saved token on this thread (at start, and for the sync `reload`)."""
        if self._persistence is None:
            return None
        try:
            saved = self._persistence.load_token(self.account)
        except StoreError as exc:
            self._unreadable(exc)
            return None
        return self._parsed(saved)

    async def _saved_off_loop(self) -> Token | None:
        """Read the saved token off the event loop (after any save handed over before)."""
        persistence = self._persistence
        if persistence is None:
            return None
        try:
            saved = await persistence.run(lambda: persistence.load_token(self.account))
        except StoreError as exc:
            self._unreadable(exc)
            return None
        return self._parsed(saved)

    def _unreadable(self, exc: StoreError) -> None:
        _LOGGER.warning("cannot read the saved token of account %s: %s", self.account, exc)

    def _parsed(self, saved: dict[str, Any] | None) -> Token | None:
        if not saved:
            return None
        try:
            token = Token.from_dict(saved)
        except (KeyError, TypeError, ValueError):
            _LOGGER.warning("ignoring an unreadable saved token for account %s", self.account)
            return None
        return None if token == self._outdated else token

    async def _persist(self, token: Token) -> None:
        """Save `token` before use; if the file cannot be written, say so and go on with it.

        The save runs off the loop. If the caller is cancelled while it waits, the save still
        runs to its end (`run` promises that), so a grant the cloud has already rotated reaches
        the file, and the next renewal adopts it from there.
        """
        persistence = self._persistence
        if persistence is None:
            return
        saved = token.as_dict()
        try:
            await persistence.run(lambda: persistence.save_token(self.account, saved))
        except StoreError as exc:
            if self._outdated is None:
                # Dropping the token would be worse: a rotated refresh token is spent already.
                _LOGGER.error(
                    "account %s: cannot save its new token (%s); using it from memory. If "
                    "car2mqtt stops before the file can be written, the account may need "
                    "re-linking",
                    self.account,
                    exc,
                )
                self._outdated = await self._saved_off_loop() or self._token
            return
        if self._outdated is not None:
            _LOGGER.info("account %s: its token is saved again", self.account)
            self._outdated = None

    def reload(self) -> bool:
        """Adopt a token that another process (`car2mqtt link`) saved; return whether it did.

        Reads on the calling thread; async code (`Provider.reload_credentials`) uses
        `areload`.
        """
        return self._adopt_saved(self._saved())

    async def areload(self) -> bool:
        """Like `reload`, reading the file off the event loop."""
        return self._adopt_saved(await self._saved_off_loop())

    def _adopt_saved(self, saved: Token | None) -> bool:
        if saved is None or saved == self._token:
            return False
        self._token = saved
        return True

    def _exclusive(self) -> AbstractAsyncContextManager[None]:
        """Return a lock over this account's renewals, across processes sharing the store."""
        if self._persistence is None:
            return contextlib.nullcontext()
        return self._persistence.token_lock(self.account)

    async def adopt(self, token: Token) -> None:
        """Make `token` the account's (a fresh grant from linking), saved before use."""
        async with self._lock, self._exclusive():
            await self._persist(token)
            self._token = token

    async def access_token(self) -> str:
        """Return a token that lives at least the leeway longer, renewing it if needed."""
        token = self._token
        if token is not None and not token.expires_within(self._leeway, self._clock.time()):
            return token.access_token
        async with self._lock:
            token = self._token  # another task may have renewed while we waited
            if token is None or token.expires_within(self._leeway, self._clock.time()):
                token = await self._renew(token)
            return token.access_token

    async def force_renew(self, rejected: str) -> str:
        """Renew because the cloud rejected `rejected`; concurrent callers share one renewal."""
        async with self._lock:
            token = self._token
            if token is None or token.access_token == rejected:
                self.refused += 1
                _LOGGER.debug(
                    "account %s: the cloud refused the access token (401); renewing", self.account
                )
                token = await self._renew(token)
            return token.access_token

    async def _renew(self, old: Token | None) -> Token:
        async with self._exclusive():
            # Another process (a re-link, or a renewal by `car2mqtt vehicles`) saved a newer
            # token: use it rather than the one we hold, which may be dead or rotated away.
            saved = await self._saved_off_loop()
            if saved is not None and saved != old:
                self._token = old = saved
                if not saved.expires_within(self._leeway, self._clock.time()):
                    return saved
            token = await self._fetch(old)
            # Saved before anyone uses it: a crash right after must not lose a rotated grant.
            await self._persist(token)
        self._token = token
        self.renewals += 1
        _LOGGER.debug(
            "account %s: new access token, expires at %.0f", self.account, token.expires_at
        )
        return token


class BearerAuth(httpx.Auth):
    """httpx auth that sends the account's token and, on a 401, renews once and retries once."""

    requires_response_body = False

    def __init__(self, tokens: TokenManager) -> None:
        self._tokens = tokens

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Authorise `request`, retrying exactly once with a fresh token after a 401."""
        token = await self._tokens.access_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            token = await self._tokens.force_renew(token)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request
