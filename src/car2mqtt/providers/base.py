"""The provider boundary: one small protocol every vehicle cloud implements.

What differs between clouds (grant type, polling cadence, which commands exist) is data in
`ProviderSpec`, never an `if provider == ...` branch elsewhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from car2mqtt.models import CommandResult, VehicleRef, VehicleState


class Grant(StrEnum):
    """OAuth2 grants a cloud uses."""

    CLIENT_CREDENTIALS = "client_credentials"
    AUTHORIZATION_CODE = "authorization_code"
    PASSWORD = "password"  # noqa: S105 (a grant's name, not a secret)


class Command(StrEnum):
    """Commands Home Assistant can send to a car."""

    START_CHARGING = "start_charging"
    STOP_CHARGING = "stop_charging"
    REFRESH = "refresh"
    SET_MAX_CURRENT = "set_max_current"  # value: amperes
    ENABLE_SMART_CHARGING = "enable_smart_charging"
    DISABLE_SMART_CHARGING = "disable_smart_charging"
    SET_MIN_CHARGE_LIMIT = "set_min_charge_limit"  # value: percent
    SET_CHARGE_DEADLINE = "set_charge_deadline"  # value: "HH:MM"
    CHARGE_NOW = "charge_now"  # charge at once, whatever smart charging plans
    END_CHARGE_NOW = "end_charge_now"


# What a setting command carries: a number (amperes, percent) or a time of day ("07:30").
CommandValue = float | str | None


def shown_value(value: float | str) -> str:
    """Return a command's value as people read it ("16", "7.5", "07:30")."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """Facts about a cloud that the bridge's core acts on."""

    name: str
    title: str
    grant: Grant
    poll_interval_s: float
    active_poll_interval_s: float  # while a car charges or drives
    min_poll_interval_s: float
    commands: frozenset[Command]
    refresh_after_command: bool = True
    # Why polling more often than `min_poll_interval_s` is refused, said to a user who asks to.
    min_poll_reason: str = ""
    # A regular expression whose first group is the car an API request's path is about; the
    # API budget counts such a call against that car, any other against every car.
    vehicle_path: str | None = None


class Provider(Protocol):
    """A vehicle cloud account, as the bridge's core sees it."""

    spec: ProviderSpec
    account: str
    # Set by poll() when the cloud says only the user can repair the link (None when fine).
    link_problem: str | None
    # Set by poll(): ids of cars the cloud listed whose state could not be read this time.
    # They are missing from poll()'s result but are not gone: only a clean list removes a car.
    unreadable: frozenset[str]

    def pages(self) -> AsyncIterator[Sequence[VehicleState]]:
        """Yield the current state of every vehicle of the account, a page at a time.

        The bridge applies and publishes each page as it arrives. `link_problem` and
        `unreadable` describe the whole listing once the last page is out; a cloud without
        pages yields one.
        """
        ...

    async def send_command(
        self, ref: VehicleRef, command: Command, value: CommandValue = None
    ) -> CommandResult:
        """Send `command` (with its `value`, for settings); return its first status."""
        ...

    async def command_status(self, ref: VehicleRef, result: CommandResult) -> CommandResult:
        """Return the latest status of a command sent earlier."""
        ...

    async def reload_credentials(self) -> bool:
        """Adopt credentials another process saved (`car2mqtt link`); return whether it did."""
        ...

    async def aclose(self) -> None:
        """Release the provider's resources."""
        ...


@runtime_checkable
class HoldsToken(Protocol):
    """A provider that can say how long its access token lasts (for the web UI)."""

    def token_valid_until(self) -> float | None:
        """Return when the access token expires (clock time), None without one."""
        ...


async def gather_pages(pages: AsyncIterator[Sequence[VehicleState]]) -> list[VehicleState]:
    """Return every vehicle `pages` yields, in one list (a provider's `poll`)."""
    return [state async for page in pages for state in page]


async def one_page(
    poll: Callable[[], Awaitable[Sequence[VehicleState]]],
) -> AsyncIterator[Sequence[VehicleState]]:
    """Yield what `poll()` returns as the only page (`pages` of a cloud without pages)."""
    yield await poll()
