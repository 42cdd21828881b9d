"""Enode smart charging: when to read a car's status, and what each setting command changes.

A status read costs one call per car, so it is read only when it can have moved: the first
time, after a change of what it depends on (plugged in, charging, the policy), after a command,
and at most every `MAX_AGE_S` while the car is plugged in. A pushed status counts as a read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from car2mqtt.errors import CommandRejected
from car2mqtt.providers.base import Command, CommandValue
from car2mqtt.providers.enode.wire import Vehicle

# A plan moves at most every few minutes (Enode refreshes a charging car every 2); a plugged-in
# car's status is read again after this long even if nothing it depends on changed.
MAX_AGE_S = 1800.0
# While the cloud pushes statuses, a read is only a safety net.
PUSHED_MAX_AGE_S = 7200.0


def _basis(vehicle: Vehicle) -> tuple[object, ...]:
    charge, policy = vehicle.charge_state, vehicle.smart_charging_policy
    return (
        charge.is_plugged_in,
        charge.is_charging,
        policy.is_enabled,
        policy.deadline,
        policy.minimum_charge_limit,
    )


@dataclass(slots=True)
class _Read:
    basis: tuple[object, ...] | None
    at: float
    pushed: bool = False


class SmartReads:
    """Which cars' smart charging status to read now (one owner per account)."""

    def __init__(self) -> None:
        self._reads: dict[str, _Read] = {}
        self._stale: set[str] = set()

    def due(self, vehicle: Vehicle, now: float) -> bool:
        """Whether `vehicle`'s status should be read on this poll."""
        if not (
            vehicle.capabilities.smart_charging.is_capable
            and vehicle.smart_charging_policy.is_enabled
        ):
            return False  # off is "disabled", known without asking
        read = self._reads.get(vehicle.id)
        if read is None or vehicle.id in self._stale:
            return True
        if read.pushed:
            return now - read.at >= PUSHED_MAX_AGE_S
        if read.basis != _basis(vehicle):
            return True
        return bool(vehicle.charge_state.is_plugged_in) and now - read.at >= MAX_AGE_S

    def read(self, vehicle: Vehicle, now: float) -> None:
        """Note that `vehicle`'s status was just read."""
        self._reads[vehicle.id] = _Read(_basis(vehicle), now)
        self._stale.discard(vehicle.id)

    def pushed(self, vehicle_id: str, now: float) -> None:
        """Note that the cloud pushed `vehicle_id`'s status."""
        self._reads[vehicle_id] = _Read(None, now, pushed=True)
        self._stale.discard(vehicle_id)

    def stale(self, vehicle_id: str) -> None:
        """Read `vehicle_id`'s status on the next poll (a command may have moved it)."""
        self._stale.add(vehicle_id)

    def keep(self, vehicle_ids: set[str]) -> None:
        """Forget cars no longer listed."""
        for gone in self._reads.keys() - vehicle_ids:
            del self._reads[gone]
        self._stale &= vehicle_ids


def policy_change(command: Command, value: CommandValue) -> dict[str, Any]:
    """Return the policy fields `command` sets; raise CommandRejected without a fitting value."""
    if command is Command.ENABLE_SMART_CHARGING:
        return {"isEnabled": True}
    if command is Command.DISABLE_SMART_CHARGING:
        return {"isEnabled": False}
    if command is Command.SET_MIN_CHARGE_LIMIT and isinstance(value, int | float):
        return {"minimumChargeLimit": value}
    if command is Command.SET_CHARGE_DEADLINE and isinstance(value, str):
        return {"deadline": value}
    msg = f"{command.value} needs a value of its own kind, got {value!r}"
    raise CommandRejected(msg)


POLICY_COMMANDS = frozenset(
    {
        Command.ENABLE_SMART_CHARGING,
        Command.DISABLE_SMART_CHARGING,
        Command.SET_MIN_CHARGE_LIMIT,
        Command.SET_CHARGE_DEADLINE,
    }
)
