"""The simulator's admin API under `/admin`: drive scenarios and faults. Not part of any cloud.

Changes act on the cars' physical truth. Like the real Enode, the API only shows them after its
next cache refresh; `POST /admin/enode/vehicles/{id}/refresh` forces one.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from car2mqtt.clock import isoformat
from car2mqtt.errors import SimulatorError
from car2mqtt.simulator.catalog import VEHICLE_VENDORS, model_for_vendor
from car2mqtt.simulator.enode.cloud import ApiProblem, EnodeVehicle
from car2mqtt.simulator.enode.smart import DEADLINE_PATTERN
from car2mqtt.simulator.faults import Faults, faults_from_json
from car2mqtt.simulator.xee.auth import XeeError

if TYPE_CHECKING:
    from car2mqtt.simulator.app import Simulation

M = TypeVar("M", bound=BaseModel)
V = TypeVar("V")
Handler = Callable[[Request], Awaitable[Response]]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AdvanceIn(_In):
    """Move the clock forward."""

    seconds: float = Field(ge=0, le=365 * 86_400)


class ClockIn(_In):
    """Change the speed of time."""

    timeFactor: float = Field(ge=0, le=1_000_000)  # noqa: N815 (camelCase like the clouds)


class AddVehicleIn(_In):
    """Link a new vehicle to a user."""

    userId: str = Field(min_length=1)  # noqa: N815
    vendor: str = "TESLA"
    displayName: str | None = None  # noqa: N815


class PlugIn(_In):
    """Plug a car in."""

    startCharging: bool = True  # noqa: N815


class DriveIn(_In):
    """Set off on a trip."""

    speedKmh: float = Field(45.0, gt=0, le=250)  # noqa: N815
    distanceKm: float | None = Field(None, gt=0)  # noqa: N815


class BatteryIn(_In):
    """Set the state of charge."""

    level: float = Field(ge=0, le=100)


class LocationIn(_In):
    """Park a car somewhere."""

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class DeliveryIn(_In):
    """Stop Enode's webhook deliveries (an outage on its side), or let them go again."""

    paused: bool


class ReachableIn(_In):
    """Put a car to sleep (unreachable) or wake it."""

    reachable: bool


class SmartChargingIn(_In):
    """Hand charging control to Enode's smart charging, or take it back."""

    enabled: bool
    deadline: str | None = Field(None, pattern=DEADLINE_PATTERN)
    minimumChargeLimit: float | None = Field(None, allow_inf_nan=False)  # noqa: N815


class InvalidateIn(_In):
    """Make a user's vendor credentials stop working."""

    vendor: str | None = None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def admin_endpoint(sim: Simulation, handler: Handler) -> Handler:
    """Wrap an admin handler: sync the world first, answer errors as `{"error"}` JSON."""

    async def endpoint(request: Request) -> Response:
        sim.world.sync()
        try:
            response = await handler(request)
        except ApiProblem as exc:
            return _error(exc.status, exc.detail)
        except XeeError as exc:
            return _error(exc.status, exc.description)
        except SimulatorError as exc:
            return _error(409, str(exc))
        sim.dispatcher.wake()
        return response

    return endpoint


async def parse_body(request: Request, model: type[M]) -> M:
    """Read and validate a JSON body (empty means `{}`), or raise a 400."""
    raw = await request.body()
    try:
        return model.model_validate(json.loads(raw) if raw else {})
    except json.JSONDecodeError as exc:
        msg = f"body is not valid JSON: {exc.msg}"
        raise ApiProblem(400, "bad-request", "Bad Request", msg) from None
    except ValidationError as exc:
        msg = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise ApiProblem(400, "bad-request", "Bad Request", msg) from None


async def parse_faults(request: Request, current: Faults) -> Faults:
    """Read new fault switches from an admin request, or raise a 400."""
    raw = await request.body()
    try:
        data: Any = json.loads(raw) if raw else {}
    except json.JSONDecodeError as exc:
        msg = f"body is not valid JSON: {exc.msg}"
        raise ApiProblem(400, "bad-request", "Bad Request", msg) from None
    try:
        return faults_from_json(data, current)
    except SimulatorError as exc:
        raise ApiProblem(400, "bad-request", "Bad Request", str(exc)) from None


def car_action(
    model: type[M],
    find: Callable[[Request], V],
    act: Callable[[V, M], None],
    show: Callable[[V], dict[str, Any]],
) -> Handler:
    """Return a handler that validates the body, finds the car, changes it and shows it."""

    async def handler(request: Request) -> Response:
        body = await parse_body(request, model)
        vehicle = find(request)
        act(vehicle, body)
        return JSONResponse(show(vehicle))

    return handler


def admin_routes(sim: Simulation, prefix: str = "/admin") -> list[Route]:
    """Return the admin API's routes under `prefix`."""
    world, enode = sim.world, sim.enode

    def admin(handler: Handler) -> Handler:
        return admin_endpoint(sim, handler)

    def car_of(request: Request) -> EnodeVehicle:
        vehicle = enode.vehicle(request.path_params["vehicleId"])
        vehicle.car.advance(world.now())
        return vehicle

    async def overview(request: Request) -> Response:
        users: dict[str, list[str]] = {
            uid: [v.id for v in enode.user_vehicles(uid)] for uid in enode.users
        }
        return JSONResponse(
            {
                "now": isoformat(world.now()),
                "timeFactor": world.clock.factor,
                "seed": world.seed,
                "vehicles": len(enode.vehicles),
                "enodeUsers": users,
                "xeeUsers": {
                    uid: list(user.vehicle_ids) for uid, user in sim.xee.auth.users.items()
                },
                "faults": enode.faults.as_json(),
                "apiCalls": {"enode": enode.api_calls, "xee": sim.xee.api_calls},
            }
        )

    async def advance(request: Request) -> Response:
        body = await parse_body(request, AdvanceIn)
        now = world.advance(body.seconds)
        await sim.dispatcher.flush()
        return JSONResponse({"now": isoformat(now)})

    async def set_clock(request: Request) -> Response:
        body = await parse_body(request, ClockIn)
        world.clock.set_factor(body.timeFactor)
        return JSONResponse({"now": isoformat(world.now()), "timeFactor": body.timeFactor})

    async def get_faults(request: Request) -> Response:
        return JSONResponse(enode.faults.as_json())

    async def put_faults(request: Request) -> Response:
        enode.faults = await parse_faults(request, enode.faults)
        for vehicle in enode.vehicles.values():  # an outage shows at the next refresh
            vehicle.car.advance(world.now())
        return JSONResponse(enode.faults.as_json())

    async def revoke_tokens(request: Request) -> Response:
        return JSONResponse({"revoked": enode.revoke_tokens()})

    async def invalidate(request: Request) -> Response:
        body = await parse_body(request, InvalidateIn)
        vendors = enode.invalidate_credentials(request.path_params["userId"], body.vendor)
        return JSONResponse({"invalidated": vendors})

    async def add_vehicle(request: Request) -> Response:
        body = await parse_body(request, AddVehicleIn)
        if body.vendor not in VEHICLE_VENDORS:
            return _error(400, f"unknown vendor {body.vendor!r}")
        model = model_for_vendor(body.vendor, world.physics.randrange(8))
        vehicle = enode.add_vehicle(body.userId, model, display_name=body.displayName)
        return JSONResponse(live(vehicle), status_code=201)

    async def remove_vehicle(request: Request) -> Response:
        enode.remove_vehicle(request.path_params["vehicleId"])
        return Response(status_code=204)

    async def get_vehicle(request: Request) -> Response:
        return JSONResponse(live(car_of(request)))

    def enode_action(model: type[M], act: Callable[[EnodeVehicle, M], None]) -> Handler:
        return car_action(model, car_of, act, live)

    def set_reachable(vehicle: EnodeVehicle, body: ReachableIn) -> None:
        vehicle.car.reachable = body.reachable

    def set_smart(vehicle: EnodeVehicle, body: SmartChargingIn) -> None:
        enode.update_smart_policy(
            vehicle.id,
            enabled=body.enabled,
            deadline=body.deadline,
            minimum=body.minimumChargeLimit,
            default_deadline=True,
        )

    def set_location(vehicle: EnodeVehicle, body: LocationIn) -> None:
        vehicle.car.park()
        vehicle.car.lat, vehicle.car.lon = body.latitude, body.longitude

    car_actions: list[tuple[str, str, Handler]] = [
        (
            "plug-in",
            "POST",
            enode_action(PlugIn, lambda v, b: v.car.plug_in(start_charging=b.startCharging)),
        ),
        ("unplug", "POST", enode_action(_In, lambda v, _: v.car.unplug())),
        (
            "drive",
            "POST",
            enode_action(
                DriveIn,
                lambda v, b: v.car.start_drive(world.new_route(v.car), b.speedKmh, b.distanceKm),
            ),
        ),
        ("park", "POST", enode_action(_In, lambda v, _: v.car.park())),
        ("battery", "PUT", enode_action(BatteryIn, lambda v, b: v.car.set_soc(b.level))),
        ("reachable", "PUT", enode_action(ReachableIn, set_reachable)),
        ("smart-charging", "PUT", enode_action(SmartChargingIn, set_smart)),
        ("location", "PUT", enode_action(LocationIn, set_location)),
    ]

    async def refresh(request: Request) -> Response:
        vehicle = enode.force_refresh(request.path_params["vehicleId"])
        return JSONResponse(live(vehicle))

    async def deliveries(request: Request) -> Response:
        return JSONResponse(list(sim.dispatcher.log))

    async def delivery_switch(request: Request) -> Response:
        body = await parse_body(request, DeliveryIn)
        enode.webhooks_paused = body.paused
        if not body.paused:
            sim.dispatcher.wake()  # what queued up meanwhile goes out now
        return JSONResponse({"paused": enode.webhooks_paused})

    async def deactivate_webhooks(request: Request) -> Response:
        # What Enode does to a webhook after repeated failed deliveries: it stops sending
        # (isActive false) and drops what was queued, until a test gets through.
        ids = []
        for webhook in enode.webhooks.values():
            if webhook.is_active:
                webhook.is_active = False
                webhook.outbox.clear()
                ids.append(webhook.id)
        return JSONResponse({"deactivated": ids})

    vehicle_path = prefix + "/enode/vehicles/{vehicleId}"
    return [
        Route(prefix, admin(overview), methods=["GET"]),
        Route(f"{prefix}/", admin(overview), methods=["GET"]),
        Route(f"{prefix}/clock/advance", admin(advance), methods=["POST"]),
        Route(f"{prefix}/clock", admin(set_clock), methods=["PUT"]),
        Route(f"{prefix}/faults", admin(get_faults), methods=["GET"]),
        Route(f"{prefix}/faults", admin(put_faults), methods=["PUT"]),
        Route(f"{prefix}/faults/revoke-tokens", admin(revoke_tokens), methods=["POST"]),
        Route(
            f"{prefix}/enode/users/{{userId}}/invalidate-credentials",
            admin(invalidate),
            methods=["POST"],
        ),
        Route(f"{prefix}/enode/vehicles", admin(add_vehicle), methods=["POST"]),
        Route(vehicle_path, admin(get_vehicle), methods=["GET"]),
        Route(vehicle_path, admin(remove_vehicle), methods=["DELETE"]),
        *(
            Route(f"{vehicle_path}/{name}", admin(handler), methods=[method])
            for name, method, handler in car_actions
        ),
        Route(f"{vehicle_path}/refresh", admin(refresh), methods=["POST"]),
        Route(f"{prefix}/enode/webhook-deliveries", admin(deliveries), methods=["GET"]),
        Route(f"{prefix}/enode/webhook-delivery", admin(delivery_switch), methods=["PUT"]),
        Route(f"{prefix}/enode/webhooks/deactivate", admin(deactivate_webhooks), methods=["POST"]),
    ]


def live(vehicle: EnodeVehicle) -> dict[str, Any]:
    """Describe a car's physical truth next to the API's cached view of it."""
    car = vehicle.car
    return {
        "id": vehicle.id,
        "userId": vehicle.user_id,
        "vendor": vehicle.vendor,
        "model": car.model.model,
        "batteryLevel": round(car.soc, 3),
        "rangeKm": round(car.range_km, 1),
        "odometerKm": round(car.odometer_km, 3),
        "latitude": car.lat,
        "longitude": car.lon,
        "pluggedIn": car.plugged,
        "chargeMode": car.charge_mode().value,
        "chargeLimit": car.charge_limit,
        "chargePowerKw": round(car.charge_power_kw(), 2),
        "driving": car.driving,
        "speedKmh": car.speed_kmh,
        "reachable": car.reachable,
        "maxCurrent": car.current_limit_a,
        "smartCharging": vehicle.smart_charging,
        "smartChargingPolicy": vehicle.smart.policy.as_json(),
        "smartChargingState": vehicle.smart.state,
        "smartOverride": vehicle.smart.override is not None,
        "controllable": car.model.controllable,
        "cached": vehicle.snapshot,
    }
