"""The Enode cloud's state and rules, with no HTTP in sight.

It holds users, vehicles, actions, link sessions and webhooks; keeps each vehicle's *cached*
view (what the API serves) apart from the car's physical truth; and refreshes that cache on
Enode's cadence: about every 7 minutes, every 2 while charging, sooner after a refresh hint.
"""

from __future__ import annotations

import bisect
import functools
import math
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from car2mqtt.clock import isoformat
from car2mqtt.errors import SimulatorError
from car2mqtt.simulator.catalog import CATALOG, VEHICLE_VENDORS, CarModel, model_for_vendor
from car2mqtt.simulator.enode.smart import (
    DEFAULT_DEADLINE,
    Override,
    Plan,
    Policy,
    SmartCharging,
    SmartState,
)
from car2mqtt.simulator.faults import Faults
from car2mqtt.simulator.physics import INIT_SECONDS, ChargeMode, ChargeSession, SimCar
from car2mqtt.simulator.world import Handle, World

API_VERSION = "2024-10-01"
TOKEN_TTL_S = 3599
LINK_TTL_S = 24 * 3600
IDLE_REFRESH_S = 7 * 60
ACTIVE_REFRESH_S = 2 * 60
HINT_DELAY_S = 10
ACTION_DELAY_S = (15.0, 45.0)
ACTION_RETRY_S = 60
ACTION_TIMEOUT_S = 15 * 60
HEARTBEAT_S = 5 * 60
WEBHOOK_BACKOFF_S = (10, 30, 90, 270, 810)
WEBHOOK_MAX_FAILURES = len(WEBHOOK_BACKOFF_S)
WEBHOOK_BATCH = 100
DEFAULT_PAGE_SIZE = 50
MAX_CURRENT = "MAX_CURRENT"  # the action kind of POST /vehicles/{id}/max-current
PROBLEM_BASE = "https://developers.enode.com/api/problems/"

VEHICLE_SCOPES = ("vehicle:read:data", "vehicle:read:location", "vehicle:control:charging")
ALL_SCOPES = (
    "battery:control:operation_mode",
    "battery:read:data",
    "battery:read:location",
    "charger:control:charging",
    "charger:read:data",
    "hvac:control:mode",
    "hvac:read:data",
    "inverter:read:data",
    "inverter:read:location",
    "meter:read:data",
    "meter:read:location",
    "vehicle:control:charging",
    "vehicle:read:data",
    "vehicle:read:location",
)
WEBHOOK_EVENTS = (
    "*",
    "user:vehicle:discovered",
    "user:vehicle:updated",
    "user:vehicle:deleted",
    "user:vehicle:smart-charging-status-updated",
    "user:charge-action:updated",
    "user:vendor-action:updated",
    "user:schedule:execution-updated",
    "user:charger:discovered",
    "user:charger:updated",
    "user:charger:deleted",
    "user:hvac:discovered",
    "user:hvac:updated",
    "user:hvac:deleted",
    "user:inverter:discovered",
    "user:inverter:updated",
    "user:inverter:deleted",
    "user:inverter:statistics-updated",
    "user:credentials:invalidated",
    "user:battery:discovered",
    "user:battery:updated",
    "user:battery:deleted",
    "enode:webhook:test",
    "user:meter:discovered",
    "user:meter:updated",
    "user:meter:deleted",
)
CAPABILITIES = (
    "information",
    "chargeState",
    "location",
    "odometer",
    "setMaxCurrent",
    "startCharging",
    "stopCharging",
    "smartCharging",
)
# Fields whose change alone is not news: timestamps move on every refresh.
_QUIET_FIELDS = frozenset(
    {"lastSeen", "chargeState.lastUpdated", "location.lastUpdated", "odometer.lastUpdated"}
)


class ApiProblem(SimulatorError):
    """An error the API answers with an `application/problem+json` body."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        issues: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.issues = issues
        # Some errors (409 on cancel) answer with a resource rather than a problem.
        self.body = body

    def payload(self) -> dict[str, Any]:
        """Return the RFC 7807 body."""
        out: dict[str, Any] = {"type": PROBLEM_BASE + self.slug, "title": self.title}
        out["detail"] = self.detail
        if self.issues is not None:
            out["issues"] = self.issues
        return out


def not_found(what: str, ident: str) -> ApiProblem:
    """Return the problem for an unknown resource."""
    return ApiProblem(404, "not-found", "Not Found", f"{what} {ident} was not found.")


def bad_request(detail: str, issues: list[dict[str, Any]] | None = None) -> ApiProblem:
    """Return the problem for a request that breaks the API's rules."""
    return ApiProblem(400, "bad-request", "Bad Request", detail, issues)


class OAuthError(SimulatorError):
    """An OAuth token endpoint error, answered as `{"error", "error_description"}`."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


@dataclass(slots=True)
class EnodeUser:
    """An end user of the Enode client, with the vendor accounts they linked."""

    id: str
    seq: int
    created_at: float
    scopes: list[str] = field(default_factory=list)
    vendors: dict[str, bool] = field(default_factory=dict)  # vendor -> credentials valid
    authorized: bool = True

    def as_json(self) -> dict[str, Any]:
        """Return the API's user list item."""
        return {"id": self.id, "createdAt": isoformat(self.created_at), "scopes": self.scopes}


@dataclass(slots=True)
class EnodeVehicle:
    """A linked vehicle: the physical car plus Enode's cached view of it."""

    id: str
    seq: int
    user_id: str
    car: SimCar
    scopes: list[str]
    created_at: float
    display_name: str | None
    vin: str
    smart: SmartState
    intervention_ids: list[str] = field(default_factory=list)
    snapshot: dict[str, Any] = field(default_factory=dict)
    refresh_handle: Handle | None = None
    refreshes: int = 0

    @property
    def vendor(self) -> str:
        """The vendor Enode reports."""
        return self.car.model.vendor

    @property
    def smart_charging(self) -> bool:
        """Whether smart charging controls the vehicle."""
        return self.smart.policy.enabled

    def capable(self, capability: str) -> bool:
        """Whether the cached view says the vehicle can do `capability`."""
        return bool(self.snapshot["capabilities"][capability]["isCapable"])


@dataclass(slots=True)
class Action:
    """A command Enode carries out for a client: START, STOP or MAX_CURRENT."""

    id: str
    user_id: str
    vehicle_id: str
    kind: str
    created_at: float
    updated_at: float
    target_current: float | None = None  # MAX_CURRENT only
    state: str = "PENDING"
    completed_at: float | None = None
    failure: tuple[str, str] | None = None
    executed: bool = False

    def as_json(self) -> dict[str, Any]:
        """Return the API's Charge Action or Max Current Action object."""
        out: dict[str, Any] = {
            "id": self.id,
            "userId": self.user_id,
            "createdAt": isoformat(self.created_at),
            "updatedAt": isoformat(self.updated_at),
            "completedAt": isoformat(self.completed_at) if self.completed_at else None,
            "state": self.state,
            "targetId": self.vehicle_id,
            "targetType": "vehicle",
        }
        if self.kind == MAX_CURRENT:
            out["targetState"] = {"maxCurrent": self.target_current}
        else:
            out["kind"] = self.kind
        out["failureReason"] = (
            {"type": self.failure[0], "detail": self.failure[1]} if self.failure else None
        )
        return out


@dataclass(slots=True)
class LinkSession:
    """A single-use Link UI session."""

    id: str
    link_token: str
    user_id: str
    scopes: list[str]
    language: str
    redirect_uri: str
    created_at: float
    vendor: str | None = None
    logged_in_as: str | None = None
    used: bool = False


@dataclass(slots=True, eq=False)
class Queued:
    """An event waiting for delivery to one webhook, with its own retry schedule."""

    event: dict[str, Any]
    attempts: int = 0
    next_attempt: float = 0.0
    retry: bool = True  # a heartbeat is never retried: a newer one follows


@dataclass(slots=True)
class Webhook:
    """A client's webhook subscription and its delivery queue."""

    id: str
    seq: int
    url: str
    secret: str
    events: list[str]
    api_version: str | None
    auth_header: tuple[str, str] | None
    created_at: float
    is_active: bool = True
    last_success: float | None = None
    failures: int = 0  # deliveries that failed in a row
    outbox: deque[Queued] = field(default_factory=deque)

    def wants(self, event: str) -> bool:
        """Whether this webhook subscribed to `event`."""
        return "*" in self.events or event in self.events

    def as_json(self) -> dict[str, Any]:
        """Return the API's Webhook object."""
        # The spec requires a date-time here even before any success; we report the
        # creation time until the first delivery succeeds.
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "lastSuccess": isoformat(self.last_success or self.created_at),
            "isActive": self.is_active,
            "createdAt": isoformat(self.created_at),
            "apiVersion": self.api_version,
            "authentication": {"headerName": self.auth_header[0]} if self.auth_header else None,
        }


class EnodeCloud:
    """Everything the simulated Enode knows, and the rules it plays by."""

    def __init__(
        self,
        world: World,
        *,
        client_id: str,
        client_secret: str,
        faults: Faults | None = None,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.world = world
        self.client_id = client_id
        self.client_secret = client_secret
        self.faults = faults or Faults()
        self.tokens: dict[str, float] = {}
        self.users: dict[str, EnodeUser] = {}
        self.vehicles: dict[str, EnodeVehicle] = {}
        self._seqs: list[int] = []  # ascending creation order; pages run newest first
        self._by_seq: dict[int, EnodeVehicle] = {}
        self._user_seqs: dict[str, list[int]] = {}
        self._next_seq = 0
        self.actions: dict[str, Action] = {}
        self.smart = SmartCharging(self)
        self._pending: dict[str, str] = {}  # vehicle id -> pending action id
        self.links: dict[str, LinkSession] = {}
        self.webhooks: dict[str, Webhook] = {}
        self.on_webhook_event: Callable[[], None] = lambda: None
        # Enode's delivery side down (an admin switch): events queue up, nothing is sent.
        self.webhooks_paused = False
        self.api_calls = 0
        self._heartbeat_s = heartbeat_s
        if heartbeat_s > 0:
            world.schedule(world.now() + heartbeat_s, self._heartbeat)

    def _seq(self) -> int:
        self._next_seq += 1
        return self._next_seq

    # ---- OAuth -------------------------------------------------------------------------------

    def issue_token(self, client_id: str | None, client_secret: str | None) -> dict[str, Any]:
        """Grant a client-credentials token, or raise `OAuthError`."""
        if not client_id or not client_secret:
            raise OAuthError(401, "invalid_client", "Client authentication failed.")
        id_ok = secrets.compare_digest(client_id.encode(), self.client_id.encode())
        secret_ok = secrets.compare_digest(client_secret.encode(), self.client_secret.encode())
        if not (id_ok and secret_ok):
            raise OAuthError(401, "invalid_client", "Client authentication failed.")
        now = self.world.now()
        self.tokens = {t: exp for t, exp in self.tokens.items() if exp > now}
        token = self.world.new_token(32)
        self.tokens[token] = now + TOKEN_TTL_S
        return {
            "access_token": token,
            "expires_in": TOKEN_TTL_S,
            "scope": "",
            "token_type": "bearer",
        }

    def token_valid(self, token: str) -> bool:
        """Whether `token` is a live access token."""
        expires = self.tokens.get(token)
        return expires is not None and expires > self.world.now()

    def revoke_tokens(self) -> int:
        """Invalidate every access token (the 'regenerate secret' moment); return how many."""
        count = len(self.tokens)
        self.tokens.clear()
        return count

    # ---- users -------------------------------------------------------------------------------

    def ensure_user(self, user_id: str) -> EnodeUser:
        """Return the user, creating it on first mention, as Enode does."""
        user = self.users.get(user_id)
        if user is None:
            user = EnodeUser(user_id, self._seq(), self.world.now(), scopes=list(VEHICLE_SCOPES))
            self.users[user_id] = user
        return user

    def user(self, user_id: str) -> EnodeUser:
        """Return a known user or raise a 404 problem."""
        user = self.users.get(user_id)
        if user is None:
            raise not_found("User", user_id)
        return user

    def user_vehicles(self, user_id: str) -> list[EnodeVehicle]:
        """Return the user's vehicles, newest first."""
        return [self._by_seq[s] for s in reversed(self._user_seqs.get(user_id, []))]

    def delete_user(self, user_id: str) -> None:
        """Delete a user and all their data."""
        self.user(user_id)
        for vehicle in self.user_vehicles(user_id):
            self.remove_vehicle(vehicle.id)
        del self.users[user_id]
        self._user_seqs.pop(user_id, None)

    def deauthorize_user(self, user_id: str) -> None:
        """Drop the user's vendor credentials but keep their data; no more events for them."""
        user = self.user(user_id)
        user.authorized = False
        user.vendors.clear()

    def invalidate_credentials(self, user_id: str, vendor: str | None = None) -> list[str]:
        """Make the vendor account credentials stop working; return the affected vendors."""
        user = self.user(user_id)
        vendors = [vendor] if vendor else [v for v, ok in user.vendors.items() if ok]
        if vendor and vendor not in user.vendors:
            msg = f"user {user_id} has not linked {vendor}"
            raise SimulatorError(msg)
        now = self.world.now()
        for name in vendors:
            user.vendors[name] = False
            intervention = self.world.new_uuid()
            for vehicle in self.user_vehicles(user_id):
                if vehicle.vendor == name:
                    vehicle.intervention_ids = [intervention]
                    self._refresh(vehicle, now)
            self.emit(
                user,
                "user:credentials:invalidated",
                {"vendor": name},
            )
        return vendors

    # ---- vehicles ----------------------------------------------------------------------------

    def add_vehicle(
        self,
        user_id: str,
        model: CarModel,
        *,
        scopes: Iterable[str] = VEHICLE_SCOPES,
        display_name: str | None = None,
        home_city: int | None = None,
        prepare: Callable[[SimCar], None] | None = None,
    ) -> EnodeVehicle:
        """Link a new vehicle to a user and announce it (`prepare` sets its state up first)."""
        user = self.ensure_user(user_id)
        user.vendors[model.vendor] = True
        user.authorized = True
        now = self.world.now()
        vehicle = EnodeVehicle(
            id=self.world.new_uuid(),
            seq=self._seq(),
            user_id=user_id,
            car=self.world.new_car(model, home_city=home_city),
            scopes=sorted(set(scopes)),
            created_at=now,
            display_name=display_name,
            vin=self.world.new_vin(model.vendor),
            smart=SmartState(now, now),
        )
        self.vehicles[vehicle.id] = vehicle
        self._seqs.append(vehicle.seq)
        self._user_seqs.setdefault(user_id, []).append(vehicle.seq)
        self._by_seq[vehicle.seq] = vehicle
        if prepare is not None:
            prepare(vehicle.car)
        self._refresh(vehicle, now, announce=False)
        self.emit(user, "user:vehicle:discovered", {"vehicle": vehicle.snapshot})
        return vehicle

    def add_demo_vehicles(self, user_id: str, count: int) -> list[EnodeVehicle]:
        """Link `count` vehicles of varied vendors and states to `user_id`."""
        out = []
        for i in range(count):
            # The first four cover the vendor quirks: Tesla, VW, XPENG (no odometer), Kia
            # (no charge control). The rest come from the seeded stream.
            model = CATALOG[i] if i < 4 else self.world.physics.choice(CATALOG)
            out.append(
                self.add_vehicle(
                    user_id,
                    model,
                    home_city=i % 5 if i < 4 else None,
                    prepare=functools.partial(self._demo_state, i % 4),
                )
            )
        return out

    def _demo_state(self, kind: int, car: SimCar) -> None:
        if kind == 1:
            car.soc = min(car.soc, car.charge_limit - 25)
            car.plug_in(start_charging=True)
        elif kind == 2:
            car.start_drive(self.world.new_route(car), 45.0, 25.0)

    def vehicle(self, vehicle_id: str) -> EnodeVehicle:
        """Return a known vehicle or raise a 404 problem."""
        vehicle = self.vehicles.get(vehicle_id)
        if vehicle is None:
            raise not_found("Vehicle", vehicle_id)
        return vehicle

    def remove_vehicle(self, vehicle_id: str) -> None:
        """Unlink a vehicle and announce it."""
        vehicle = self.vehicle(vehicle_id)
        self.smart.forget(vehicle)
        if vehicle.refresh_handle is not None:
            vehicle.refresh_handle.cancel()
        pending = self._pending.pop(vehicle_id, None)
        if pending:
            self._finish(
                self.actions[pending], "CANCELLED", ("NOT_FOUND", "The vehicle was removed.")
            )
        del self.vehicles[vehicle_id]
        self._seqs.remove(vehicle.seq)
        self._user_seqs[vehicle.user_id].remove(vehicle.seq)
        del self._by_seq[vehicle.seq]
        user = self.users.get(vehicle.user_id)
        if user is not None:
            self.emit(user, "user:vehicle:deleted", {"vehicle": vehicle.snapshot})

    def page_vehicles(
        self, user_id: str | None, page_size: int, after: str | None, before: str | None
    ) -> dict[str, Any]:
        """Return one page of vehicles (all, or one user's), newest first."""
        if user_id is None:
            seqs = self._seqs
        else:
            self.user(user_id)
            seqs = self._user_seqs.get(user_id, [])
        items, prev_cursor, next_cursor = paginate(seqs, page_size, after, before)
        return {
            "data": [self._by_seq[s].snapshot for s in items],
            "pagination": {"after": next_cursor, "before": prev_cursor},
        }

    def charge_sessions(
        self, user_id: str, device_type: str, device_id: str | None, location_id: str | None
    ) -> list[tuple[str, ChargeSession]]:
        """Return (vehicle id, session) for the user's devices of `device_type`, up to now."""
        self.user(user_id)
        if location_id is not None:
            raise not_found("Location", location_id)  # the simulator has no locations
        if device_type != "vehicle":  # nor chargers, nor HVACs
            if device_id is not None:
                raise not_found(device_type.capitalize(), device_id)
            return []
        vehicles = self.user_vehicles(user_id)
        if device_id is not None:
            vehicles = [v for v in vehicles if v.id == device_id]
            if not vehicles:
                raise not_found("Vehicle", device_id)
        now = self.world.now()
        out: list[tuple[str, ChargeSession]] = []
        for vehicle in vehicles:
            # Enode reads its statistics from the energy the car took: a running session to now.
            vehicle.car.advance(now)
            out.extend((vehicle.id, session) for session in vehicle.car.charge_sessions())
        return out

    # ---- the cache ---------------------------------------------------------------------------

    def _refresh(self, vehicle: EnodeVehicle, t: float, *, announce: bool = True) -> None:
        """Copy the car's truth into the cache, as Enode's poll of the vendor does."""
        if vehicle.refresh_handle is not None:
            vehicle.refresh_handle.cancel()
        car = vehicle.car
        car.advance(t)
        user = self.users.get(vehicle.user_id)
        reachable = self.reachable(vehicle)
        old = vehicle.snapshot
        if reachable or not old:
            new = build_vehicle_json(vehicle, t, old)
            if not reachable:
                new["isReachable"] = False
        else:
            new = {**old, "isReachable": False, "capabilities": capabilities_json(vehicle)}
        vehicle.snapshot = new
        vehicle.refreshes += 1
        self._confirm_actions(vehicle, t)
        active = car.charge_mode() in (ChargeMode.CHARGING, ChargeMode.INITIALIZING)
        cadence = ACTIVE_REFRESH_S if active else IDLE_REFRESH_S
        jitter = self.world.physics.uniform(-0.1, 0.1) * cadence
        vehicle.refresh_handle = self.world.schedule(
            t + cadence + jitter, functools.partial(self._refresh, vehicle)
        )
        if announce and old and user is not None and self._has_listener("user:vehicle:updated"):
            changed = changed_fields(old, new)
            if changed:
                self.emit(
                    user,
                    "user:vehicle:updated",
                    {"vehicle": new, "updatedFields": changed},
                )
        self.smart.evaluate(vehicle, t)

    def reachable(self, vehicle: EnodeVehicle) -> bool:
        """Whether Enode can reach the car through its vendor now."""
        user = self.users.get(vehicle.user_id)
        return (
            vehicle.car.reachable
            and not self.faults.vendor_down(vehicle.vendor)
            and user is not None
            and user.authorized
            and user.vendors.get(vehicle.vendor, False)
        )

    def refresh_hint(self, vehicle_id: str) -> None:
        """Bring the vehicle's next cache refresh forward."""
        vehicle = self.vehicle(vehicle_id)
        self._schedule_refresh(vehicle, self.world.now() + HINT_DELAY_S)

    def force_refresh(self, vehicle_id: str) -> EnodeVehicle:
        """Refresh the cache now (an admin shortcut for tests and demos)."""
        vehicle = self.vehicle(vehicle_id)
        self._refresh(vehicle, self.world.now())
        return vehicle

    def _schedule_refresh(self, vehicle: EnodeVehicle, at: float) -> None:
        handle = vehicle.refresh_handle
        if handle is not None and handle.at <= at:
            return
        if handle is not None:
            handle.cancel()
        vehicle.refresh_handle = self.world.schedule(at, functools.partial(self._refresh, vehicle))

    # ---- charging actions --------------------------------------------------------------------

    def charge(self, vehicle_id: str, kind: str) -> Action:
        """Create (or reuse) a START or STOP charging action, applying the API's preconditions."""
        vehicle = self.vehicle(vehicle_id)
        capability = "startCharging" if kind == "START" else "stopCharging"
        if not vehicle.capable(capability):
            raise bad_request(f"Vehicle {vehicle_id} is not capable of {capability}.")
        if vehicle.smart_charging:
            raise ApiProblem(
                422,
                "unprocessable-entity",
                "Unprocessable Entity",
                "The vehicle is controlled by Smart Charging; disable it or use smart-override.",
            )
        self._check_vendor_up(vehicle)
        pending = self.actions.get(self._pending.get(vehicle_id, ""))
        if pending is None or pending.kind == MAX_CURRENT:
            self._check_charge_precondition(vehicle, kind)
        return self.create_action(vehicle, kind)

    def set_max_current(self, vehicle_id: str, amperes: float) -> Action:
        """Create (or reuse) an action that sets the car's charging current limit."""
        vehicle = self.vehicle(vehicle_id)
        if not vehicle.capable("setMaxCurrent"):
            raise bad_request(f"Vehicle {vehicle_id} is not capable of setMaxCurrent.")
        highest = vehicle.car.model.max_current_a
        if amperes > highest:
            # Our guess: a car that cannot draw this much can never confirm it.
            raise bad_request(f"The vehicle draws at most {highest:g} A; {amperes:g} A asked.")
        self._check_vendor_up(vehicle)
        return self.create_action(vehicle, MAX_CURRENT, amperes)

    def create_action(
        self, vehicle: EnodeVehicle, kind: str, target_current: float | None = None
    ) -> Action:
        """Start an action; an identical pending one is reused, any other is cancelled."""
        now = self.world.now()
        pending_id = self._pending.get(vehicle.id)
        if pending_id is not None:
            pending = self.actions[pending_id]
            if pending.kind == kind and pending.target_current == target_current:
                return pending
            detail = f"Superseded by a newer {kind} action."
            self._finish(pending, "CANCELLED", ("CONFLICT", detail))
        action = Action(
            self.world.new_uuid(), vehicle.user_id, vehicle.id, kind, now, now, target_current
        )
        self.actions[action.id] = action
        self._pending[vehicle.id] = action.id
        delay = self.world.physics.uniform(*ACTION_DELAY_S)
        self.world.schedule(now + delay, lambda t: self._execute(action, t))
        self.world.schedule(now + ACTION_TIMEOUT_S, lambda t: self._time_out(action, t))
        self._announce_action(action, [])
        return action

    def _check_vendor_up(self, vehicle: EnodeVehicle) -> None:
        if self.faults.vendor_down(vehicle.vendor):
            raise ApiProblem(
                503,
                "vendor-temporarily-unavailable",
                "Vendor temporarily unavailable",
                f"{vehicle.vendor} is not responding; try again later.",
            )

    def _check_charge_precondition(self, vehicle: EnodeVehicle, kind: str) -> None:
        state = vehicle.snapshot["chargeState"]
        if kind == "START":
            if not state["isPluggedIn"]:
                raise bad_request("The vehicle is not plugged in.")
            if state["isCharging"] or state["powerDeliveryState"] == "PLUGGED_IN:INITIALIZING":
                raise bad_request("The vehicle is already charging.")
            if state["isFullyCharged"]:
                raise bad_request("The vehicle is fully charged.")
        elif not state["isCharging"] and state["powerDeliveryState"] != "PLUGGED_IN:INITIALIZING":
            raise bad_request("The vehicle is not charging.")

    def action(self, action_id: str) -> Action:
        """Return a known action or raise a 404 problem."""
        action = self.actions.get(action_id)
        if action is None:
            raise not_found("Action", action_id)
        return action

    def cancel_action(self, action_id: str) -> Action:
        """Cancel a pending action; 409 with the action once it is resolved."""
        action = self.action(action_id)
        if action.state != "PENDING":
            raise ApiProblem(
                409,
                "conflict",
                "Conflict",
                "The action is already resolved.",
                body=action.as_json(),
            )
        self._finish(action, "CANCELLED", ("REQUESTED_CANCELLATION", "Cancelled by the client."))
        return action

    def _execute(self, action: Action, t: float) -> None:
        if action.state != "PENDING":
            return
        vehicle = self.vehicles.get(action.vehicle_id)
        if vehicle is None:
            return
        car = vehicle.car
        car.advance(t)
        user = self.users.get(vehicle.user_id)
        if (
            not car.reachable
            or self.faults.vendor_down(vehicle.vendor)
            or user is None
            or not user.vendors.get(vehicle.vendor, False)
        ):
            # Enode keeps trying an unreachable car until the action times out.
            self.world.schedule(t + ACTION_RETRY_S, lambda when: self._execute(action, when))
            return
        settle = INIT_SECONDS
        if action.kind == "START":
            if not car.plugged:
                self._finish(action, "CANCELLED", ("FAILED_PRECONDITION", "Vehicle is unplugged."))
                return
            if car.soc >= car.charge_limit:
                self._finish(action, "CANCELLED", ("FAILED_PRECONDITION", "Vehicle is full."))
                return
            car.start_charging()
        elif action.kind == MAX_CURRENT:
            assert action.target_current is not None
            car.set_max_current(action.target_current)
            settle = 0.0
        else:
            car.stop_charging()
        action.executed = True
        # Enode confirms from device data, so it looks again once the charger settles.
        self._schedule_refresh(vehicle, t + settle + HINT_DELAY_S)

    def _confirm_actions(self, vehicle: EnodeVehicle, t: float) -> None:
        action_id = self._pending.get(vehicle.id)
        if action_id is None:
            return
        action = self.actions[action_id]
        if not action.executed or not vehicle.snapshot.get("isReachable"):
            return
        charge_state = vehicle.snapshot["chargeState"]
        if action.kind == MAX_CURRENT:
            if charge_state["maxCurrent"] == action.target_current:
                self._finish(action, "CONFIRMED", None, at=t)
            return
        delivery = charge_state["powerDeliveryState"]
        charging = delivery in ("PLUGGED_IN:CHARGING", "PLUGGED_IN:COMPLETE")
        if (action.kind == "START") == charging:
            self._finish(action, "CONFIRMED", None, at=t)

    def _time_out(self, action: Action, t: float) -> None:
        if action.state == "PENDING":
            self._finish(action, "FAILED", ("NO_RESPONSE", "The vehicle did not respond."), at=t)

    def _finish(
        self,
        action: Action,
        state: str,
        failure: tuple[str, str] | None,
        at: float | None = None,
    ) -> None:
        when = self.world.now() if at is None else at
        action.state, action.failure = state, failure
        action.updated_at = action.completed_at = when
        if self._pending.get(action.vehicle_id) == action.id:
            del self._pending[action.vehicle_id]
        changed = ["state", "updatedAt", "completedAt"]
        self._announce_action(action, [*changed, "failureReason"] if failure else changed)
        self.smart.action_finished(action)

    def _announce_action(self, action: Action, updated_fields: list[str]) -> None:
        user = self.users.get(action.user_id)
        if user is not None:
            self.emit(
                user,
                "user:vendor-action:updated",
                {"vendorAction": action.as_json(), "updatedFields": updated_fields},
            )

    # ---- smart charging ----------------------------------------------------------------------

    def update_smart_policy(
        self,
        vehicle_id: str,
        *,
        enabled: bool | None = None,
        deadline: str | None = None,
        minimum: float | None = None,
        default_deadline: bool = False,
    ) -> Policy:
        """Change any part of a smart charging policy under the API's rules; return it whole."""
        vehicle = self.vehicle(vehicle_id)
        old = vehicle.smart.policy
        policy = Policy(
            old.enabled if enabled is None else enabled,
            old.deadline if deadline is None else deadline,
            old.minimum if minimum is None else minimum,
        )
        if policy.enabled and not vehicle.capable("smartCharging"):
            raise bad_request(f"Vehicle {vehicle_id} is not capable of smartCharging.")
        if minimum is not None:
            limit = vehicle.snapshot["chargeState"]["chargeLimit"]
            if minimum < 0 or (limit is not None and minimum > limit):
                raise bad_request(
                    f"minimumChargeLimit must be at least 0 and at most the vehicle's charge "
                    f"limit ({limit} %); got {minimum}."
                )
        if policy.enabled and policy.deadline is None:
            if not default_deadline:
                raise ApiProblem(
                    400,
                    "bad-request",
                    "Cannot activate smart charging",
                    "Smart charging needs a deadline; send one with isEnabled.",
                )
            policy = replace(policy, deadline=DEFAULT_DEADLINE)
        # The policy is Enode's own setting: the vehicle shows it at once, not at a refresh.
        before = vehicle.snapshot
        vehicle.snapshot = {**before, "smartChargingPolicy": policy.as_json()}
        changed = changed_fields(before, vehicle.snapshot)
        user = self.users.get(vehicle.user_id)
        if changed and user is not None:
            self.emit(
                user,
                "user:vehicle:updated",
                {"vehicle": vehicle.snapshot, "updatedFields": changed},
            )
        self.smart.set_policy(vehicle, policy)
        return policy

    def smart_override(self, vehicle_id: str) -> Override:
        """Force charging now over smart charging; return the active override."""
        vehicle = self.vehicle(vehicle_id)
        if not vehicle.smart_charging:
            raise bad_request("There is no smart feature to override: smart charging is disabled.")
        if not vehicle.capable("startCharging"):
            raise bad_request(f"Vehicle {vehicle_id} is not capable of startCharging.")
        self._check_vendor_up(vehicle)
        if vehicle.smart.override is None:
            state = vehicle.snapshot["chargeState"]
            if not state["isPluggedIn"]:
                raise bad_request("The vehicle is not plugged in.")
            if state["isFullyCharged"]:
                raise bad_request("The vehicle is fully charged.")
        return self.smart.start_override(vehicle)

    def end_smart_override(self, vehicle_id: str) -> Override:
        """End the active smart override, or raise a 404 problem when there is none."""
        override = self.smart.end_override(self.vehicle(vehicle_id))
        if override is None:
            raise ApiProblem(
                404, "not-found", "Not Found", f"Vehicle {vehicle_id} has no active smart override."
            )
        return override

    def smart_plan(self, vehicle_id: str, plan_id: str) -> Plan:
        """Return one of the vehicle's smart charging plans ('latest': the newest)."""
        plans = self.vehicle(vehicle_id).smart.plans
        plan = next(reversed(plans.values()), None) if plan_id == "latest" else plans.get(plan_id)
        if plan is None:
            raise not_found("Smart Charging Plan", plan_id)
        return plan

    # ---- link sessions -----------------------------------------------------------------------

    def create_link(
        self,
        user_id: str,
        *,
        scopes: list[str],
        language: str,
        redirect_uri: str,
        vendor: str | None,
    ) -> LinkSession:
        """Start a Link UI session for `user_id`."""
        self.ensure_user(user_id)
        session = LinkSession(
            id=self.world.new_token(16),
            link_token=self.world.new_token(32),
            user_id=user_id,
            scopes=scopes,
            language=language,
            redirect_uri=redirect_uri,
            created_at=self.world.now(),
            vendor=vendor,
        )
        self.links[session.id] = session
        return session

    def link_session(self, session_id: str) -> LinkSession:
        """Return a usable session, or raise when it is unknown, used or expired."""
        session = self.links.get(session_id)
        if session is None:
            msg = "This link session does not exist."
            raise SimulatorError(msg)
        if session.used:
            msg = "This link session has already been used. Ask the app for a new link."
            raise SimulatorError(msg)
        if self.world.now() >= session.created_at + LINK_TTL_S:
            msg = "This link session has expired (sessions last 24 hours). Ask for a new link."
            raise SimulatorError(msg)
        return session

    def complete_link(self, session: LinkSession) -> list[EnodeVehicle]:
        """Finish a session: the vendor account's vehicles appear for the user."""
        assert session.vendor is not None
        session.used = True
        user = self.ensure_user(session.user_id)
        user.scopes = sorted(set(user.scopes) | set(session.scopes))
        existing = [v for v in self.user_vehicles(user.id) if v.vendor == session.vendor]
        if existing:
            # A relink repairs the credentials; the same vehicles stay.
            user.vendors[session.vendor] = True
            user.authorized = True
            for vehicle in existing:
                vehicle.intervention_ids = []
                vehicle.scopes = sorted(set(session.scopes))
                self._refresh(vehicle, self.world.now())
            return existing
        count = 1 + (self.world.physics.random() < 0.3)
        return [
            self.add_vehicle(
                user.id,
                model_for_vendor(session.vendor, self.world.physics.randrange(8)),
                scopes=[s for s in session.scopes if s.startswith("vehicle:")],
            )
            for _ in range(count)
        ]

    def cancel_link(self, session: LinkSession) -> None:
        """Abandon a session."""
        session.used = True

    # ---- webhooks ----------------------------------------------------------------------------

    def add_webhook(
        self,
        url: str,
        secret: str,
        events: list[str],
        api_version: str | None,
        auth_header: tuple[str, str] | None,
    ) -> Webhook:
        """Subscribe a webhook URL."""
        if any(w.url == url for w in self.webhooks.values()):
            raise ApiProblem(400, "bad-request", "Webhook already exists", f"{url} is taken.")
        webhook = Webhook(
            id=self.world.new_uuid(),
            seq=self._seq(),
            url=url,
            secret=secret,
            events=events,
            api_version=api_version,
            auth_header=auth_header,
            created_at=self.world.now(),
        )
        self.webhooks[webhook.id] = webhook
        return webhook

    def webhook(self, webhook_id: str) -> Webhook:
        """Return a known webhook or raise a 404 problem."""
        webhook = self.webhooks.get(webhook_id)
        if webhook is None:
            raise ApiProblem(
                404, "not-found", "Webhook not found", f"Could not find webhook {webhook_id}"
            )
        return webhook

    def _has_listener(self, event: str) -> bool:
        return any(w.is_active and w.wants(event) for w in self.webhooks.values())

    def emit(self, user: EnodeUser, event: str, fields: dict[str, Any]) -> None:
        """Queue an event for every active webhook that wants it."""
        if not user.authorized and event != "user:credentials:invalidated":
            return  # Enode sends nothing for a deauthorized user.
        payload: dict[str, Any] | None = None
        for webhook in self.webhooks.values():
            if webhook.is_active and webhook.wants(event):
                if payload is None:
                    payload = {
                        "createdAt": isoformat(self.world.now()),
                        "version": API_VERSION,
                        "user": {"id": user.id},
                        "event": event,
                        **fields,
                    }
                webhook.outbox.append(Queued(payload))
        if payload is not None:
            self.on_webhook_event()

    def _heartbeat(self, t: float) -> None:
        # Our reading (the docs say only "periodic heartbeat events"): every active webhook
        # that is not failing gets one, whatever its event filter (it cannot be subscribed
        # to), never while deliveries are paused, never retried, never queued twice.
        for webhook in self.webhooks.values():
            if not webhook.is_active or webhook.failures or self.webhooks_paused:
                continue
            if any(not q.retry for q in webhook.outbox):
                continue
            pending = len(webhook.outbox)
            event = {
                "createdAt": isoformat(t),
                "version": API_VERSION,
                "event": "system:heartbeat",
                "pendingEvents": pending,
            }
            webhook.outbox.append(Queued(event, retry=False))
        self.on_webhook_event()
        self.world.schedule(t + self._heartbeat_s, self._heartbeat)

    # ---- health ------------------------------------------------------------------------------

    def vehicle_health(self) -> list[dict[str, Any]]:
        """Return the status of every vehicle vendor."""
        out = []
        for vendor, name in VEHICLE_VENDORS.items():
            status = "OUTAGE" if self.faults.vendor_down(vendor) else "READY"
            out.append(
                {
                    "vendor": vendor,
                    "displayName": name,
                    "status": status,
                    "portalName": name,
                    "linkingStatus": status,
                }
            )
        return out


# ---- wire shapes -----------------------------------------------------------------------------


def capabilities_json(vehicle: EnodeVehicle) -> dict[str, Any]:
    """Return the vehicle's capabilities, with any interventions blocking them."""
    model = vehicle.car.model
    blocked = vehicle.intervention_ids
    can_control = model.controllable and "vehicle:control:charging" in vehicle.scopes
    capable = {
        "information": True,
        "chargeState": True,
        "location": "vehicle:read:location" in vehicle.scopes,
        "odometer": model.reports_odometer,
        # Enode's spec: "currently only supported for Tesla vehicles".
        "setMaxCurrent": can_control and model.vendor == "TESLA",
        "startCharging": can_control,
        "stopCharging": can_control,
        "smartCharging": can_control,
    }
    return {
        name: {
            "isCapable": capable[name] and not blocked,
            "interventionIds": list(blocked),
        }
        for name in CAPABILITIES
    }


def build_vehicle_json(vehicle: EnodeVehicle, t: float, old: dict[str, Any]) -> dict[str, Any]:
    """Return the API's Vehicle object for the car's state at time `t`."""
    car = vehicle.car
    model = car.model
    stamp = isoformat(t)
    mode = car.charge_mode()
    charging = mode is ChargeMode.CHARGING
    delivery = "UNPLUGGED" if mode is ChargeMode.UNPLUGGED else f"PLUGGED_IN:{mode.value}"
    location: dict[str, Any] = {"id": None, "longitude": None, "latitude": None}
    location["lastUpdated"] = None
    if "vehicle:read:location" in vehicle.scopes:
        if car.driving and not model.location_while_driving and old:
            location = dict(old["location"])
        else:
            location.update(longitude=round(car.lon, 6), latitude=round(car.lat, 6))
            location["lastUpdated"] = stamp
    odometer = {"distance": round(car.odometer_km, 1), "lastUpdated": stamp}
    if not model.reports_odometer:
        odometer = {"distance": None, "lastUpdated": None}
    return {
        "id": vehicle.id,
        "userId": vehicle.user_id,
        "vendor": model.vendor,
        "lastSeen": stamp,
        "isReachable": True,
        "information": {
            "vin": vehicle.vin,
            "brand": model.brand,
            "model": model.model,
            "year": model.year,
            "displayName": vehicle.display_name,
        },
        "chargeState": {
            "batteryLevel": round(car.soc),
            "range": round(car.range_km),
            "isPluggedIn": car.plugged,
            "isCharging": charging,
            "isFullyCharged": car.soc >= car.charge_limit - 1e-9,
            "batteryCapacity": model.capacity_kwh,
            "chargeLimit": car.charge_limit,
            "chargeRate": round(car.charge_power_kw(), 1) if charging else None,
            "chargeTimeRemaining": math.ceil(car.minutes_to_complete()) if charging else None,
            "lastUpdated": stamp,
            "maxCurrent": car.current_limit_a,
            "powerDeliveryState": delivery,
            "pluggedInChargerId": None,
        },
        "smartChargingPolicy": vehicle.smart.policy.as_json(),
        "location": location,
        "odometer": odometer,
        "capabilities": capabilities_json(vehicle),
        "scopes": list(vehicle.scopes),
    }


def changed_fields(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Return the dotted paths whose values differ, leaving out timestamp-only changes."""
    out: list[str] = []
    for key, value in new.items():
        path = f"{prefix}{key}"
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict) and key != "capabilities":
            out.extend(changed_fields(before, value, path + "."))
        elif value != before and path not in _QUIET_FIELDS:
            out.append(path)
    return out


def paginate(
    seqs: list[int], page_size: int, after: str | None, before: str | None
) -> tuple[list[int], str | None, str | None]:
    """Page ascending `seqs` newest first; return (page, before-cursor, after-cursor)."""
    if after is not None and before is not None:
        raise bad_request("Send either 'after' or 'before', not both.")
    if after is not None:
        end = bisect.bisect_left(seqs, decode_cursor(after))  # items older than the cursor
        start = max(0, end - page_size)
    elif before is not None:
        start = bisect.bisect_right(seqs, decode_cursor(before))  # items newer than the cursor
        end = min(len(seqs), start + page_size)
    else:
        end = len(seqs)
        start = max(0, end - page_size)
    page = list(reversed(seqs[start:end]))
    newer = encode_cursor(page[0]) if page and end < len(seqs) else None
    older = encode_cursor(page[-1]) if page and start > 0 else None
    return page, newer, older


def encode_cursor(seq: int) -> str:
    """Return an opaque cursor for a position in creation order."""
    return f"c{seq:x}".encode().hex()


def decode_cursor(cursor: str) -> int:
    """Return the position an opaque cursor stands for, or raise a 400 problem."""
    try:
        text = bytes.fromhex(cursor).decode()
        if not text.startswith("c"):
            raise ValueError(cursor)
        return int(text[1:], 16)
    except ValueError:
        raise bad_request(f"Invalid pagination cursor {cursor!r}.") from None
