"""Linking cars without curl: what every cloud's link flow shares (it names none of them).

A redirect receiver on this machine, the address the browser comes back to, reading a pasted
redirect, checking an OAuth2 `state`, and a whole authorization-code consent (`authorize`). The
flows themselves are in each provider's folder (`providers/<name>/link.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from html import escape
from typing import TypeVar
from urllib.parse import parse_qsl, urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from car2mqtt.errors import Car2MqttError, ConfigError
from car2mqtt.net import base_url, bind, http_url, is_wildcard, reachable_host

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

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
    pasted: bool = False


@contextlib.asynccontextmanager
async def redirect_receiver(
    sock: socket.socket,
    path: str = "/callback",
    refuse: Callable[[dict[str, str]], str | None] | None = None,
) -> AsyncIterator[asyncio.Future[Redirect]]:
    """Serve `path` on a bound socket; yield a future that the first accepted redirect completes.

    `refuse(params)` returns why a redirect is not ours (a forged or stale one): it gets an
    error page and the receiver goes on waiting for the real one.
    """
    loop = asyncio.get_running_loop()
    arrived: asyncio.Future[Redirect] = loop.create_future()

    async def callback(request: Request) -> Response:
        params = dict(request.query_params)
        reason = refuse(params) if refuse is not None else None
        if reason is not None:
            _LOGGER.warning("ignored a redirect: %s", reason)
            page = _DONE.format(title="Not this link", text=escape(reason))
            return HTMLResponse(page, status_code=400)
        if not arrived.done():
            arrived.set_result(Redirect(params))
        if "error" in params:
            text = escape(params.get("error_message") or params["error"])
            page = _DONE.format(title="Linking stopped", text=text)
        else:
            page = _DONE.format(title="Done", text="You can close this window now.")
        return HTMLResponse(page)

    app = Starlette(routes=[Route(path or "/", callback, methods=["GET"])])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield arrived
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


async def _within(awaitable: Awaitable[T], timeout_s: float) -> T:
    try:
        async with asyncio.timeout(timeout_s):
            return await awaitable
    except TimeoutError:
        msg = f"nobody finished linking within {timeout_s / 60:.0f} minutes"
        raise LinkFailed(msg) from None


def redirect_uri_for(sock: socket.socket, host: str, public_url: str | None = None) -> str:
    """Where the browser is sent back to: `public_url`, else an address it can reach."""
    if public_url:
        return f"{public_url.rstrip('/')}/callback"
    if is_wildcard(host):
        # http://0.0.0.0:... opens on no other device: name this machine's real address.
        return f"{http_url(reachable_host(host), sock.getsockname()[1])}/callback"
    return f"{base_url(sock)}/callback"


async def wait_for_redirect(
    host: str,
    port: int,
    on_ready: Callable[[str], Awaitable[None]],
    timeout_s: float,
    public_url: str | None = None,
) -> Redirect:
    """Serve `/callback` on host:port, await `on_ready(redirect_uri)`, return the redirect."""
    sock = bind(host, port)
    redirect_uri = redirect_uri_for(sock, host, public_url)
    async with redirect_receiver(sock) as arrived:
        await on_ready(redirect_uri)
        return await _within(arrived, timeout_s)


def _listen_for(redirect_uri: str) -> tuple[socket.socket, str] | None:
    """Bind where `redirect_uri` points, when that is a plain-http address on this machine."""
    parts = urlsplit(redirect_uri)
    host = parts.hostname or ""
    if parts.scheme != "http" or host not in ("127.0.0.1", "localhost", "::1"):
        return None
    try:
        sock = bind("127.0.0.1" if host == "localhost" else host, parts.port or 80)
    except ConfigError as exc:
        _LOGGER.warning("cannot receive the redirect here (%s); paste it instead", exc)
        return None
    return sock, parts.path or "/"


def same_address(a: str, b: str) -> bool:
    """Whether two URLs name the same page (scheme and host case, a trailing slash aside)."""
    first, second = urlsplit(a), urlsplit(b)
    return (
        first.scheme.lower() == second.scheme.lower()
        and first.netloc.lower() == second.netloc.lower()
        and first.path.rstrip("/") == second.path.rstrip("/")
    )


_REDIRECT_KEYS = ("code=", "state=", "error=")


def redirect_params(text: str) -> dict[str, str]:
    """Read what the user pasted: the whole redirect URL, its query, or the bare code."""
    text = text.strip()
    if not any(key in text for key in _REDIRECT_KEYS):
        # A bare code (which may itself contain '=' padding).
        return {"code": text} if text and not any(c.isspace() for c in text) else {}
    query = urlsplit(text).query if "://" in text or text.startswith("/") else text
    return dict(parse_qsl(query.lstrip("?")))


def state_problem(params: dict[str, str], state: str) -> str | None:
    """Return why a redirect does not carry our `state`, or None when it does."""
    received = params.get("state")
    if received is None:
        return "the redirect carries no state, so it cannot be from this link attempt"
    if not hmac.compare_digest(received.encode(), state.encode()):
        return (
            "the redirect's state does not match this link attempt (an old tab, or a forged link)"
        )
    return None


def check_redirect(params: dict[str, str], state: str | None, *, cloud: str = "The cloud") -> str:
    """Return the code of an accepted redirect; raise LinkFailed for an error or no code.

    `state` is checked unless None (a bare pasted code: the user typed it, nobody forged it).
    `cloud` names who refused, when the redirect carries an error.
    """
    if state is not None and (problem := state_problem(params, state)) is not None:
        raise LinkFailed(problem + "; nothing was saved. Start again with the new URL")
    if "error" in params:
        detail = params.get("error_description") or params["error"]
        msg = f"{cloud} did not grant access: {detail} ({params['error']})"
        raise LinkFailed(msg)
    code = params.get("code")
    if not code:
        msg = "the redirect carried no authorization code"
        raise LinkFailed(msg)
    return code


async def authorize(
    authorization_url: Callable[[str], str],
    redirect_uri: str,
    *,
    cloud: str,
    show_url: Callable[[str, bool], None],
    read_paste: Callable[[], Awaitable[str]] | None = None,
    say: Callable[[str], None] = print,
    timeout_s: float = 900.0,
) -> str:
    """Run an OAuth2 authorization-code consent in a browser; return the code it granted.

    `authorization_url(state)` is the consent page, shown by `show_url(url, listening)`. The
    redirect is received on this machine when `redirect_uri` points here; either way the user
    may paste the redirect URL (or just the code) instead, via `read_paste`. `cloud` is who
    the user consents at, in messages.
    """
    state = secrets.token_urlsafe(32)
    url = authorization_url(state)
    listener = _listen_for(redirect_uri)
    if listener is None and read_paste is None:
        msg = f"cannot receive redirects at {redirect_uri} here, and nothing can be pasted"
        raise LinkFailed(msg)
    async with contextlib.AsyncExitStack() as stack:
        waiting: set[asyncio.Future[Redirect]] = set()
        if listener is not None:
            sock, path = listener
            receiver = redirect_receiver(sock, path, lambda p: state_problem(p, state))
            waiting.add(await stack.enter_async_context(receiver))
        if read_paste is not None:
            waiting.add(asyncio.ensure_future(_pasted(read_paste, state, say, cloud)))
        show_url(url, listener is not None)
        try:
            done, _ = await _within(
                asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED), timeout_s
            )
        finally:
            for future in waiting:
                future.cancel()
        redirect = done.pop().result()
    bare = set(redirect.params) == {"code"} and redirect.pasted
    return check_redirect(redirect.params, None if bare else state, cloud=cloud)


async def _pasted(
    read: Callable[[], Awaitable[str]], state: str, say: Callable[[str], None], cloud: str
) -> Redirect:
    """Read pasted lines until one is a redirect of ours (or a bare code)."""
    while True:
        params = redirect_params(await read())
        if not params:
            continue
        if set(params) != {"code"} and (problem := state_problem(params, state)) is not None:
            say(f"{problem}; paste the address of the page {cloud} sent you to, or just the code")
            continue
        if "code" not in params and "error" not in params:
            say("no code in that; paste the whole address, or just the code")
            continue
        return Redirect(params, pasted=True)
