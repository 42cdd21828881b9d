"""The Xee API v4 over HTTP: OAuth endpoints, users, vehicles, status, history and trips."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from car2mqtt.simulator.faults import FaultMiddleware, problem_json
from car2mqtt.simulator.xee.auth import XeeError, XeeUser
from car2mqtt.simulator.xee.cloud import Trip, XeeCloud, XeeVehicle, trip_window, window
from car2mqtt.simulator.xee.consent import ConsentPages

Handler = Callable[[Request], Awaitable[Response]]
UserHandler = Callable[[Request, XeeUser], Awaitable[Response]]


def error_response(exc: XeeError) -> JSONResponse:
    """Render a `XeeError` as its v4 response."""
    headers = {"WWW-Authenticate": 'Basic realm="xee"'} if exc.error == "invalid_client" else None
    return JSONResponse(exc.payload(), status_code=exc.status, headers=headers)


def render_fault(status: int, kind: str, retry_after: int | None) -> tuple[bytes, str]:
    """Render an injected fault the way Xee v4 reports errors."""
    if kind == "rate-limited":
        body = {
            "error": "too_many_requests",
            "error_description": f"Rate limit exceeded; retry after {retry_after} seconds",
        }
    else:
        body = {
            "error": "service_unavailable",
            "error_description": "The service is temporarily unavailable; try again later",
        }
    return problem_json(body), "application/json"


def classify(method: str, path: str) -> str | None:
    """Return the fault class of a Xee endpoint (the authorize pages are never faulted)."""
    if "/oauth/authorize" in path:
        return None
    if "/oauth/token" in path or "/oauth/revoke" in path:
        return "auth"
    return "read"


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _client(request: Request) -> tuple[str, str]:
    """Return the client id and secret from HTTP Basic, or raise 401 `invalid_client`."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    try:
        if scheme.lower() != "basic":
            raise ValueError
        user, sep, password = (
            base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        )
        if not sep:
            raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise XeeError(
            401, "invalid_client", "Client authentication with HTTP Basic is required"
        ) from None
    return unquote(user), unquote(password)


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    if not isinstance(value, str) or not value:
        raise XeeError(400, "invalid_request", f"Missing parameter {name}")
    return value


def _limit(request: Request) -> int | None:
    raw = request.query_params.get("limit")
    if raw is None:
        return None
    try:
        limit = int(raw)
    except ValueError:
        raise XeeError(400, "invalid_request", f"Invalid limit {raw!r}") from None
    if limit < 0:
        raise XeeError(400, "invalid_request", "Limit can't be less than 0")
    return limit


def _signal_names(request: Request) -> list[str] | None:
    raw = request.query_params.get("signals")
    return [n.strip() for n in raw.split(",") if n.strip()] if raw else None


def create_xee_app(cloud: XeeCloud) -> ASGIApp:
    """Build the Xee API as an ASGI app, to mount at `/xee`."""
    auth = cloud.auth
    consent = ConsentPages(auth)

    def counted(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            cloud.world.sync()
            cloud.api_calls += 1
            try:
                return await handler(request)
            except XeeError as exc:
                return error_response(exc)

        return endpoint

    def api(handler: UserHandler) -> Handler:
        async def endpoint(request: Request) -> Response:
            return await handler(request, auth.authenticate(_bearer(request)))

        return counted(endpoint)

    async def token(request: Request) -> Response:
        client_id, secret = _client(request)
        if not auth.client_ok(client_id, secret):
            raise XeeError(401, "invalid_client", "Client authentication failed")
        try:
            form = await request.form()
        except Exception:
            raise XeeError(400, "invalid_request", "Malformed form body") from None
        grant = _field(form, "grant_type")
        if grant == "authorization_code":
            body = auth.exchange_code(_field(form, "code"), _field(form, "redirect_uri"))
        elif grant == "refresh_token":
            body = auth.refresh_grant(_field(form, "refresh_token"))
        elif grant == "password":
            scope = form.get("scope")
            body = auth.password_grant(
                _field(form, "username"),
                _field(form, "password"),
                scope if isinstance(scope, str) else "",
            )
        else:
            msg = f"Grant type {grant!r} is not supported"
            raise XeeError(400, "unsupported_grant_type", msg)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def revoke(request: Request) -> Response:
        auth.revoke(_bearer(request))
        return Response(status_code=204)

    async def me(request: Request, user: XeeUser) -> Response:
        return JSONResponse(user.as_json())

    async def my_vehicles(request: Request, user: XeeUser) -> Response:
        if request.path_params.get("userId", "me") not in ("me", user.id):
            raise XeeError(403, "forbidden", "Token cannot access this user")
        return JSONResponse([v.as_json() for v in cloud.user_vehicles(user.id)])

    async def vehicle(request: Request, user: XeeUser) -> Response:
        return JSONResponse(cloud.vehicle_for(user, request.path_params["vehicleId"]).as_json())

    async def status(request: Request, user: XeeUser) -> Response:
        found = cloud.vehicle_for(user, request.path_params["vehicleId"])
        return JSONResponse(cloud.status(found))

    def history_args(request: Request, user: XeeUser) -> tuple[XeeVehicle, tuple[float, float]]:
        found = cloud.vehicle_for(user, request.path_params["vehicleId"])
        params = request.query_params
        return found, window(params.get("from"), params.get("to"), cloud.world.now())

    async def signals(request: Request, user: XeeUser) -> Response:
        found, span = history_args(request, user)
        names = _signal_names(request)
        return JSONResponse(cloud.signal_history(found, span, names, _limit(request)))

    async def locations(request: Request, user: XeeUser) -> Response:
        found, span = history_args(request, user)
        return JSONResponse(cloud.location_history(found, span, _limit(request)))

    async def trips(request: Request, user: XeeUser) -> Response:
        found, span = history_args(request, user)
        return JSONResponse(cloud.trip_history(found, span))

    def trip_args(request: Request, user: XeeUser) -> tuple[XeeVehicle, Trip, tuple[float, float]]:
        found, record = cloud.trip_for(user, request.path_params["tripId"])
        params = request.query_params
        return found, record, trip_window(params.get("from"), params.get("to"))

    async def trip(request: Request, user: XeeUser) -> Response:
        found, record = cloud.trip_for(user, request.path_params["tripId"])
        return JSONResponse(record.as_json(found))

    async def trip_signals(request: Request, user: XeeUser) -> Response:
        found, record, span = trip_args(request, user)
        names, limit = _signal_names(request), _limit(request)
        return JSONResponse(cloud.trip_signals(found, record, span, names, limit))

    async def trip_locations(request: Request, user: XeeUser) -> Response:
        found, record, span = trip_args(request, user)
        return JSONResponse(cloud.trip_locations(found, record, span, _limit(request)))

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(XeeError(404, "not_found", f"No endpoint {request.url.path}"))

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        msg = f"{request.method} is not allowed on {request.url.path}"
        return error_response(XeeError(405, "method_not_allowed", msg))

    v4 = "/v4"
    routes = [
        Route(f"{v4}/oauth/authorize", consent.show, methods=["GET"]),
        Route(f"{v4}/oauth/authorize", consent.answer, methods=["POST"]),
        Route(f"{v4}/oauth/token", counted(token), methods=["POST"]),
        Route(f"{v4}/oauth/revoke", counted(revoke), methods=["POST"]),
        Route(f"{v4}/users/me", api(me), methods=["GET"]),
        Route(f"{v4}/users/{{userId}}/vehicles", api(my_vehicles), methods=["GET"]),
        *(
            Route(f"{v4}/vehicles/{{vehicleId}}{suffix}", api(handler), methods=["GET"])
            for suffix, handler in (
                ("", vehicle),
                ("/status", status),
                ("/signals", signals),
                ("/locations", locations),
                ("/trips", trips),
            )
        ),
        *(
            Route(f"{v4}/trips/{{tripId}}{suffix}", api(handler), methods=["GET"])
            for suffix, handler in (
                ("", trip),
                ("/signals", trip_signals),
                ("/locations", trip_locations),
            )
        ),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: method_not_allowed})
    return FaultMiddleware(
        app,
        faults=lambda: cloud.faults,
        rng=lambda: cloud.fault_rng,
        classify=classify,
        render_error=render_fault,
    )
