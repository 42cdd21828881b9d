"""Xee's OAuth server: users, one registered client, authorization codes and rotating tokens.

Refresh tokens rotate: each refresh answers a new pair. The old refresh token keeps working for
a short grace, answering the *same* new pair again, so that a client whose answer got lost on
the way can retry (Auth0 and Okta call this rotation grace). It dies as soon as the new pair is
used, or when the grace runs out.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from car2mqtt.clock import isoformat
from car2mqtt.errors import SimulatorError
from car2mqtt.simulator.world import World

if TYPE_CHECKING:
    from car2mqtt.simulator.app import SimOptions

CODE_TTL_S = 600.0
DEFAULT_SCOPE = (
    "account.read vehicles.read vehicles.signals.read vehicles.locations.read vehicles.trips.read"
)
_PRUNE_EVERY = 64


class XeeError(SimulatorError):
    """An error the Xee API answers with a v4 `{"error", "error_description"}` body."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description

    def payload(self) -> dict[str, str]:
        """Return the v4 error body."""
        return {"error": self.error, "error_description": self.description}


def invalid_grant(description: str) -> XeeError:
    """Return the token endpoint's error for a grant it refuses."""
    return XeeError(400, "invalid_grant", description)


def redirect_allowed(uri: str) -> bool:
    """Whether `uri` is registered for the client: any loopback http URI, or https://localhost/."""
    if uri == "https://localhost/":
        return True
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 (raises on a malformed port)
    except ValueError:
        return False
    return (
        parts.scheme == "http"
        and parts.hostname in ("127.0.0.1", "localhost")
        and "@" not in parts.netloc
        and not parts.fragment
    )


@dataclass(slots=True)
class XeeUser:
    """A Xee account."""

    id: str
    email: str
    password: str
    first_name: str
    last_name: str
    created_at: float
    suspended: bool = False
    vehicle_ids: list[str] = field(default_factory=list)  # oldest first

    def as_json(self) -> dict[str, Any]:
        """Return the v4 user object."""
        return {
            "id": self.id,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "email": self.email,
            "gender": "MALE",
            "createdAt": isoformat(self.created_at),
            "updatedAt": isoformat(self.created_at),
        }


@dataclass(slots=True)
class Grant:
    """What a code or token stands for, and until when."""

    user_id: str
    scope: str
    expires_at: float


@dataclass(slots=True)
class AuthCode(Grant):
    """A single-use authorization code."""

    redirect_uri: str
    used: bool = False


@dataclass(slots=True)
class AccessToken(Grant):
    """A bearer token; `refresh` is the refresh token issued with it."""

    refresh: str
    revoked: bool = False


@dataclass(slots=True)
class RefreshToken(Grant):
    """A refresh token, and once used, the pair it was rotated into."""

    parent: str | None  # the refresh token this pair was rotated from
    dead: bool = False
    rotated_at: float | None = None
    successor: dict[str, Any] | None = None  # the answer to the refresh, replayed in the grace


class XeeAuth:
    """Everything the simulated Xee OAuth server knows."""

    def __init__(self, world: World, options: SimOptions, rng: random.Random) -> None:
        self.world = world
        self.options = options
        self._rng = rng
        self.users: dict[str, XeeUser] = {}
        self.codes: dict[str, AuthCode] = {}
        self.access: dict[str, AccessToken] = {}
        self.refresh: dict[str, RefreshToken] = {}
        self._issued = 0

    # ---- clients and users ---------------------------------------------------------------

    def client_ok(self, client_id: str, client_secret: str) -> bool:
        """Whether the pair names the registered client."""
        id_ok = secrets.compare_digest(client_id.encode(), self.options.xee_client_id.encode())
        secret_ok = secrets.compare_digest(
            client_secret.encode(), self.options.xee_client_secret.encode()
        )
        return id_ok and secret_ok

    def add_user(self, email: str, password: str, first_name: str, last_name: str) -> XeeUser:
        """Create an account; emails are unique, compared case-insensitively."""
        if self.user_by_email(email) is not None:
            msg = f"a user with email {email!r} exists already"
            raise XeeError(409, "conflict", msg)
        user = XeeUser(
            self.world.new_uuid(self._rng), email, password, first_name, last_name, self.world.now()
        )
        self.users[user.id] = user
        return user

    def user(self, user_id: str) -> XeeUser:
        """Return a known user or raise a 404 error."""
        user = self.users.get(user_id)
        if user is None:
            raise XeeError(404, "not_found", f"User {user_id} was not found")
        return user

    def user_by_email(self, email: str) -> XeeUser | None:
        """Return the account with this email, if any."""
        wanted = email.strip().lower()
        return next((u for u in self.users.values() if u.email.lower() == wanted), None)

    def login(self, email: str, password: str) -> XeeUser | None:
        """Return the account if the credentials are right."""
        user = self.user_by_email(email)
        if user is None or not secrets.compare_digest(password.encode(), user.password.encode()):
            return None
        return user

    # ---- grants --------------------------------------------------------------------------

    def issue_code(self, user: XeeUser, redirect_uri: str, scope: str) -> str:
        """Return a fresh authorization code for `user`."""
        code = self.world.new_token(20, self._rng)
        now = self.world.now()
        self.codes = {c: a for c, a in self.codes.items() if a.expires_at > now and not a.used}
        self.codes[code] = AuthCode(user.id, scope or DEFAULT_SCOPE, now + CODE_TTL_S, redirect_uri)
        return code

    def exchange_code(self, code: str, redirect_uri: str) -> dict[str, Any]:
        """Trade a code for a token pair."""
        grant = self.codes.get(code)
        if grant is None or grant.used or grant.expires_at <= self.world.now():
            raise invalid_grant("The authorization code is invalid, used or expired")
        if redirect_uri != grant.redirect_uri:
            raise invalid_grant("redirect_uri does not match the one used to authorize")
        grant.used = True
        return self._issue(self._active(grant.user_id), grant.scope, parent=None)

    def password_grant(self, username: str, password: str, scope: str) -> dict[str, Any]:
        """Trade a user's credentials for a token pair."""
        user = self.login(username, password)
        if user is None:
            raise invalid_grant("Invalid username or password")
        return self._issue(self._active(user.id), scope or DEFAULT_SCOPE, parent=None)

    def refresh_grant(self, token: str) -> dict[str, Any]:
        """Rotate a refresh token; inside the grace, replay the pair it was rotated into."""
        now = self.world.now()
        record = self.refresh.get(token)
        if record is not None and record.successor is not None and not record.dead:
            assert record.rotated_at is not None
            if now - record.rotated_at >= self.options.xee_refresh_grace_s:
                record.dead = True
        if record is None or record.dead or record.expires_at <= now:
            raise XeeError(400, "invalid_request", "The refresh token is invalid or expired")
        user = self._active(record.user_id)
        if record.successor is not None:
            return record.successor
        self._kill_parent(record.parent)
        body = self._issue(user, record.scope, parent=token)
        record.rotated_at, record.successor = now, body
        return body

    def _active(self, user_id: str) -> XeeUser:
        user = self.user(user_id)
        if user.suspended:
            raise invalid_grant("account suspended")
        return user

    def _kill_parent(self, parent: str | None) -> None:
        # Using a rotated pair proves the client stored it: the token it replaced may die.
        if parent is not None and (old := self.refresh.get(parent)) is not None:
            old.dead = True

    def _issue(self, user: XeeUser, scope: str, *, parent: str | None) -> dict[str, Any]:
        now, o = self.world.now(), self.options
        self._issued += 1
        if self._issued % _PRUNE_EVERY == 0:
            self._prune(now)
        access = self.world.new_token(32, self._rng)
        refresh = self.world.new_token(32, self._rng)
        dies_at = now + o.xee_token_ttl_s - o.xee_early_expiry_s
        self.access[access] = AccessToken(user.id, scope, dies_at, refresh)
        self.refresh[refresh] = RefreshToken(user.id, scope, now + o.xee_refresh_ttl_s, parent)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": int(o.xee_token_ttl_s),
            "scope": scope,
            "token_type": "bearer",
        }

    def _prune(self, now: float) -> None:
        self.access = {t: a for t, a in self.access.items() if a.expires_at > now and not a.revoked}
        self.refresh = {t: r for t, r in self.refresh.items() if r.expires_at > now and not r.dead}

    # ---- using tokens --------------------------------------------------------------------

    def authenticate(self, token: str) -> XeeUser:
        """Return the user a bearer token stands for, or raise the v4 error."""
        record = self.access.get(token) if token else None
        if record is None or record.revoked:
            raise XeeError(401, "invalid_token", "The access token is missing, invalid or revoked")
        user = self.user(record.user_id)
        if user.suspended:
            raise XeeError(403, "account_suspended", "This account is suspended")
        if record.expires_at <= self.world.now():
            raise XeeError(401, "token_expired", "Token has expired")
        pair = self.refresh.get(record.refresh)
        if pair is not None:
            self._kill_parent(pair.parent)
        return user

    def revoke(self, token: str) -> None:
        """Revoke an access token and the refresh token issued with it."""
        record = self.access.get(token) if token else None
        if record is None or record.revoked:
            raise XeeError(401, "invalid_token", "The access token is missing, invalid or revoked")
        record.revoked = True
        if (pair := self.refresh.get(record.refresh)) is not None:
            pair.dead = True

    def revoke_refresh_tokens(self, user_id: str) -> int:
        """Kill every live refresh token of a user; return how many."""
        self.user(user_id)
        live = [r for r in self.refresh.values() if r.user_id == user_id and not r.dead]
        for record in live:
            record.dead = True
        return len(live)

    def revoke_all(self) -> int:
        """Forget every token, access and refresh; return how many."""
        count = len(self.access) + len(self.refresh)
        self.access.clear()
        self.refresh.clear()
        return count
