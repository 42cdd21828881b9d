"""The admin API's Xee part under `/admin/xee`: cars, accounts, tokens and faults."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from car2mqtt.simulator.admin import (
    BatteryIn,
    DriveIn,
    Handler,
    LocationIn,
    M,
    PlugIn,
    _In,
    admin_endpoint,
    car_action,
    parse_body,
    parse_faults,
)
from car2mqtt.simulator.xee.auth import XeeError
from car2mqtt.simulator.xee.cloud import Kind, XeeVehicle

if TYPE_CHECKING:
    from car2mqtt.simulator.app import Simulation


class XeeVehicleIn(_In):
    """Pair a new car to a Xee account."""

    userId: str | None = Field(None, min_length=1)  # noqa: N815 (camelCase like the clouds)
    kind: Kind = "combustion"
    name: str | None = Field(None, min_length=1, max_length=100)


class FuelIn(_In):
    """Set the fuel in the tank."""

    litres: float = Field(ge=0)


class DoorIn(_In):
    """Open or close a door, the trunk or the hood."""

    door: Literal[
        "FrontLeftDoorSts",
        "FrontRightDoorSts",
        "RearLeftDoorSts",
        "RearRightDoorSts",
        "TrunkSts",
        "HoodSts",
    ]
    open: bool


class XeeUserIn(_In):
    """Create a Xee account."""

    email: str = Field(min_length=3, max_length=200, pattern=r"^[^@\s]+@[^@\s]+$")
    password: str = Field(min_length=1, max_length=200)
    firstName: str = "Test"  # noqa: N815
    lastName: str = "Driver"  # noqa: N815


def xee_admin_routes(sim: Simulation, prefix: str = "/admin/xee") -> list[Route]:
    """Return the Xee admin routes under `prefix`."""
    xee = sim.xee
    auth = xee.auth

    def admin(handler: Handler) -> Handler:
        return admin_endpoint(sim, handler)

    def car_of(request: Request) -> XeeVehicle:
        return xee.vehicle(request.path_params["vehicleId"])

    def action(model: type[M], change: Callable[[XeeVehicle, M], None]) -> Handler:
        return car_action(model, car_of, change, xee.live)

    async def add_vehicle(request: Request) -> Response:
        body = await parse_body(request, XeeVehicleIn)
        user_id = body.userId or xee.demo_user_id
        if user_id is None:
            raise XeeError(400, "invalid_request", "userId is required: there is no demo user")
        vehicle = xee.add_vehicle(user_id, body.kind, body.name)
        return JSONResponse(vehicle.as_json(), status_code=201)

    async def get_vehicle(request: Request) -> Response:
        return JSONResponse(xee.live(car_of(request)))

    async def remove_vehicle(request: Request) -> Response:
        xee.remove_vehicle(request.path_params["vehicleId"])
        return Response(status_code=204)

    async def repair(request: Request) -> Response:
        return JSONResponse(xee.repair(request.path_params["vehicleId"]).as_json())

    async def add_user(request: Request) -> Response:
        body = await parse_body(request, XeeUserIn)
        user = auth.add_user(body.email, body.password, body.firstName, body.lastName)
        return JSONResponse(user.as_json(), status_code=201)

    def suspension(flag: bool) -> Handler:
        async def handler(request: Request) -> Response:
            user = auth.user(request.path_params["userId"])
            user.suspended = flag
            return JSONResponse({**user.as_json(), "suspended": flag})

        return handler

    async def revoke_refresh(request: Request) -> Response:
        return JSONResponse({"revoked": auth.revoke_refresh_tokens(request.path_params["userId"])})

    async def revoke_all(request: Request) -> Response:
        return JSONResponse({"revoked": auth.revoke_all()})

    async def get_faults(request: Request) -> Response:
        return JSONResponse(xee.faults.as_json())

    async def put_faults(request: Request) -> Response:
        xee.faults = await parse_faults(request, xee.faults)
        return JSONResponse(xee.faults.as_json())

    actions: list[tuple[str, str, Handler]] = [
        (
            "drive",
            "POST",
            action(DriveIn, lambda v, b: xee.act(v, "drive", b.speedKmh, b.distanceKm)),
        ),
        ("park", "POST", action(_In, lambda v, _: xee.act(v, "park"))),
        ("plug", "POST", action(PlugIn, lambda v, b: xee.act(v, "plug", b.startCharging))),
        ("plug-in", "POST", action(PlugIn, lambda v, b: xee.act(v, "plug", b.startCharging))),
        ("unplug", "POST", action(_In, lambda v, _: xee.act(v, "unplug"))),
        ("battery", "PUT", action(BatteryIn, lambda v, b: xee.act(v, "battery", b.level))),
        ("fuel", "PUT", action(FuelIn, lambda v, b: xee.act(v, "fuel", b.litres))),
        (
            "location",
            "PUT",
            action(LocationIn, lambda v, b: xee.act(v, "location", b.latitude, b.longitude)),
        ),
        ("doors", "PUT", action(DoorIn, lambda v, b: xee.act(v, "door", b.door, b.open))),
    ]
    vehicle_path = f"{prefix}/vehicles/{{vehicleId}}"
    user_path = f"{prefix}/users/{{userId}}"
    return [
        Route(f"{prefix}/vehicles", admin(add_vehicle), methods=["POST"]),
        Route(vehicle_path, admin(get_vehicle), methods=["GET"]),
        Route(vehicle_path, admin(remove_vehicle), methods=["DELETE"]),
        Route(f"{vehicle_path}/repair", admin(repair), methods=["POST"]),
        *(
            Route(f"{vehicle_path}/{name}", admin(handler), methods=[method])
            for name, method, handler in actions
        ),
        Route(f"{prefix}/users", admin(add_user), methods=["POST"]),
        Route(f"{user_path}/suspend", admin(suspension(True)), methods=["POST"]),
        Route(f"{user_path}/unsuspend", admin(suspension(False)), methods=["POST"]),
        Route(f"{user_path}/revoke-refresh-tokens", admin(revoke_refresh), methods=["POST"]),
        Route(f"{prefix}/tokens/revoke", admin(revoke_all), methods=["POST"]),
        Route(f"{prefix}/faults", admin(get_faults), methods=["GET"]),
        Route(f"{prefix}/faults", admin(put_faults), methods=["PUT"]),
    ]
