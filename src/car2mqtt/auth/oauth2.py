"""OAuth2 token requests: Authlib's protocol layer over our own (injected) httpx client.

We use Authlib for what it is good at, the OAuth2 messages (grant parameters, client
authentication, redirect parsing), and keep transport and time ours: the httpx client is
injected, and expiry is computed on the injected clock so simulated hours behave like hours.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749 import parameters

from car2mqtt.clock import Clock
from car2mqtt.errors import AuthError, ProviderUnavailable, RateLimited, ReauthRequired

# Errors that mean the grant itself is dead (revoked refresh token, wrong password): only the
# user can fix them. invalid_client is the operator's configuration instead.
RELINK_ERRORS = frozenset({"invalid_grant", "unauthorized_client", "access_denied"})


@dataclass(frozen=True, slots=True)
class TokenEndpoint:
    """Where and how to ask for tokens."""

    url: str
    client_id: str
    client_secret: str
    auth_method: str = "client_secret_basic"
    # Clouds word a dead grant differently (one answers a used refresh token with
    # invalid_request), so which errors mean "only the user can fix this" is the cloud's data.
    relink_errors: frozenset[str] = RELINK_ERRORS


@dataclass(frozen=True, slots=True)
class Token:
    """An access token with its expiry on our clock."""

    access_token: str
    expires_at: float
    refresh_token: str | None = None
    scope: str | None = None

    def expires_within(self, seconds: float, now: float) -> bool:
        """Whether the token expires less than `seconds` from `now`."""
        return self.expires_at - now < seconds

    def as_dict(self) -> dict[str, Any]:
        """Serialise for the store."""
        return {
            "access_token": self.access_token,
            "expires_at": self.expires_at,
            "refresh_token": self.refresh_token,
            "scope": self.scope,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Token:
        """Rebuild a token saved with `as_dict`."""
        return cls(
            access_token=str(data["access_token"]),
            expires_at=float(data["expires_at"]),
            refresh_token=data.get("refresh_token"),
            scope=data.get("scope"),
        )

    def __repr__(self) -> str:
        refresh = "***" if self.refresh_token else None
        return f"Token(access_token='***', expires_at={self.expires_at!r}, refresh_token={refresh})"


async def request_token(
    http: httpx.AsyncClient,
    endpoint: TokenEndpoint,
    clock: Clock,
    grant_type: str,
    **params: str,
) -> Token:
    """Ask the token endpoint for a token with `grant_type`; translate every failure."""
    body = parameters.prepare_token_request(grant_type, **params)
    auth = ClientAuth(endpoint.client_id, endpoint.client_secret, endpoint.auth_method)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    url, headers, body = auth.prepare("POST", endpoint.url, headers, body)
    started = clock.time()
    try:
        response = await http.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        msg = f"token endpoint unreachable: {type(exc).__name__}"
        raise ProviderUnavailable(msg) from None
    if response.status_code == 429:
        raise RateLimited("token endpoint rate limited", retry_after(response, clock.time()))
    if response.status_code >= 500:
        msg = f"token endpoint answered {response.status_code}"
        raise ProviderUnavailable(msg, retry_after(response, clock.time()))
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        msg = f"token endpoint answered {response.status_code} with a body that is not JSON"
        raise ProviderUnavailable(msg) from None
    if not isinstance(data, dict):
        msg = "token endpoint answered JSON that is not an object"
        raise ProviderUnavailable(msg)
    if "error" in data or response.status_code >= 400:
        error = str(data.get("error", f"http_{response.status_code}"))
        detail = str(data.get("error_description", "")).strip()
        text = f"{error}: {detail}" if detail else error
        if error in endpoint.relink_errors:
            raise ReauthRequired(text)
        raise AuthError(text)
    try:
        return Token(
            access_token=str(data["access_token"]),
            expires_at=started + float(data.get("expires_in", 3600)),
            refresh_token=data.get("refresh_token"),
            scope=data.get("scope"),
        )
    except (KeyError, TypeError, ValueError):
        msg = "token endpoint answered without a usable access_token/expires_in"
        raise ProviderUnavailable(msg) from None


def retry_after(response: httpx.Response, now: float | None = None) -> float | None:
    """Return the response's Retry-After in seconds (given as seconds or as an HTTP-date)."""
    value = (response.headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        until = _http_date(value)
        if until is None:
            return None
        if now is None:
            # The server's own Date shares its clock with the Retry-After date (RFC 9110
            # §10.2.3), so a skewed local clock does not stretch or shrink the wait.
            now = _http_date(response.headers.get("date", "")) or time.time()
        return max(0.0, until - now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _http_date(value: str) -> float | None:
    """Parse an HTTP-date into epoch seconds; None if it is not one."""
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # HTTP dates are always GMT
    return parsed.timestamp()
