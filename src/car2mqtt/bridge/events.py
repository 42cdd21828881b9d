"""What the hub tells its sinks: small frozen events, and the `Sink` protocol they arrive by.

The hub knows sinks only through this module, so a new sink (the web UI, a history recorder)
attaches without any change to the hub or to the sinks already there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from car2mqtt.bridge.known import KnownAccount, KnownVehicle
from car2mqtt.models import CommandResult


@dataclass(frozen=True, slots=True)
class VehicleChanged:
    """A car was read (or found); `changed`: its state differs from the last one read.

    Sent for every car a source reads, changed or not, so a sink that failed to pass on an
    earlier change (a broker away) can try again; `force`: send even what looks unchanged.
    """

    vehicle: KnownVehicle
    force: bool = False
    changed: bool = True


@dataclass(frozen=True, slots=True)
class VehicleRemoved:
    """A cleanly read vehicle list no longer has this car."""

    vehicle: KnownVehicle


@dataclass(frozen=True, slots=True)
class AccountChanged:
    """An account's link state or freshness changed: every car of it may look different now."""

    account: KnownAccount


@dataclass(frozen=True, slots=True)
class ListingDone:
    """A source finished one full pass over an account (the end of a poll)."""

    account: KnownAccount


@dataclass(frozen=True, slots=True)
class CommandProgress:
    """A command to a car moved on: sent, pending, confirmed, failed..."""

    vehicle: KnownVehicle
    result: CommandResult


Event = VehicleChanged | VehicleRemoved | AccountChanged | ListingDone | CommandProgress


class Sink(Protocol):
    """Anything that wants the hub's changes: it gets each event, in order, and awaits it.

    A sink that may be slow (a database) queues the event and returns: the hub waits for each
    sink before the next event, so a slow sink would delay all the others.
    """

    async def on_event(self, event: Event) -> None:
        """Take one event."""
        ...
