"""The Enode API 2024-10-01 over HTTP: routes, authentication, validation and error shapes."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal
from urllib.parse import unquote

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from car2mqtt.simulator.catalog import VEHICLE_VENDORS
from car2mqtt.simulator.enode import linkui
from car2mqtt.simulator.enode.cloud import (
    ALL_SCOPES,
    API_VERSION,
    DEFAULT_PAGE_SIZE,
    WEBHOOK_EVENTS,
    ApiProblem,
    EnodeCloud,
    OAuthError,
    bad_request,
    paginate,
)
from car2mqtt.simulator.enode.smart import DEADLINE_PATTERN
from car2mqtt.simulator.enode.statistics import parse_query, sessions_json, statistics_json
from car2mqtt.simulator.enode.webhooks import WebhookDispatcher
from car2mqtt.simulator.faults import FaultMiddleware, problem_json

LANGUAGES = (
    "browser",
    "da-DK",
    "de-DE",
    "en-US",
    "en-GB",
    "es-ES",
    "fi-FI",
    "fr-FR",
    "it-IT",
    "ja-JP",
    "lv-LV",
    "lt-LT",
    "nb-NO",
    "nl-NL",
    "nl-BE",
    "pl-PL",
    "pt-PT",
    "ro-RO",
    "sv-SE",
)
PROBLEM_MEDIA_TYPE = "application/problem+json"
Handler = Callable[[Request], Awaitable[Response]]


def _http_uri(value: str) -> str:
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest or " " in value:
        msg = "must be an absolute http(s) URI"
        raise ValueError(msg)
    return value


def _in(options: tuple[str, ...], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in options:
            msg = f"{value!r} is not a valid {what}"
            raise ValueError(msg)
        return value

    return check


HttpUri = Annotated[str, AfterValidator(_http_uri)]


class LinkIn(BaseModel):
    """Body of `POST /users/{userId}/link`."""

    model_config = ConfigDict(extra="forbid")
    vendor: Annotated[str, AfterValidator(_in(tuple(VEHICLE_VENDORS), "vehicle vendor"))] | None = (
        None
    )
    vendorType: Literal["vehicle"] | None = None  # noqa: N815 (Enode's field names)
    scopes: Annotated[
        list[Annotated[str, AfterValidator(_in(ALL_SCOPES, "scope"))]], Field(min_length=1)
    ]
    language: Annotated[str, AfterValidator(_in(LANGUAGES, "language"))]
    redirectUri: Annotated[HttpUri, Field(max_length=500)]  # noqa: N815
    colorScheme: Literal["system", "light", "dark"] = "system"  # noqa: N815


class ChargingIn(BaseModel):
    """Body of `POST /vehicles/{vehicleId}/charging`."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["START", "STOP"]


class MaxCurrentIn(BaseModel):
    """Body of `POST /vehicles/{vehicleId}/max-current`."""

    model_config = ConfigDict(extra="forbid", strict=True)
    maxCurrent: float = Field(gt=0, allow_inf_nan=False)  # noqa: N815


class PolicyIn(BaseModel):
    """Body of `PUT /vehicles/{vehicleId}/smart-charging-policy`: any subset of the policy."""

    # The spec's schema does not forbid other keys (no additionalProperties: false): ignored.
    model_config = ConfigDict(extra="ignore", strict=True)
    isEnabled: bool | None = None  # noqa: N815
    deadline: Annotated[str, Field(pattern=DEADLINE_PATTERN)] | None = None
    minimumChargeLimit: Annotated[float, Field(allow_inf_nan=False)] | None = None  # noqa: N815

    @field_validator("isEnabled", "deadline", "minimumChargeLimit", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Left out means "unchanged"; the spec's types have no null.
        if value is None:
            msg = "may be left out, but not null"
            raise ValueError(msg)
        return value


_HEADER_NAME = r"^[a-z0-9-_]+$"
_HEADER_VALUE = r"^[a-zA-Z0-9_:;.,/\\\"'?!(){}\[\]@<>=\-+*#$&`|~^% ]+$"


class WebhookAuthIn(BaseModel):
    """A static header Enode adds to every delivery."""

    model_config = ConfigDict(extra="forbid")
    headerName: str = Field(min_length=1, max_length=128, pattern=_HEADER_NAME)  # noqa: N815
    headerValue: str = Field(min_length=1, max_length=256, pattern=_HEADER_VALUE)  # noqa: N815


Event = Annotated[str, AfterValidator(_in(WEBHOOK_EVENTS, "webhook event"))]
WebhookUrl = Annotated[HttpUri, Field(min_length=8, max_length=200)]
Secret = Annotated[str, Field(min_length=6, max_length=256)]


class WebhookIn(BaseModel):
    """Body of `POST /webhooks`."""

    model_config = ConfigDict(extra="forbid")
    url: WebhookUrl
    secret: Secret
    events: list[Event] = Field(default_factory=lambda: ["*"])
    apiVersion: str | None = None  # noqa: N815
    authentication: WebhookAuthIn | None = None


class WebhookPatch(BaseModel):
    """Body of `PATCH /webhooks/{webhookId}`."""

    model_config = ConfigDict(extra="forbid")
    url: WebhookUrl | None = None
    secret: Secret | None = None
    events: list[Event] | None = None
    apiVersion: str | None = None  # noqa: N815
    authentication: WebhookAuthIn | None = None


def problem_response(problem: ApiProblem) -> Response:
    """Render an `ApiProblem` as its HTTP response."""
    if problem.body is not None:
        return JSONResponse(problem.body, status_code=problem.status)
    return JSONResponse(problem.payload(), problem.status, media_type=PROBLEM_MEDIA_TYPE)


def render_fault(status: int, kind: str, retry_after: int | None) -> tuple[bytes, str]:
    """Render an injected fault the way Enode reports errors."""
    if kind == "rate-limited":
        detail = f"Rate limited by the vendor; retry after {retry_after} seconds."
        title = "Too Many Requests"
    else:
        detail = "The vendor did not respond in time; try again later."
        title = "Vendor temporarily unavailable"
    body = {"type": f"https://developers.enode.com/api/problems/{kind}", "title": title}
    body["detail"] = detail
    return problem_json(body), PROBLEM_MEDIA_TYPE


def classify(method: str, path: str) -> str | None:
    """Return the fault class of an Enode endpoint (the Link UI is never faulted)."""
    if "/link/" in path and not path.endswith("/link"):
        return None
    if path.endswith("/oauth2/token"):
        return "auth"
    return "read" if method == "GET" else "write"


def _issues(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"path": [str(p) for p in err["loc"]], "message": err["msg"], "code": err["type"]}
        for err in exc.errors()
    ]


async def _body(request: Request, model: type[BaseModel]) -> Any:
    raw = await request.body()
    try:
        data = json.loads(raw) if raw else None
    except json.JSONDecodeError as exc:
        msg = f"The request body is not valid JSON: {exc.msg} at position {exc.pos}."
        raise bad_request(msg) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise bad_request(f"Invalid request body: {detail}", _issues(exc)) from None


def _page_args(request: Request) -> tuple[int, str | None, str | None]:
    params = request.query_params
    raw = params.get("pageSize")
    size = DEFAULT_PAGE_SIZE
    if raw is not None:
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if size <= 0:
            issue = {"path": ["pageSize"], "message": "must be an integer greater than 0"}
            raise bad_request(f"Invalid pageSize {raw!r}.", [issue])
    return size, params.get("after"), params.get("before")


def _page_objects(items: list[Any], request: Request) -> dict[str, Any]:
    size, after, before = _page_args(request)
    by_seq = {item.seq: item for item in items}
    page, prev_cursor, next_cursor = paginate(sorted(by_seq), size, after, before)
    return {
        "data": [by_seq[s].as_json() for s in page],
        "pagination": {"after": next_cursor, "before": prev_cursor},
    }


def create_enode_app(cloud: EnodeCloud, dispatcher: WebhookDispatcher) -> ASGIApp:
    """Build the Enode API as an ASGI app, to mount at `/enode`."""

    def api(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            cloud.world.sync()
            cloud.api_calls += 1
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not cloud.token_valid(token.strip()):
                return problem_response(
                    ApiProblem(
                        401,
                        "unauthorized",
                        "Unauthorized",
                        "The access token is missing, invalid or expired.",
                    )
                )
            version = request.headers.get("enode-version")
            if version is not None and version != API_VERSION:
                return problem_response(
                    bad_request(
                        f"Unsupported Enode-Version {version!r}; this API serves {API_VERSION}."
                    )
                )
            try:
                return await handler(request)
            except ApiProblem as problem:
                return problem_response(problem)

        return endpoint

    async def token(request: Request) -> Response:
        cloud.world.sync()
        cloud.api_calls += 1
        try:
            form = await request.form()
        except Exception:
            return _oauth_error(OAuthError(400, "invalid_request", "Malformed form body."))
        client_id = _form_str(form.get("client_id"))
        client_secret = _form_str(form.get("client_secret"))
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(encoded.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return _oauth_error(OAuthError(401, "invalid_client", "Malformed Basic auth."))
            user, _, password = decoded.partition(":")
            client_id, client_secret = unquote(user), unquote(password)
        grant = _form_str(form.get("grant_type"))
        try:
            if grant is None:
                raise OAuthError(400, "invalid_request", "grant_type is required.")
            if grant != "client_credentials":
                raise OAuthError(
                    400, "unsupported_grant_type", f"Grant type {grant!r} is not supported."
                )
            return JSONResponse(cloud.issue_token(client_id, client_secret))
        except OAuthError as exc:
            return _oauth_error(exc)

    async def list_users(request: Request) -> Response:
        return JSONResponse(_page_objects(list(cloud.users.values()), request))

    async def get_user(request: Request) -> Response:
        user = cloud.user(request.path_params["userId"])
        linked = [
            {"vendor": vendor, "vendorType": "vehicle", "isValid": ok}
            for vendor, ok in user.vendors.items()
        ]
        return JSONResponse({"id": user.id, "linkedVendors": linked})

    async def delete_user(request: Request) -> Response:
        cloud.delete_user(request.path_params["userId"])
        return Response(status_code=204)

    async def deauthorize(request: Request) -> Response:
        cloud.deauthorize_user(request.path_params["userId"])
        return Response(status_code=204)

    async def link(request: Request) -> Response:
        body: LinkIn = await _body(request, LinkIn)
        scopes = sorted(set(body.scopes))
        if "vehicle:read:data" not in scopes:
            raise bad_request("Scope 'vehicle:read:data' is required to link vehicles.")
        if "about:blank" in body.redirectUri:
            raise bad_request("redirectUri may not be about:blank.")
        session = cloud.create_link(
            request.path_params["userId"],
            scopes=scopes,
            language=body.language,
            redirect_uri=body.redirectUri,
            vendor=body.vendor,
        )
        url = str(request.base_url).rstrip("/") + request.scope.get("root_path", "")
        return JSONResponse(
            {"linkUrl": f"{url}/link/{session.id}", "linkToken": session.link_token}
        )

    async def list_vehicles(request: Request) -> Response:
        size, after, before = _page_args(request)
        return JSONResponse(cloud.page_vehicles(None, size, after, before))

    async def list_user_vehicles(request: Request) -> Response:
        size, after, before = _page_args(request)
        user_id = request.path_params["userId"]
        return JSONResponse(cloud.page_vehicles(user_id, size, after, before))

    async def get_vehicle(request: Request) -> Response:
        return JSONResponse(cloud.vehicle(request.path_params["vehicleId"]).snapshot)

    async def charging(request: Request) -> Response:
        vehicle_id = request.path_params["vehicleId"]
        cloud.vehicle(vehicle_id)
        body: ChargingIn = await _body(request, ChargingIn)
        return JSONResponse(cloud.charge(vehicle_id, body.action).as_json())

    async def max_current(request: Request) -> Response:
        vehicle_id = request.path_params["vehicleId"]
        cloud.vehicle(vehicle_id)
        body: MaxCurrentIn = await _body(request, MaxCurrentIn)
        return JSONResponse(cloud.set_max_current(vehicle_id, body.maxCurrent).as_json())

    async def get_policy(request: Request) -> Response:
        vehicle = cloud.vehicle(request.path_params["vehicleId"])
        return JSONResponse(vehicle.smart.policy.as_json())

    async def put_policy(request: Request) -> Response:
        vehicle_id = request.path_params["vehicleId"]
        cloud.vehicle(vehicle_id)
        body: PolicyIn = await _body(request, PolicyIn)
        policy = cloud.update_smart_policy(
            vehicle_id,
            enabled=body.isEnabled,
            deadline=body.deadline,
            minimum=body.minimumChargeLimit,
        )
        return JSONResponse(policy.as_json())

    async def smart_status(request: Request) -> Response:
        vehicle = cloud.vehicle(request.path_params["vehicleId"])
        return JSONResponse(cloud.smart.status_json(vehicle))

    async def smart_plan(request: Request) -> Response:
        params = request.path_params
        return JSONResponse(cloud.smart_plan(params["vehicleId"], params["planId"]).as_json())

    async def create_override(request: Request) -> Response:
        return JSONResponse(cloud.smart_override(request.path_params["vehicleId"]).as_json())

    async def end_override(request: Request) -> Response:
        return JSONResponse(cloud.end_smart_override(request.path_params["vehicleId"]).as_json())

    async def charging_statistics(request: Request) -> Response:
        now = cloud.world.now()
        query = parse_query(request.query_params, now, buckets=True)
        found = cloud.charge_sessions(
            request.path_params["userId"], query.device_type, query.device_id, query.location_id
        )
        return JSONResponse(statistics_json(found, query, now))

    async def charging_sessions(request: Request) -> Response:
        now = cloud.world.now()
        query = parse_query(request.query_params, now, buckets=False)
        found = cloud.charge_sessions(
            request.path_params["userId"], query.device_type, query.device_id, query.location_id
        )
        return JSONResponse(sessions_json(found, query, now))

    async def refresh_hint(request: Request) -> Response:
        cloud.refresh_hint(request.path_params["vehicleId"])
        return Response(status_code=204)

    async def get_action(request: Request) -> Response:
        return JSONResponse(cloud.action(request.path_params["actionId"]).as_json())

    async def cancel_action(request: Request) -> Response:
        return JSONResponse(cloud.cancel_action(request.path_params["actionId"]).as_json())

    async def vehicle_health(request: Request) -> Response:
        return JSONResponse(cloud.vehicle_health())

    async def create_webhook(request: Request) -> Response:
        body: WebhookIn = await _body(request, WebhookIn)
        _check_api_version(body.apiVersion)
        auth = body.authentication
        webhook = cloud.add_webhook(
            body.url,
            body.secret,
            list(body.events),
            body.apiVersion,
            (auth.headerName, auth.headerValue) if auth else None,
        )
        return JSONResponse(webhook.as_json())

    async def list_webhooks(request: Request) -> Response:
        return JSONResponse(_page_objects(list(cloud.webhooks.values()), request))

    async def get_webhook(request: Request) -> Response:
        return JSONResponse(cloud.webhook(request.path_params["webhookId"]).as_json())

    async def patch_webhook(request: Request) -> Response:
        webhook = cloud.webhook(request.path_params["webhookId"])
        body: WebhookPatch = await _body(request, WebhookPatch)
        given = body.model_fields_set
        if "apiVersion" in given:
            _check_api_version(body.apiVersion)
            webhook.api_version = body.apiVersion
        if body.url is not None:
            webhook.url = body.url
        if body.secret is not None:
            webhook.secret = body.secret
        if body.events is not None:
            webhook.events = list(body.events)
        if "authentication" in given:
            auth = body.authentication
            webhook.auth_header = (auth.headerName, auth.headerValue) if auth else None
        return JSONResponse(webhook.as_json())

    async def delete_webhook(request: Request) -> Response:
        webhook = cloud.webhook(request.path_params["webhookId"])
        del cloud.webhooks[webhook.id]
        return Response(status_code=204)

    async def test_webhook(request: Request) -> Response:
        webhook = cloud.webhook(request.path_params["webhookId"])
        return JSONResponse(await dispatcher.test(webhook))

    routes: list[BaseRoute] = [
        Route("/oauth2/token", token, methods=["POST"]),
        Route("/users", api(list_users), methods=["GET"]),
        Route("/users/{userId}", api(get_user), methods=["GET"]),
        Route("/users/{userId}", api(delete_user), methods=["DELETE"]),
        Route("/users/{userId}/authorization", api(deauthorize), methods=["DELETE"]),
        Route("/users/{userId}/link", api(link), methods=["POST"]),
        Route("/users/{userId}/vehicles", api(list_user_vehicles), methods=["GET"]),
        Route("/users/{userId}/statistics/charging", api(charging_statistics), methods=["GET"]),
        Route(
            "/users/{userId}/statistics/charging/sessions",
            api(charging_sessions),
            methods=["GET"],
        ),
        Route("/vehicles", api(list_vehicles), methods=["GET"]),
        Route("/vehicles/actions/{actionId}", api(get_action), methods=["GET"]),
        Route("/vehicles/actions/{actionId}/cancel", api(cancel_action), methods=["POST"]),
        Route("/vehicles/{vehicleId}", api(get_vehicle), methods=["GET"]),
        Route("/vehicles/{vehicleId}/charging", api(charging), methods=["POST"]),
        Route("/vehicles/{vehicleId}/refresh-hint", api(refresh_hint), methods=["POST"]),
        Route("/vehicles/{vehicleId}/max-current", api(max_current), methods=["POST"]),
        Route("/vehicles/{vehicleId}/smart-charging-policy", api(get_policy), methods=["GET"]),
        Route("/vehicles/{vehicleId}/smart-charging-policy", api(put_policy), methods=["PUT"]),
        Route("/vehicles/{vehicleId}/smart-charging-status", api(smart_status), methods=["GET"]),
        Route(
            "/vehicles/{vehicleId}/smart-charging-plans/{planId}",
            api(smart_plan),
            methods=["GET"],
        ),
        Route("/vehicles/{vehicleId}/smart-override", api(create_override), methods=["POST"]),
        Route("/vehicles/{vehicleId}/smart-override", api(end_override), methods=["DELETE"]),
        Route("/health/vehicles", api(vehicle_health), methods=["GET"]),
        Route("/webhooks", api(create_webhook), methods=["POST"]),
        Route("/webhooks", api(list_webhooks), methods=["GET"]),
        Route("/webhooks/{webhookId}", api(get_webhook), methods=["GET"]),
        Route("/webhooks/{webhookId}", api(patch_webhook), methods=["PATCH"]),
        Route("/webhooks/{webhookId}", api(delete_webhook), methods=["DELETE"]),
        Route("/webhooks/{webhookId}/test", api(test_webhook), methods=["POST"]),
        *linkui.routes(cloud),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return problem_response(
            ApiProblem(404, "not-found", "Not Found", f"No endpoint {request.url.path}.")
        )

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        return problem_response(
            ApiProblem(
                405,
                "method-not-allowed",
                "Method Not Allowed",
                f"{request.method} is not allowed on {request.url.path}.",
            )
        )

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: method_not_allowed})
    return FaultMiddleware(
        app,
        faults=lambda: cloud.faults,
        rng=lambda: cloud.world.faults,
        classify=classify,
        render_error=render_fault,
    )


def _check_api_version(version: str | None) -> None:
    if version is not None and version != API_VERSION:
        raise bad_request(f"Unsupported apiVersion {version!r}; this API serves {API_VERSION}.")


def _form_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _oauth_error(exc: OAuthError) -> Response:
    headers = {"WWW-Authenticate": 'Basic realm="enode"'} if exc.status == 401 else None
    return JSONResponse(
        {"error": exc.error, "error_description": exc.description},
        status_code=exc.status,
        headers=headers,
    )
