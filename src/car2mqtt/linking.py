"""Linking cars without curl: start the cloud's link flow and wait for its redirect locally."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from html import escape

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from car2mqtt.errors import Car2MqttError
from car2mqtt.models import VehicleState
from car2mqtt.net import base_url, bind
from car2mqtt.providers.enode import EnodeProvider

_DONE = (
    "<!doctype html><meta charset='utf-8'><title>car2mqtt</title>"
    "<body style='font-family:system-ui;margin:3rem'><h1>{title}</h1><p>{text}</p></body>"
)


class LinkFailed(Car2MqttError):
    """The user cancelled, or the cloud reported an error, or nobody finished in time."""


@dataclass(frozen=True, slots=True)
class Redirect:
    """What came back to the redirect receiver."""

    params: dict[str, str]


async def wait_for_redirect(
    host: str, port: int, on_ready: Callable[[str], Awaitable[None]], timeout_s: float
) -> Redirect:
    """Serve `/callback` on host:port, await `on_ready(redirect_uri)`, return the redirect."""
    loop = asyncio.get_running_loop()
    arrived: asyncio.Future[Redirect] = loop.create_future()

    async def callback(request: Request) -> Response:
        params = dict(request.query_params)
        if not arrived.done():
            arrived.set_result(Redirect(params))
        if "error" in params:
            text = escape(params.get("error_message") or params["error"])
            page = _DONE.format(title="Linking stopped", text=text)
        else:
            page = _DONE.format(title="Done", text="You can close this window now.")
        return HTMLResponse(page)

    sock = bind(host, port)
    redirect_uri = f"{base_url(sock)}/callback"
    app = Starlette(routes=[Route("/callback", callback, methods=["GET"])])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await on_ready(redirect_uri)
        try:
            async with asyncio.timeout(timeout_s):
                return await arrived
        except TimeoutError:
            msg = f"nobody finished linking within {timeout_s / 60:.0f} minutes"
            raise LinkFailed(msg) from None
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


async def link_enode(
    provider: EnodeProvider,
    *,
    host: str,
    port: int,
    vendor: str | None,
    show_url: Callable[[str], None],
    timeout_s: float = 900.0,
) -> list[VehicleState]:
    """Run Enode's Link flow for the account's user and return the vehicles it then has."""

    async def start(redirect_uri: str) -> None:
        link = await provider.client.create_link(provider.user_id, redirect_uri, vendor=vendor)
        show_url(link.link_url)

    redirect = await wait_for_redirect(host, port, start, timeout_s)
    if "error" in redirect.params:
        detail = redirect.params.get("error_message") or redirect.params["error"]
        msg = f"linking stopped: {detail} ({redirect.params['error']})"
        raise LinkFailed(msg)
    return await provider.poll()
