"""Push from a cloud (webhooks), as the bridge's core sees it: provider-neutral items.

A provider that can push offers a `PushChannel`: it checks a delivery's signature, turns its
body into `Pushed*` items, and manages the one subscription car2mqtt owns at the cloud. The
bridge's push source (`bridge/push.py`) does the rest: dedupe, the hub, the watchdog.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from car2mqtt.models import CommandStatus, SmartCharging, VehicleState


@dataclass(frozen=True, slots=True)
class PushedState:
    """A car's full state, pushed (discovered or updated)."""

    identity: str
    state: VehicleState


@dataclass(frozen=True, slots=True)
class PushedSmart:
    """A car's smart charging status and plan, pushed on their own."""

    identity: str
    vehicle_id: str
    smart: SmartCharging


@dataclass(frozen=True, slots=True)
class PushedRemoval:
    """A car the cloud no longer has."""

    identity: str
    vehicle_id: str


@dataclass(frozen=True, slots=True)
class PushedAction:
    """A step of a command (an action) the cloud carries out."""

    identity: str
    action_id: str
    status: CommandStatus
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PushedLinkLost:
    """The cloud lost the user's credentials: only a re-link helps."""

    identity: str
    problem: str


@dataclass(frozen=True, slots=True)
class PushedAlive:
    """A heartbeat or a test: the push path works, nothing else changed."""

    identity: str


Pushed = PushedState | PushedSmart | PushedRemoval | PushedAction | PushedLinkLost | PushedAlive


@dataclass(frozen=True, slots=True)
class PushBatch:
    """What one delivery carried."""

    items: tuple[Pushed, ...] = ()
    unknown: tuple[str, ...] = ()  # event names car2mqtt does not handle (ignored)
    others: int = 0  # events about users of the same cloud client that are not this account's


@dataclass(frozen=True, slots=True)
class Subscription:
    """car2mqtt's own subscription at the cloud."""

    id: str
    url: str
    active: bool
    last_success: datetime | None = None
    events: tuple[str, ...] = field(default_factory=tuple)


def push_channel(provider: object) -> PushChannel | None:
    """Return the push channel of `provider`, None when it does not push (or is not set to)."""
    channel: PushChannel | None = getattr(provider, "push", None)
    return channel


class PushChannel(Protocol):
    """What a provider that pushes offers the bridge."""

    public_url: str  # where the cloud reaches the bridge's web server

    def verify(self, secret: str, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether `body` carries a valid signature made with `secret` (constant time)."""
        ...

    def parse(self, body: bytes) -> PushBatch:
        """Read a verified delivery; raise BadCloudResponse when it is not one."""
        ...

    async def subscribe(self, url: str, secret: str, known_id: str | None) -> Subscription:
        """Create the subscription, or bring car2mqtt's own (`known_id`) up to date."""
        ...

    async def describe(self, subscription_id: str) -> Subscription | None:
        """Return the subscription as the cloud sees it (None if it is gone)."""
        ...

    async def test(self, subscription_id: str) -> tuple[bool, str]:
        """Ask the cloud to send a test delivery; return whether it got through, and what."""
        ...
