"""The webhook receiver: `POST <base_path>/webhooks/<provider>/<account>`, for the push source.

It needs no login: a delivery proves itself by its signature, which the push source checks
over the exact bytes received. Bodies over 1 MB are refused before they are read whole.
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from car2mqtt.bridge.push import MAX_BODY_BYTES, ROUTE, PushSource

BODY_TIMEOUT_S = 10.0


def receiver_route(push: PushSource) -> Route:
    """Return the route that takes deliveries and hands them to `push`."""

    async def receive(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            return PlainTextResponse("body too large", status_code=413)
        body = bytearray()
        try:
            async with asyncio.timeout(BODY_TIMEOUT_S):  # a trickle holds nothing for long
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        return PlainTextResponse("body too large", status_code=413)
        except ClientDisconnect:
            return PlainTextResponse("incomplete", status_code=400)
        except TimeoutError:
            return PlainTextResponse("too slow", status_code=408)
        params = request.path_params
        status, text = await push.receive(
            params["provider"], params["account"], request.headers, bytes(body)
        )
        return PlainTextResponse(text, status_code=status)

    return Route(ROUTE, receive, methods=["POST"])


def receiver_app(push: PushSource, base_path: str = "") -> Starlette:
    """Return the receiver alone, for a listener of its own (`webhook.port`)."""
    route = receiver_route(push)
    return Starlette(routes=[Mount(base_path, routes=[route])] if base_path else [route])
