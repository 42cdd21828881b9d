"""Fault injection: misbehaving clouds on demand, per endpoint class, from seeded randomness.

A `FaultRule` gives, for one endpoint class, the probability of each fault. Named profiles
bundle rules for `--faults`; the admin API changes them at runtime. Which endpoints form a
class, and how an error body looks, is each cloud's business: see `FaultMiddleware`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from car2mqtt.errors import SimulatorError

ENDPOINT_CLASSES = ("auth", "read", "write")


@dataclass(slots=True)
class FaultRule:
    """Probabilities (0..1) of each fault for one endpoint class."""

    rate_limit: float = 0.0
    retry_after: int = 5
    unavailable: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 2.0
    drop: float = 0.0
    malformed: float = 0.0
    # Handled, then held back for slow_seconds before the answer leaves: the request took
    # effect (a refresh token rotated) but the client may never hear of it.
    late: float = 0.0


@dataclass(slots=True)
class Faults:
    """Every fault switch of a simulator run."""

    profile: str = "none"
    rules: dict[str, FaultRule] = field(default_factory=dict)
    # Vendors whose cloud is down: their cars are unreachable, their data goes stale, their
    # commands fail. "*" means every vendor.
    vendor_outage: set[str] = field(default_factory=set)

    def rule(self, endpoint_class: str) -> FaultRule:
        """Return the rule for `endpoint_class` (all zero when none is set)."""
        return self.rules.get(endpoint_class) or FaultRule()

    def vendor_down(self, vendor: str) -> bool:
        """Whether `vendor`'s cloud is in an outage."""
        return "*" in self.vendor_outage or vendor in self.vendor_outage

    def as_json(self) -> dict[str, Any]:
        """Describe the switches in the admin API's camelCase JSON."""
        return {
            "profile": self.profile,
            "classes": {name: _camel(asdict(rule)) for name, rule in self.rules.items()},
            "vendorOutage": sorted(self.vendor_outage),
        }


def _camel(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in d.items():
        head, *rest = key.split("_")
        out[head + "".join(part.title() for part in rest)] = value
    return out


PROFILES: dict[str, Callable[[], Faults]] = {
    "none": lambda: Faults("none"),
    "flaky": lambda: Faults(
        "flaky",
        {
            "auth": FaultRule(unavailable=0.05),
            "read": FaultRule(
                rate_limit=0.05,
                retry_after=5,
                unavailable=0.05,
                slow=0.05,
                slow_seconds=1.5,
                drop=0.02,
                malformed=0.02,
            ),
            "write": FaultRule(rate_limit=0.05, unavailable=0.05, slow=0.05, slow_seconds=1.5),
        },
    ),
    "rate-limited": lambda: Faults(
        "rate-limited",
        {
            "read": FaultRule(rate_limit=1.0, retry_after=30),
            "write": FaultRule(rate_limit=1.0, retry_after=30),
        },
    ),
    "outage": lambda: Faults(
        "outage",
        {"read": FaultRule(unavailable=0.5), "write": FaultRule(unavailable=1.0)},
        {"*"},
    ),
}


class _RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rateLimit: float = Field(0.0, ge=0, le=1)  # noqa: N815 (the admin API speaks camelCase)
    retryAfter: int = Field(5, ge=0, le=86_400)  # noqa: N815
    unavailable: float = Field(0.0, ge=0, le=1)
    slow: float = Field(0.0, ge=0, le=1)
    slowSeconds: float = Field(2.0, ge=0, le=120)  # noqa: N815
    drop: float = Field(0.0, ge=0, le=1)
    malformed: float = Field(0.0, ge=0, le=1)
    late: float = Field(0.0, ge=0, le=1)


class FaultsIn(BaseModel):
    """The admin API's body for changing faults."""

    model_config = ConfigDict(extra="forbid")
    profile: str | None = None
    classes: dict[str, _RuleIn] = Field(default_factory=dict)
    vendorOutage: list[str] | None = None  # noqa: N815


def faults_from_json(body: Any, current: Faults) -> Faults:
    """Build new switches from an admin request: a profile, then per-class overrides."""
    try:
        spec = FaultsIn.model_validate(body)
    except ValidationError as exc:
        raise SimulatorError(_validation_message(exc)) from None
    faults = load_profile(spec.profile) if spec.profile is not None else current
    for name, rule in spec.classes.items():
        if name not in ENDPOINT_CLASSES:
            msg = f"unknown endpoint class {name!r}; expected one of {', '.join(ENDPOINT_CLASSES)}"
            raise SimulatorError(msg)
        faults.rules[name] = FaultRule(
            rule.rateLimit,
            rule.retryAfter,
            rule.unavailable,
            rule.slow,
            rule.slowSeconds,
            rule.drop,
            rule.malformed,
            rule.late,
        )
    if spec.classes and spec.profile is None:
        faults.profile = "custom"
    if spec.vendorOutage is not None:
        faults.vendor_outage = set(spec.vendorOutage)
    return faults


def load_profile(name: str) -> Faults:
    """Return fresh switches for the named profile."""
    try:
        return PROFILES[name]()
    except KeyError:
        msg = f"unknown fault profile {name!r}; expected one of {', '.join(PROFILES)}"
        raise SimulatorError(msg) from None


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()
    )


class ConnectionDroppedError(Exception):
    """Raised inside a half-sent response so the server cuts the connection."""


class DroppedConnectionLogFilter(logging.Filter):
    """Keep deliberately dropped connections out of the server's error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Return False for records about a deliberate drop."""
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionDroppedError)


ErrorRenderer = Callable[[int, str, int | None], tuple[bytes, str]]
Classifier = Callable[[str, str], str | None]


class FaultMiddleware:
    """ASGI middleware that injects the configured faults into one cloud's endpoints."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        faults: Callable[[], Faults],
        rng: Callable[[], random.Random],
        classify: Classifier,
        render_error: ErrorRenderer,
    ) -> None:
        self.app = app
        self._faults = faults
        self._rng = rng
        self._classify = classify
        self._render = render_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Apply faults to HTTP requests of a known class; pass everything else through."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint_class = self._classify(scope["method"], scope["path"])
        if endpoint_class is None:
            await self.app(scope, receive, send)
            return
        rule = self._faults().rule(endpoint_class)
        rng = self._rng()
        if rule.slow and rng.random() < rule.slow:
            await asyncio.sleep(rule.slow_seconds)
        if rule.drop and rng.random() < rule.drop:
            await send({"type": "http.response.start", "status": 200, "headers": _LONG_BODY})
            await send({"type": "http.response.body", "body": b'{"data": [', "more_body": True})
            raise ConnectionDroppedError
        if rule.rate_limit and rng.random() < rule.rate_limit:
            await self._error(send, 429, "rate-limited", rule.retry_after)
            return
        if rule.unavailable and rng.random() < rule.unavailable:
            await self._error(send, 503, "vendor-temporarily-unavailable", None)
            return
        if rule.malformed and rng.random() < rule.malformed:
            await self.app(scope, receive, _truncating(send))
            return
        if rule.late and rng.random() < rule.late:
            await self.app(scope, receive, _held_back(send, rule.slow_seconds))
            return
        await self.app(scope, receive, send)

    async def _error(self, send: Send, status: int, kind: str, retry_after: int | None) -> None:
        body, content_type = self._render(status, kind, retry_after)
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        if retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


_LONG_BODY = [(b"content-type", b"application/json"), (b"content-length", b"4096")]


def _held_back(send: Send, seconds: float) -> Send:
    """Wrap `send` so the response starts only `seconds` after the app has answered."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            await asyncio.sleep(seconds)
        await send(message)

    return wrapped


def _truncating(send: Send) -> Send:
    """Wrap `send` so the response body arrives cut in half: valid status, broken JSON."""
    chunks: list[bytes] = []
    start: dict[str, Any] = {}

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            cut = body[: max(1, len(body) // 2)] if body else b"{"
            headers = [
                (k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"
            ]
            headers.append((b"content-length", str(len(cut)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": cut})
            return
        await send(message)

    return wrapped


def problem_json(payload: dict[str, Any]) -> bytes:
    """Serialise an error payload compactly."""
    return json.dumps(payload, separators=(",", ":")).encode()
