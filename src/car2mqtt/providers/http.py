"""What every cloud client does with HTTP: send, translate failures to our errors, parse."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from car2mqtt import __version__
from car2mqtt.auth.oauth2 import retry_after
from car2mqtt.auth.tokens import BearerAuth, TokenManager
from car2mqtt.errors import AuthError, BadCloudResponse, ProviderUnavailable, RateLimited

M = TypeVar("M", bound=BaseModel)
_USER_AGENT = {"User-Agent": f"car2mqtt/{__version__}"}


def token_client(transport: httpx.AsyncBaseTransport | None, timeout_s: float) -> httpx.AsyncClient:
    """Return the client an account asks its token endpoint with."""
    return httpx.AsyncClient(transport=transport, timeout=timeout_s, headers=_USER_AGENT)


def api_client(
    api_url: str,
    tokens: TokenManager,
    transport: httpx.AsyncBaseTransport | None,
    timeout_s: float,
    meter: Callable[[httpx.Request], Awaitable[None]] | None = None,
    **headers: str,
) -> httpx.AsyncClient:
    """Return the client an account calls its cloud's API with, authorised by `tokens`.

    `meter` sees every request the client sends (a retry after a 401 included).
    """
    return httpx.AsyncClient(
        base_url=api_url.rstrip("/"),
        auth=BearerAuth(tokens),
        transport=transport,
        timeout=timeout_s,
        headers={**_USER_AGENT, "Accept": "application/json", **headers},
        event_hooks={"request": [meter]} if meter is not None else None,
    )


class TokenAccount:
    """What every provider holding an OAuth token and HTTP clients shares."""

    tokens: TokenManager
    _closers: Sequence[httpx.AsyncClient]

    def token_valid_until(self) -> float | None:
        """Return when the account's access token expires (clock time), None without one."""
        token = self.tokens.token
        return None if token is None else token.expires_at

    async def reload_credentials(self) -> bool:
        """Adopt a token another process (`car2mqtt link`) saved; return whether it did."""
        return await self.tokens.areload()

    async def aclose(self) -> None:
        """Close the HTTP clients."""
        for http in self._closers:
            await http.aclose()


async def send(
    http: httpx.AsyncClient, cloud: str, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    """Send a request; a transport failure becomes ProviderUnavailable."""
    try:
        return await http.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        msg = f"{cloud} unreachable ({type(exc).__name__}) on {method} {path}"
        raise ProviderUnavailable(msg) from None


def raise_for_transient(
    response: httpx.Response, cloud: str, path: str, detail: str, *, now: float
) -> None:
    """Raise for a 401 (after the auth flow's retry), 429 or 5xx; return for anything else.

    `now` is the injected clock's time, against which a Retry-After date is measured.
    """
    status = response.status_code
    if status == 401:
        msg = f"{cloud} rejected a fresh access token on {path}: {detail}"
        raise AuthError(msg)
    if status == 429:
        raise RateLimited(f"{cloud} rate limited {path}: {detail}", retry_after(response, now))
    if status >= 500:
        msg = f"{cloud} answered {status} on {path}: {detail}"
        raise ProviderUnavailable(msg, retry_after(response, now))


def parse(response: httpx.Response, model: type[M], cloud: str) -> M:
    """Parse a JSON body into `model`; an unreadable one becomes BadCloudResponse."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        msg = f"{cloud} sent an unreadable {model.__name__} ({where}: {first['msg']})"
        raise BadCloudResponse(msg) from None
