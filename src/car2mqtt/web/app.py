"""The web UI's routes: overview, car and account pages, linking, configuration, live events.

Every path is relative to the request's prefix (HA ingress's `X-Ingress-Path`, else
`web.base_path`), and every link a page carries is built with it. Bad input (an unknown car,
a stale state, a forged callback, a malformed form) gets a page that says what went wrong
and links back; never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import jinja2
import yaml
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from car2mqtt import __version__
from car2mqtt.bridge.commands import CommandService
from car2mqtt.bridge.hub import VehicleHub
from car2mqtt.bridge.known import KnownAccount
from car2mqtt.bridge.push import PushSource
from car2mqtt.clock import Clock
from car2mqtt.config import Config, WebSettings, describe
from car2mqtt.errors import Car2MqttError, CommandRejected, StoreError
from car2mqtt.ha import discovery
from car2mqtt.history.records import HistoryBackend, Session, Trip
from car2mqtt.linking import redirect_params
from car2mqtt.models import LinkState
from car2mqtt.providers.base import Command, HoldsToken, Provider
from car2mqtt.providers.plugin import WebLink
from car2mqtt.providers.registry import plugin_of
from car2mqtt.serving import embedded_server, serve_http
from car2mqtt.store import Store
from car2mqtt.web import views
from car2mqtt.web.access import SESSION_COOKIE, Guard, Verdict, prefix_of
from car2mqtt.web.attempts import Attempt, Attempts
from car2mqtt.web.chart import WINDOW_S, battery_chart, energy_chart, energy_since
from car2mqtt.web.receiver import receiver_route
from car2mqtt.web.sink import CallMeter, WebSink
from car2mqtt.web.views import SETTING_COMMANDS

_LOGGER = logging.getLogger(__name__)

MAX_FORM_BYTES = 64 * 1024
LINK_WAIT_S = 20.0  # how long the callback waits for the first read of a new link
KEEPALIVE_S = 15.0
COALESCE_S = 0.5  # at most two nudges a second per page, however busy the hub is
DAY_S = 86400.0
R = TypeVar("R", Session, Trip)


@dataclass(frozen=True, slots=True)
class BridgeFacts:
    """What the overview says about the bridge itself."""

    started_at: float
    mqtt_connected: bool
    ha_online_at: float | None


@dataclass(frozen=True, slots=True)
class WebParts:
    """The parts of the running bridge the UI uses, injected by the composition root."""

    hub: VehicleHub
    commands: CommandService
    providers: Mapping[str, Provider]
    poll_now: Callable[[str], None]
    facts: Callable[[], BridgeFacts]
    store: Store
    clock: Clock
    config: Config
    # Webhook deliveries, when they come to this server (no `webhook.port` of their own).
    push: PushSource | None = None
    history: HistoryBackend | None = None  # sessions, trips and the charts' samples


class _Problem(Exception):
    """A request the UI cannot serve: shown as a page with a way back."""

    def __init__(self, status: int, title: str, text: str, back: str = "/") -> None:
        super().__init__(text)
        self.status, self.title, self.text, self.back = status, title, text, back


def _prefix(request: Request) -> str:
    return str(request.scope.get("state", {}).get("prefix", ""))


def _session(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE)


class WebUI:
    """The web UI of one running bridge: its sink, its guard and its Starlette app."""

    def __init__(self, parts: WebParts, settings: WebSettings) -> None:
        self._parts = parts
        self.settings = settings
        self.sink = WebSink(parts.hub)
        self.guard = Guard.from_settings(settings)
        self.attempts = Attempts()
        self._meter = CallMeter(parts.clock.time)
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("car2mqtt.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        routes = [
            Route("/", self.overview),
            Route("/cars/{key}", self.car),
            Route("/cars/{key}/commands", self.command, methods=["POST"]),
            Route("/accounts/{name}", self.account),
            Route("/accounts/{name}/link", self.start_link, methods=["POST"]),
            Route("/accounts/{name}/paste", self.paste, methods=["POST"]),
            Route("/link/callback", self.callback),
            Route("/config", self.configuration),
            Route("/events", self.events),
            Route("/healthz", self.health),
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Mount("/static", StaticFiles(packages=[("car2mqtt.web", "static")]), name="static"),
        ]
        if parts.push is not None and parts.push.accounts:
            routes.append(receiver_route(parts.push))
        inner = Starlette(
            routes=routes,
            exception_handlers={
                HTTPException: self._http_error,
                _Problem: self._problem,
                Exception: self._unexpected,
            },
        )
        self.app: ASGIApp = _Gate(inner, self)

    async def serve(self, sock: socket.socket) -> None:
        """Serve the UI on `sock` until cancelled."""
        await serve_http(embedded_server(self.app), sock, on_stop=self.sink.close)

    # ---- rendering -------------------------------------------------------------------------

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> Response:
        """Render `template` with what every page needs (its prefix, CSRF token, facts)."""
        prefix = _prefix(request)
        page = self._env.get_template(template).render(
            url=lambda path: prefix + path,
            prefix=prefix,
            csrf=self.guard.csrf_token(_session(request)),
            version=__version__,
            logged_in=self.guard.session_valid(_session(request)),
            **context,
        )
        headers = {"Cache-Control": "no-store", "Referrer-Policy": "same-origin"}
        return HTMLResponse(page, status_code=status, headers=headers)

    def _message(self, request: Request, status: int, title: str, text: str, back: str) -> Response:
        return self.render(request, "message.html", status, title=title, text=text, back=back)

    async def _problem(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Problem)
        return self._message(request, exc.status, exc.title, exc.text, exc.back)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return self._message(request, 404, "Not found", "There is no such page here.", "/")
        text = "This page does not take that kind of request."
        return self._message(request, exc.status_code, "Not allowed", text, "/")

    async def _unexpected(self, request: Request, exc: Exception) -> Response:
        _LOGGER.error("web UI: unexpected error on %s", request.url.path, exc_info=exc)
        text = "Something went wrong inside car2mqtt; its log has the details."
        return self._message(request, 500, "Unexpected error", text, "/")

    # ---- reading the hub -------------------------------------------------------------------

    def _now(self) -> float:
        return self._parts.clock.time()

    def _account(self, name: str) -> KnownAccount:
        try:
            return self._parts.hub.account(name)
        except KeyError:
            text = f"There is no account called {name!r} in the configuration."
            raise _Problem(404, "No such account", text) from None

    def _account_line(self, account: KnownAccount) -> dict[str, Any]:
        provider = self._parts.providers[account.name]
        total = account.api_calls()
        hour, hour_full = self._meter.since(account.name, total, 3600)
        day, day_full = self._meter.since(account.name, total, 86400)
        until = provider.token_valid_until() if isinstance(provider, HoldsToken) else None
        now = self._now()
        return {
            "name": account.name,
            "provider": account.spec.title,
            "relink": account.link is LinkState.RELINK_REQUIRED,
            "problem": account.problem,
            "stale": account.stale,
            "failures": account.failures,
            "last_error": account.last_error,
            "last_error_ago": views.ago(now - account.last_error_at)
            if account.last_error_at is not None
            else None,
            "token_until": views.when(until) if until is not None else None,
            "token_expired": until is not None and until <= now,
            "calls_hour": hour,
            "calls_day": day,
            "calls_since_start": not (hour_full and day_full),
            "cars": len(account.vehicles),
            "linkable": self._web_link(account) is not None,
            "push": account.push.value,
            "push_detail": account.push_detail,
            "last_push_ago": views.ago(now - account.last_push_at)
            if account.last_push_at is not None
            else None,
        }

    def _web_link(self, account: KnownAccount) -> WebLink | None:
        return plugin_of(self._parts.config.account(account.name)).web_link

    # ---- pages -----------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        """Answer a health probe: 200 while the bridge is connected to its broker, else 503."""
        connected = self._parts.facts().mqtt_connected
        body = {"status": "ok" if connected else "unhealthy", "mqtt": connected}
        return JSONResponse(body, status_code=200 if connected else 503)

    async def overview(self, request: Request) -> Response:
        """Show the bridge, each account and each car."""
        hub, now = self._parts.hub, self._now()
        facts = self._parts.facts()
        cars = [
            views.car_line(vehicle, account, now)
            for account in hub.accounts()
            for vehicle in account.vehicles.values()
        ]
        return self.render(
            request,
            "overview.html",
            uptime=views.ago(now - facts.started_at).removesuffix(" ago"),
            mqtt_connected=facts.mqtt_connected,
            ha_online=views.ago(now - facts.ha_online_at) if facts.ha_online_at else None,
            accounts=[self._account_line(a) for a in hub.accounts()],
            cars=cars,
        )

    async def car(self, request: Request) -> Response:
        """Show everything known of one car, its commands, its battery chart and its history."""
        key = request.path_params["key"]
        vehicle = self._parts.hub.vehicle(key)
        if vehicle is None:
            text = "No car with that id is known to this bridge (it may have been removed)."
            raise _Problem(404, "No such car", text)
        account = self._parts.hub.account_of(vehicle)
        now = self._now()
        history = self._parts.history
        samples = []
        if history is not None:
            try:
                samples = await history.samples(key, now - WINDOW_S)
            except StoreError:
                _LOGGER.info("web UI: the history database cannot be read now")
        offered = views.commands_of(vehicle.state, self._parts.providers[account.name].spec)
        return self.render(
            request,
            "car.html",
            car=views.car_line(vehicle, account, now),
            values=views.values_of(vehicle.state, now),
            steps=[views.step_of(r, now) for r in self.sink.commands(key)],
            chart=battery_chart([(s.at, s.battery_pct) for s in samples], now),
            commands=[c for c in offered if c not in SETTING_COMMANDS],
            settings=[views.setting_of(c, vehicle.state) for c in offered if c in SETTING_COMMANDS],
            notice=request.query_params.get("notice"),
            history=await self._history(key, now),
        )

    async def _history(self, key: str, now: float) -> views.HistoryView | None:
        """Read a car's last sessions and trips and its energy per day; None: history is off."""
        history = self._parts.history
        if history is None:
            return None
        try:
            # Sessions since the first month the energy chart shows, trips of a month; wider
            # (a year, then all) while a car's page has fewer than it lists.
            sessions = await _latest(
                lambda since: history.sessions(key, since), (energy_since(now), now - 365 * DAY_S)
            )
            trips = await _latest(
                lambda since: history.trips(key, since), (now - 30 * DAY_S, now - 365 * DAY_S)
            )
        except StoreError as exc:
            _LOGGER.info("web UI: the history database cannot be read now (%s)", exc)
            return views.HistoryView(readable=False)
        energy = energy_chart([(s.started_at, s.energy_kwh) for s in sessions], now)
        return views.history_of(sessions, trips, energy)

    async def account(self, request: Request) -> Response:
        """Show one account: its link, how to fix it, and its cars."""
        account = self._account(request.path_params["name"])
        link = self._web_link(account)
        now = self._now()
        return self.render(
            request,
            "account.html",
            account=self._account_line(account),
            link=link,
            pending=link is not None and link.paste and self.attempts.latest(account.name),
            cars=[views.car_line(v, account, now) for v in account.vehicles.values()],
            linked=request.query_params.get("linked"),
        )

    async def configuration(self, request: Request) -> Response:
        """Show the effective configuration, secrets masked, and what `config check` says."""
        config = self._parts.config
        # mode="json" shows every SecretStr as asterisks: no secret reaches the page.
        shown = yaml.safe_dump(config.model_dump(mode="json", by_alias=True), sort_keys=False)
        return self.render(request, "config.html", effective=shown, summary=describe(config))

    # ---- actions ---------------------------------------------------------------------------

    async def _form(self, request: Request, back: str) -> FormData:
        """Read a POSTed form and check its CSRF token (refused: a page, never a 500)."""
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
            raise _Problem(413, "Form too large", "That form is larger than any of ours.", back)
        try:
            form = await request.form(max_files=0, max_fields=20)
        except Exception:
            _LOGGER.info("web UI: unreadable form on %s", request.url.path)
            raise _Problem(400, "Unreadable form", "The form could not be read.", back) from None
        if not self.guard.csrf_ok(_session(request), form.get("csrf")):
            text = (
                "The form's security token is missing or out of date (the page was older "
                "than car2mqtt's last start, or the form came from another site). Reload the "
                "page and try again."
            )
            raise _Problem(403, "Form refused", text, back)
        return form

    async def command(self, request: Request) -> Response:
        """Send a command to a car through the command service, as MQTT would."""
        key = request.path_params["key"]
        back = f"/cars/{key}"
        form = await self._form(request, back)
        vehicle = self._parts.hub.vehicle(key)
        if vehicle is None:
            raise _Problem(404, "No such car", "No car with that id is known to this bridge.")
        asked = form.get("command")
        try:
            command = Command(asked) if isinstance(asked, str) else None
        except ValueError:
            command = None
        if command is None:
            names = ", ".join(c.value for c in Command)
            raise _Problem(400, "Unknown command", f"Commands are: {names}.", back)
        raw = form.get("value")
        text = raw.strip()[:40] if isinstance(raw, str) else ""
        try:
            value = None
            setting = SETTING_COMMANDS.get(command)
            if setting is not None:
                value = discovery.setting_value(setting, text, f"{text!r}")
            self._parts.commands.submit(vehicle, command, value)
        except CommandRejected as exc:
            # Shown among the car's commands, as a rejection on MQTT is.
            await self._parts.commands.rejected(vehicle, command.value, str(exc), text or None)
        return RedirectResponse(_prefix(request) + back, status_code=303)

    async def start_link(self, request: Request) -> Response:
        """Start linking an account: off to the cloud's page, with a fresh single-use state."""
        name = request.path_params["name"]
        back = f"/accounts/{name}"
        form = await self._form(request, back)
        account = self._account(name)
        link = self._web_link(account)
        if link is None:
            raise _Problem(400, "Nothing to link", f"{account.spec.title} needs no linking.", back)
        values = {f.name: str(form.get(f.name) or "")[:200] for f in link.fields}
        state = self.attempts.new_state()
        callback = _origin(request, self.guard) + _prefix(request) + "/link/callback"
        try:
            start = await link.start(
                self._parts.providers[name],
                self._parts.config.account(name),
                callback,
                state,
                values,
            )
        except Car2MqttError as exc:
            raise _Problem(502, "Linking could not start", str(exc), back) from None
        self.attempts.open(state, name, start.redirect_uri)
        _LOGGER.info("web UI: linking account %s started", name)
        if start.comes_back:
            return RedirectResponse(start.url, status_code=303)
        return self.render(
            request,
            "link_step.html",
            account=self._account_line(account),
            link_url=start.url,
            redirect_uri=start.redirect_uri,
            state=state,
        )

    async def callback(self, request: Request) -> Response:
        """Take the browser back from the cloud: check the state, keep what it granted."""
        params = dict(request.query_params)
        found = self.attempts.take(params.get("state"))
        if isinstance(found, str):
            _LOGGER.warning("web UI: refused a link redirect: %s", found)
            raise _Problem(400, "Not this link", _sentence(found))
        return await self._finish(request, found, params)

    async def paste(self, request: Request) -> Response:
        """Take the address the cloud sent the browser to (or its code), pasted by the user."""
        name = request.path_params["name"]
        back = f"/accounts/{name}"
        form = await self._form(request, back)
        self._account(name)
        params = redirect_params(str(form.get("pasted") or "")[:4096])
        if not params:
            text = "Paste the whole address of the page the cloud sent you to, or just the code."
            raise _Problem(400, "Nothing to use", text, back)
        if "state" in params:
            found = self.attempts.take(params["state"], account=name)
        else:
            # A bare code: nobody forged it, the user typed it; it goes to their attempt.
            latest = self.attempts.latest(name)
            found = self.attempts.take(latest.state) if latest else "start linking first"
        if isinstance(found, str):
            raise _Problem(400, "Not this link", _sentence(found), back)
        return await self._finish(request, found, params)

    async def _finish(self, request: Request, attempt: Attempt, params: dict[str, str]) -> Response:
        name, back = attempt.account, f"/accounts/{attempt.account}"
        account = self._account(name)
        link = self._web_link(account)
        assert link is not None
        try:
            await link.finish(
                self._parts.providers[name],
                self._parts.config.account(name),
                params,
                attempt.redirect_uri,
            )
        except Car2MqttError as exc:
            _LOGGER.warning("web UI: linking account %s failed: %s", name, exc)
            raise _Problem(400, "Linking did not finish", str(exc), back) from None
        _LOGGER.info("web UI: account %s linked; reading its cars now", name)
        waiting = asyncio.ensure_future(self.sink.next_listing(name, LINK_WAIT_S))
        self._parts.poll_now(name)
        read = await waiting
        return RedirectResponse(
            f"{_prefix(request)}{back}?linked={'yes' if read else 'waiting'}", status_code=303
        )

    # ---- live updates ----------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        """Stream server-sent events: a nudge whenever the hub changes; the page refetches."""
        sink = self.sink

        async def stream() -> AsyncIterator[str]:
            async with sink.listening() as changed:
                yield "retry: 3000\n\n"
                while not sink.closing.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(KEEPALIVE_S):
                            await changed.wait()
                    if sink.closing.is_set():
                        return
                    if not changed.is_set():
                        yield ": keep-alive\n\n"
                        continue
                    changed.clear()
                    yield "event: update\ndata: {}\n\n"
                    await asyncio.sleep(COALESCE_S)

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    # ---- login -----------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        """Ask for the password (only when `web.password` is set)."""
        if self.guard.password is None:
            return RedirectResponse(_prefix(request) + "/", status_code=303)
        if request.method == "GET":
            return self.render(request, "login.html", error=None)
        form = await self._form(request, "/login")
        if not self.guard.check_password(str(form.get("password") or "")):
            _LOGGER.warning("web UI: a wrong password from %s", _client(request))
            await asyncio.sleep(1.0)  # slows guessing down
            return self.render(request, "login.html", 401, error="That is not the password.")
        response = RedirectResponse(_prefix(request) + "/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            self.guard.new_session(),
            max_age=30 * 86400,
            path=(_prefix(request) or "") + "/",
            httponly=True,
            samesite="lax",
        )
        return response

    async def logout(self, request: Request) -> Response:
        """End the login session."""
        await self._form(request, "/")
        self.guard.end_session(_session(request))
        response = RedirectResponse(_prefix(request) + "/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=(_prefix(request) or "") + "/")
        return response


def _sentence(reason: str) -> str:
    """Write a reason ("the state ...") as a sentence of its own."""
    return reason[:1].upper() + reason[1:] + "."


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def _origin(request: Request, guard: Guard) -> str:
    """Return scheme://host the browser reached the UI at (a trusted proxy's word for it)."""
    headers = request.headers
    scheme, host = request.url.scheme, headers.get("host") or request.url.netloc
    if guard.trusted_proxy(_client(request)):
        scheme = headers.get("x-forwarded-proto", scheme).split(",")[0].strip() or scheme
        host = headers.get("x-forwarded-host", host).split(",")[0].strip() or host
    return f"{scheme}://{host}"


# The receiver's route, exactly: nothing else under /webhooks/ passes the gate unasked.
_RECEIVER = re.compile(r"/webhooks/[a-z0-9_-]+/[a-z0-9_-]+")


class _Gate:
    """Before any route: the path prefix, and whether this client may use the UI at all."""

    def __init__(self, app: ASGIApp, ui: WebUI) -> None:
        self._app = app
        self._ui = ui
        self._base = ui.settings.base_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request = Request(scope)
        path = scope["path"]
        guard = self._ui.guard
        # Only a trusted proxy says where it serves the UI: believed from anyone, a header
        # could move any page under a path a proxy forwards (say /webhooks/).
        trusted = guard.trusted_proxy(_client(request))
        prefix = prefix_of(request.headers, self._base) if trusted else self._base
        for cut in {self._base, prefix}:
            if cut and (path == cut or path.startswith(cut + "/")):
                # Proxies that keep the prefix and proxies that strip it both work.
                scope = {**scope, "path": path[len(cut) :] or "/"}
                break
        scope = {**scope, "state": {**scope.get("state", {}), "prefix": prefix}}
        verdict = guard.verdict(_client(request), request.cookies.get(SESSION_COOKIE))
        open_path = scope["path"] == "/login" or scope["path"].startswith("/static/")
        # A container's or a supervisor's health probe carries no login; it learns one word.
        # A webhook delivery carries none either: its signature is checked instead.
        probe = scope["path"] == "/healthz" or (
            request.method == "POST" and _RECEIVER.fullmatch(scope["path"]) is not None
        )
        if verdict is Verdict.ALLOWED or (verdict is Verdict.LOGIN and open_path) or probe:
            await self._app(scope, receive, send)
            return
        request = Request(scope, receive)
        if verdict is Verdict.LOGIN:
            if request.method == "GET" and scope["path"] != "/events":
                response: Response = RedirectResponse(prefix + "/login", status_code=303)
            else:
                text = "Log in first."
                response = self._ui._message(request, 401, "Log in first", text, "/login")
        else:
            _LOGGER.warning("web UI: refused a request from %s", _client(request))
            text = (
                "This car2mqtt web UI answers only its trusted proxies (web.trusted_proxies), "
                "and no web.password is set to log in with."
            )
            response = self._ui._message(request, 403, "Not from here", text, "/")
        await response(scope, receive, send)


async def _latest(
    read: Callable[[float | None], Awaitable[list[R]]], windows: Sequence[float]
) -> list[R]:
    """Return enough of a car's newest rows for its page, reading no more than needed.

    The backend returns everything since a moment: each of `windows` (oldest bound last) in
    turn, then everything, until there are `views.HISTORY_ROWS` rows.
    """
    for since in windows:
        rows = await read(since)
        if len(rows) >= views.HISTORY_ROWS:
            return rows
    return await read(None)
