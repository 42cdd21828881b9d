"""What the hub knows about each account and car: the records every sink reads.

Sources and the command service change them only through the hub's methods; sinks read them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from car2mqtt.models import CommandResult, LinkState, VehicleInfo, VehicleRef, VehicleState
from car2mqtt.providers.base import ProviderSpec


@dataclass(slots=True, eq=False)
class KnownVehicle:
    """One car: its latest merged state, the name it is shown under and its last command."""

    state: VehicleState
    name: str
    # Known from the store but not read from its cloud yet: only its availability is known.
    placeholder: bool = False
    last_command: CommandResult | None = None

    @property
    def ref(self) -> VehicleRef:
        """The car's identity."""
        return self.state.ref

    @property
    def key(self) -> str:
        """The car's key, unique across accounts."""
        return self.state.ref.key


class PushMode(StrEnum):
    """Whether an account's cloud pushes its changes (webhooks) or is polled."""

    OFF = "off"  # not configured: polled, as always
    STARTING = "starting"  # subscribing; polled meanwhile
    ACTIVE = "active"  # deliveries arrive: polled only as a safety net
    DEGRADED = "degraded"  # configured, but nothing arrives: polled at the usual pace


@dataclass(slots=True, eq=False)
class KnownAccount:
    """One configured account: its cloud's facts, its link state and its cars."""

    name: str
    spec: ProviderSpec
    api_calls: Callable[[], int]
    stale_after_failures: int
    vehicles: dict[str, KnownVehicle] = field(default_factory=dict)  # ref.key -> car
    link: LinkState = LinkState.OK
    problem: str | None = None
    link_saved: bool = False  # whether the state file holds `link` and `problem` yet
    failures: int = 0  # reads of the cloud that failed in a row
    last_error: str | None = None  # why the last failed read failed, in words
    last_error_at: float | None = None  # clock time of that failure
    push: PushMode = PushMode.OFF
    push_detail: str | None = None  # why push is degraded, or the last test's answer
    last_push_at: float | None = None  # clock time of the last verified delivery

    @property
    def stale(self) -> bool:
        """Whether the cloud failed often enough that the cars' data is no longer current."""
        return self.failures >= self.stale_after_failures

    @property
    def relink_required(self) -> bool:
        """Whether only the user can repair this account's link."""
        return self.link is LinkState.RELINK_REQUIRED


def placeholder_state(ref: VehicleRef) -> VehicleState:
    """Return the empty state of a car known from the store but not read yet."""
    return VehicleState(info=VehicleInfo(ref=ref, vendor=""))
