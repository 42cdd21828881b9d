"""Enode's smart charging as the simulator models it: a policy, a plan, and overrides.

Enode's real planner follows energy prices; the simulator has none, so its plan is simple (see
docs/simulator.md): below the policy's minimum the car charges at once; above it, the car waits
and starts at the latest moment that still reaches the charge limit 15 minutes before the next
deadline, read in UTC (the simulator has no locations with time zones). The plan commands the
car directly, as Enode does with its own commands; an override starts the car through a vendor
action the client can follow.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from car2mqtt.clock import isoformat
from car2mqtt.simulator.physics import ChargeMode
from car2mqtt.simulator.world import Handle

if TYPE_CHECKING:
    from car2mqtt.simulator.enode.cloud import Action, EnodeCloud, EnodeVehicle

# The spec's pattern with ASCII digits: its `\d` is ECMA-262's, Python's would take any digit.
DEADLINE_PATTERN = r"^(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"
DEFAULT_DEADLINE = "07:00"
PLAN_MARGIN_S = 15 * 60
CURRENCY = "EUR"
# Made-up prices per kWh: charging at once pays the evening peak, the plan the night rate.
NON_SMART_PRICE = 0.30
SMART_PRICE = 0.22
STATUS_EVENT = "user:vehicle:smart-charging-status-updated"
MAX_PLANS = 50  # plans kept per vehicle for GET .../smart-charging-plans/{id}
_DAY_S = 86_400
_EPSILON = 1e-6
_SETTLE_S = 60.0


@dataclass(frozen=True, slots=True)
class Policy:
    """A vehicle's smart charging policy: Enode's own setting, not vendor data."""

    enabled: bool = False
    deadline: str | None = None
    minimum: float = 0

    def as_json(self) -> dict[str, Any]:
        """Return the API's Smart Charging Policy."""
        return {
            "isEnabled": self.enabled,
            "deadline": self.deadline,
            "minimumChargeLimit": self.minimum,
        }


@dataclass(slots=True)
class Plan:
    """One smart charging session, from plug-in (or enabling) to its end."""

    id: str
    vehicle_id: str
    user_id: str
    vendor: str
    deadline: str
    deadline_at: float
    energy_kwh: float
    stop_at: float
    start_at: float | None = None
    estimated_finish_at: float = 0.0
    started: bool = False  # past its start time: it charges on to the end
    stop_confirmed_at: float | None = None
    start_confirmed_at: float | None = None
    ended_at: float | None = None
    final_state: str | None = None

    def as_json(self) -> dict[str, Any]:
        """Return the API's Smart Charging Plan."""
        return {
            "id": self.id,
            "vehicleId": self.vehicle_id,
            "userId": self.user_id,
            "locationId": None,
            "vendor": self.vendor,
            "currency": CURRENCY,
            "nonSmartCost": round(self.energy_kwh * NON_SMART_PRICE, 2),
            "smartCost": round(self.energy_kwh * SMART_PRICE, 2),
            "stopAt": isoformat(self.stop_at),
            "startAt": _iso(self.start_at),
            "estimatedFinishAt": isoformat(self.estimated_finish_at),
            "stopConfirmedAt": _iso(self.stop_confirmed_at),
            "startConfirmedAt": _iso(self.start_confirmed_at),
            "endedAt": _iso(self.ended_at),
            "finalState": self.final_state,
            "failureCondition": None,
        }


@dataclass(slots=True)
class Override:
    """A client's 'charge now' over smart charging, carried out by a START vendor action."""

    vehicle_id: str
    user_id: str
    vendor: str
    created_at: float
    action_id: str
    ended_at: float | None = None

    def status_json(self) -> dict[str, Any]:
        """Return the API's Smart Override Status."""
        return {
            "createdAt": isoformat(self.created_at),
            "endedAt": _iso(self.ended_at),
            "targetType": "vehicle",
            "targetId": self.vehicle_id,
            "vendorActionId": self.action_id,
        }

    def as_json(self) -> dict[str, Any]:
        """Return the body of the smart-override endpoints."""
        return {**self.status_json(), "userId": self.user_id, "vendor": self.vendor}


@dataclass(slots=True)
class SmartState:
    """Where one vehicle stands in smart charging."""

    changed_at: float
    updated_at: float
    policy: Policy = field(default_factory=Policy)
    state: str = "DISABLED"
    consideration: dict[str, bool] | None = None
    plan: Plan | None = None  # the running plan, or in PLAN:ENDED:* states the one that ended
    plans: dict[str, Plan] = field(default_factory=dict)
    override: Override | None = None
    wake: Handle | None = None

    @property
    def active_plan(self) -> Plan | None:
        """The plan in force, if any."""
        plan = self.plan
        return plan if plan is not None and plan.ended_at is None else None


def next_deadline(t: float, deadline: str) -> float:
    """Return the next time after `t` that the clock reads `deadline` ("HH:MM", UTC)."""
    hours, minutes = (int(part) for part in deadline.split(":"))
    at = t - t % _DAY_S + hours * 3600 + minutes * 60
    return at if at > t else at + _DAY_S


class SmartCharging:
    """Runs every vehicle's smart charging on the cloud's clock."""

    def __init__(self, cloud: EnodeCloud) -> None:
        self.cloud = cloud

    # ---- what the cloud calls ------------------------------------------------------------

    def set_policy(self, vehicle: EnodeVehicle, policy: Policy) -> None:
        """Put a new policy in force and re-plan at once."""
        before = self._core(vehicle)
        vehicle.smart.policy = policy
        self._update(vehicle, before)

    def evaluate(self, vehicle: EnodeVehicle, t: float) -> None:
        """Re-plan the vehicle at time `t` (after a cache refresh, or when a plan falls due)."""
        smart = vehicle.smart
        if smart.state == "DISABLED" and not smart.policy.enabled:
            smart.updated_at = t
            return
        self._update(vehicle, self._core(vehicle), t)

    def start_override(self, vehicle: EnodeVehicle) -> Override:
        """Force charging now; return the active override (a new one, or the one running)."""
        smart = vehicle.smart
        if smart.override is not None:
            return smart.override
        before = self._core(vehicle)
        action = self.cloud.create_action(vehicle, "START")
        override = Override(
            vehicle.id, vehicle.user_id, vehicle.vendor, self.cloud.world.now(), action.id
        )
        smart.override = override
        self._update(vehicle, before)
        return override

    def end_override(self, vehicle: EnodeVehicle) -> Override | None:
        """End the active override, handing control back to the plan; None if there is none."""
        before = self._core(vehicle)
        override = self._end_override(vehicle, self.cloud.world.now())
        if override is not None:
            self._update(vehicle, before)
        return override

    def action_finished(self, action: Action) -> None:
        """Let an override end as soon as its START action fails or is cancelled."""
        vehicle = self.cloud.vehicles.get(action.vehicle_id)
        if vehicle is None or action.state == "CONFIRMED":
            return
        override = vehicle.smart.override
        if override is not None and override.action_id == action.id:
            self.evaluate(vehicle, self.cloud.world.now())

    def forget(self, vehicle: EnodeVehicle) -> None:
        """Drop the vehicle's timed work and override: it is being unlinked."""
        if vehicle.smart.wake is not None:
            vehicle.smart.wake.cancel()
        vehicle.smart.override = None  # so its cancelled action re-plans nothing

    def status_json(self, vehicle: EnodeVehicle) -> dict[str, Any]:
        """Return the API's Smart Charging Status."""
        return {"updatedAt": isoformat(vehicle.smart.updated_at), **self._core(vehicle)}

    # ---- the plan ------------------------------------------------------------------------

    def _update(
        self, vehicle: EnodeVehicle, before: dict[str, Any], at: float | None = None
    ) -> None:
        t = self.cloud.world.now() if at is None else at
        self._decide(vehicle, t)
        vehicle.smart.updated_at = t
        after = self._core(vehicle)
        changed = _changed(before, after)
        user = self.cloud.users.get(vehicle.user_id)
        if changed and user is not None:
            status = {"updatedAt": isoformat(t), **after}
            self.cloud.emit(
                user, STATUS_EVENT, {"smartChargingStatus": status, "updatedFields": changed}
            )

    def _decide(self, vehicle: EnodeVehicle, t: float) -> None:
        smart, car = vehicle.smart, vehicle.car
        if smart.wake is not None:
            smart.wake.cancel()
            smart.wake = None
        policy = smart.policy
        if not policy.enabled:
            # Charging is the car's own again: it goes on as it is.
            self._end_override(vehicle, t)
            self._end_plan(smart, "PLAN:ENDED:DISABLED", t)
            smart.plan, smart.consideration = None, None
            self._set_state(smart, "DISABLED", t)
            return
        if not self.cloud.reachable(vehicle):
            if smart.state == "DISABLED":
                self._set_state(smart, "CONSIDERING", t)
            return  # Enode can neither see nor command the car; the next refresh tries again
        car.advance(t)
        self._plan(vehicle, t)
        # What the plan weighed, as it left the car.
        smart.consideration = {
            "isPluggedIn": car.plugged,
            "isCharging": car.charge_mode() in (ChargeMode.CHARGING, ChargeMode.INITIALIZING),
            "atChargingLocation": True,  # no Locations here: everywhere counts
            "hasTimeEstimate": car.plugged,
        }

    def _plan(self, vehicle: EnodeVehicle, t: float) -> None:
        smart, car, policy = vehicle.smart, vehicle.car, vehicle.smart.policy
        if not car.plugged:
            self._end_override(vehicle, t)
            if self._end_plan(smart, "PLAN:ENDED:UNPLUGGED", t):
                self._set_state(smart, "PLAN:ENDED:UNPLUGGED", t)
            elif smart.state != "PLAN:ENDED:UNPLUGGED":
                smart.plan = None
                self._set_state(smart, "CONSIDERING", t)
            return
        if car.soc >= car.charge_limit - 1e-9:
            self._end_override(vehicle, t)
            self._end_plan(smart, "PLAN:ENDED:FINISHED", t)
            smart.plan = None
            self._set_state(smart, "FULLY_CHARGED", t)
            return
        self._check_override(vehicle, t)
        plan = smart.active_plan
        if plan is not None and plan.deadline != policy.deadline:
            self._end_plan(smart, "PLAN:ENDED:DEADLINE_CHANGED", t)
            plan = None
        if plan is None:
            plan = self._new_plan(vehicle, t)
        self._confirm(vehicle, plan, t)
        if smart.override is not None:
            self._set_state(smart, "PLAN:EXECUTING:OVERRIDDEN", t)
            return
        to_full = car.seconds_to_level(car.charge_limit)
        if car.soc < policy.minimum - _EPSILON:
            reached = _settle(plan.stop_at, t + car.seconds_to_level(policy.minimum))
            rest = max(0.0, to_full - (reached - t))
            plan.stop_at = reached
            plan.start_at = max(reached, plan.deadline_at - rest - PLAN_MARGIN_S)
            plan.estimated_finish_at = _settle(plan.estimated_finish_at, plan.start_at + rest)
            self._charge(vehicle, on=True)
            self._wake_at(vehicle, reached)
            self._set_state(smart, "PLAN:EXECUTING:STARTED", t)
            return
        if not plan.started:
            plan.start_at = plan.deadline_at - to_full - PLAN_MARGIN_S
            plan.started = t >= plan.start_at
        assert plan.start_at is not None
        if plan.started:
            plan.estimated_finish_at = _settle(plan.estimated_finish_at, t + to_full)
            self._charge(vehicle, on=True, planned=True)
            self._set_state(smart, "PLAN:EXECUTING:STARTED", t)
        else:
            plan.estimated_finish_at = plan.start_at + to_full
            self._charge(vehicle, on=False)
            self._wake_at(vehicle, plan.start_at)
            self._set_state(smart, "PLAN:EXECUTING:STOPPED", t)

    def _new_plan(self, vehicle: EnodeVehicle, t: float) -> Plan:
        smart, car = vehicle.smart, vehicle.car
        deadline = smart.policy.deadline
        assert deadline is not None  # an enabled policy always has one
        plan = Plan(
            id=self.cloud.world.new_uuid(),
            vehicle_id=vehicle.id,
            user_id=vehicle.user_id,
            vendor=vehicle.vendor,
            deadline=deadline,
            deadline_at=next_deadline(t, deadline),
            energy_kwh=max(0.0, car.charge_limit - car.soc) / 100 * car.model.capacity_kwh,
            stop_at=t,
        )
        smart.plans[plan.id] = plan
        while len(smart.plans) > MAX_PLANS:
            del smart.plans[next(iter(smart.plans))]
        smart.plan = plan
        return plan

    def _confirm(self, vehicle: EnodeVehicle, plan: Plan, t: float) -> None:
        # Confirmation comes from device data, so from the cache, not from the car itself.
        cached = vehicle.snapshot["chargeState"]
        if cached["isCharging"] and plan.start_confirmed_at is None:
            plan.start_confirmed_at = t
        if cached["powerDeliveryState"] == "PLUGGED_IN:STOPPED" and plan.stop_confirmed_at is None:
            plan.stop_confirmed_at = t

    def _charge(self, vehicle: EnodeVehicle, *, on: bool, planned: bool = False) -> None:
        car = vehicle.car
        if on == car.wants_charge:
            return
        if on:
            # Planned: the plan moved this charge to its start time (the statistics' savings).
            car.start_charging(planned=planned)
        else:
            car.stop_charging()
        self.cloud.refresh_hint(vehicle.id)  # Enode looks soon to see its command took

    def _wake_at(self, vehicle: EnodeVehicle, at: float) -> None:
        vehicle.smart.wake = self.cloud.world.schedule(at, functools.partial(self._wake, vehicle))

    def _wake(self, vehicle: EnodeVehicle, t: float) -> None:
        vehicle.smart.wake = None
        if self.cloud.vehicles.get(vehicle.id) is vehicle:
            self.evaluate(vehicle, t)

    # ---- overrides and endings -------------------------------------------------------------

    def _check_override(self, vehicle: EnodeVehicle, t: float) -> None:
        override = vehicle.smart.override
        if override is None:
            return
        action = self.cloud.actions.get(override.action_id)
        cached = vehicle.snapshot["chargeState"]
        charging = cached["isCharging"] or cached["powerDeliveryState"] == "PLUGGED_IN:INITIALIZING"
        if action is None or action.state in ("FAILED", "CANCELLED"):
            self._end_override(vehicle, t)
        elif action.state == "CONFIRMED" and not charging:
            self._end_override(vehicle, t)  # the car stopped charging, whatever the reason

    def _end_override(self, vehicle: EnodeVehicle, t: float) -> Override | None:
        override = vehicle.smart.override
        if override is None:
            return None
        vehicle.smart.override = None
        override.ended_at = t
        action = self.cloud.actions.get(override.action_id)
        if action is not None and action.state == "PENDING":
            self.cloud.cancel_action(action.id)
        return override

    @staticmethod
    def _end_plan(smart: SmartState, final_state: str, t: float) -> bool:
        plan = smart.active_plan
        if plan is None:
            return False
        plan.ended_at, plan.final_state = t, final_state
        return True

    @staticmethod
    def _set_state(smart: SmartState, state: str, t: float) -> None:
        if smart.state != state:
            smart.state, smart.changed_at = state, t

    def _core(self, vehicle: EnodeVehicle) -> dict[str, Any]:
        smart = vehicle.smart
        show_plan = smart.plan is not None and smart.state.startswith("PLAN:")
        return {
            "vehicleId": vehicle.id,
            "userId": vehicle.user_id,
            "vendor": vehicle.vendor,
            "state": smart.state,
            "stateChangedAt": isoformat(smart.changed_at),
            "consideration": dict(smart.consideration) if smart.consideration else None,
            "plan": smart.plan.as_json() if show_plan and smart.plan else None,
            "smartOverride": smart.override.status_json() if smart.override else None,
        }


def _settle(old: float, new: float) -> float:
    # Estimates move by float noise at every refresh; only a real change is news.
    return old if abs(new - old) < _SETTLE_S else new


def _iso(t: float | None) -> str | None:
    return None if t is None else isoformat(t)


def _changed(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            out.extend(_changed(before, value, f"{prefix}{key}."))
        elif value != before:
            out.append(prefix + key)
    return out
