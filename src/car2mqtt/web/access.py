"""Who may use the web UI, CSRF tokens, login sessions and the path prefix of each request.

On loopback the UI needs no login. Elsewhere it needs a password, or the request must come from
a trusted proxy that logs users in itself (Home Assistant's ingress). Every state-changing
request carries a CSRF token bound to the login session, checked in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from car2mqtt.config import WebSettings, is_loopback

SESSION_COOKIE = "car2mqtt_session"
SESSION_TTL_S = 30 * 86400.0
INGRESS_HEADER = "x-ingress-path"
# What an ingress path may look like: HA's is /api/hassio_ingress/<token>.
_PREFIX_RE = re.compile(r"(/[A-Za-z0-9._~-]+)*")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Verdict(Enum):
    """What a request may do."""

    ALLOWED = "allowed"
    LOGIN = "login"  # a password is set and this request has no session
    REFUSED = "refused"  # not from a trusted proxy, and no password to log in with


def prefix_of(headers: Mapping[str, str], base_path: str) -> str:
    """Return the path the browser sees the UI under: the ingress path, else `base_path`."""
    given = headers.get(INGRESS_HEADER, "").strip().rstrip("/")
    if given and _PREFIX_RE.fullmatch(given) and "/../" not in f"{given}/":
        return given
    return base_path


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


@dataclass
class Guard:
    """Decides who may use the UI, and keeps its login sessions (in memory: a restart logs out)."""

    password: str | None
    trusted: tuple[Network, ...]
    loopback: bool  # whether the UI listens on this machine only
    clock: Callable[[], float] = time.monotonic
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _sessions: dict[str, float] = field(default_factory=dict)  # id -> expiry

    @classmethod
    def from_settings(cls, settings: WebSettings) -> Guard:
        """Build the guard `settings` describe."""
        password = settings.password.get_secret_value() if settings.password else None
        trusted = tuple(ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies)
        return cls(password, trusted, is_loopback(settings.host))

    def trusted_proxy(self, client: str | None) -> bool:
        """Whether `client` is one of the trusted proxies."""
        if client is None or not self.trusted:
            return False
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)

    def verdict(self, client: str | None, session: str | None) -> Verdict:
        """Say what a request from `client` with login `session` may do."""
        if self.trusted_proxy(client):
            return Verdict.ALLOWED
        if self.password is not None:
            return Verdict.ALLOWED if self.session_valid(session) else Verdict.LOGIN
        if self.loopback:
            return Verdict.ALLOWED
        return Verdict.REFUSED

    # ---- login -----------------------------------------------------------------------------

    def check_password(self, given: str) -> bool:
        """Whether `given` is the password (compared in constant time)."""
        if self.password is None:
            return False
        return hmac.compare_digest(_digest(given), _digest(self.password))

    def new_session(self) -> str:
        """Start a login session; return its id (the cookie's value)."""
        now = self.clock()
        self._sessions = {k: v for k, v in self._sessions.items() if v > now}
        session = secrets.token_urlsafe(32)
        self._sessions[session] = now + SESSION_TTL_S
        return session

    def end_session(self, session: str | None) -> None:
        """Log a session out."""
        if session is not None:
            self._sessions.pop(session, None)

    def session_valid(self, session: str | None) -> bool:
        """Whether `session` is a live login session."""
        if not session:
            return False
        expiry = self._sessions.get(session)
        return expiry is not None and expiry > self.clock()

    # ---- CSRF ------------------------------------------------------------------------------

    def csrf_token(self, session: str | None) -> str:
        """Return the CSRF token of forms shown to `session` (or to no session)."""
        return hmac.new(self.key, (session or "-").encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: str | None, given: object) -> bool:
        """Whether `given` is the CSRF token of `session` (compared in constant time)."""
        if not isinstance(given, str):
            return False
        return hmac.compare_digest(given.encode(), self.csrf_token(session).encode())
