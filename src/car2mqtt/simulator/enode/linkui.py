"""The simulated Enode Link UI: real HTML pages to pick a brand, log in and grant scopes."""

from __future__ import annotations

from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from car2mqtt.errors import SimulatorError
from car2mqtt.net import with_query
from car2mqtt.simulator.catalog import VEHICLE_VENDORS, VENDORS
from car2mqtt.simulator.enode.cloud import EnodeCloud, LinkSession

SCOPE_TEXT = {
    "vehicle:read:data": "Read battery level, range, charging state and odometer",
    "vehicle:read:location": "Read the vehicle's location",
    "vehicle:control:charging": "Start and stop charging",
}

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem} .brands{display:grid;grid-template-columns:1fr 1fr;gap:.5rem}
button{padding:.6rem 1rem;font-size:1rem;border-radius:.4rem;border:1px solid #888;cursor:pointer}
button.primary{background:#0b5;color:#fff;border-color:#0b5} input{width:100%;padding:.5rem;
margin:.2rem 0 .8rem;box-sizing:border-box} .error{color:#b00} .note{color:#666;font-size:.85rem}
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)} · Enode Link (simulated)</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}"
        "<p class='note'>car2mqtt simulator: any username and password work here.</p>"
        "</body></html>"
    )
    return HTMLResponse(html, status_code=status)


def routes(cloud: EnodeCloud) -> list[BaseRoute]:
    """Return the Link UI routes, to mount beside the API."""

    def base(request: Request, session: LinkSession) -> str:
        return f"{request.scope.get('root_path', '')}/link/{session.id}"

    def session_or_page(request: Request) -> LinkSession | HTMLResponse:
        cloud.world.sync()
        try:
            return cloud.link_session(request.path_params["sessionId"])
        except SimulatorError as exc:
            return _page("This link can't be used", f"<p class='error'>{escape(str(exc))}</p>", 410)

    async def start(request: Request) -> Response:
        session = session_or_page(request)
        if isinstance(session, HTMLResponse):
            return session
        if session.vendor is not None:
            return RedirectResponse(f"{base(request, session)}/login", status_code=303)
        # Vendors the simulator knows models for first, then the rest Enode supports.
        vendors = list(VENDORS) + [v for v in VEHICLE_VENDORS if v not in VENDORS]
        buttons = "".join(
            f"<button name='vendor' value='{escape(v)}'>{escape(VEHICLE_VENDORS.get(v, v))}"
            "</button>"
            for v in vendors
        )
        return _page(
            "Connect your car",
            f"<p>Choose your car's brand.</p><form method='post' action='{base(request, session)}"
            f"/vendor' class='brands'>{buttons}</form>",
        )

    async def pick_vendor(request: Request) -> Response:
        session = session_or_page(request)
        if isinstance(session, HTMLResponse):
            return session
        vendor = (await request.form()).get("vendor")
        if not isinstance(vendor, str) or vendor not in VEHICLE_VENDORS:
            return _page("Unknown brand", "<p class='error'>Pick a brand from the list.</p>", 400)
        session.vendor = vendor
        return RedirectResponse(f"{base(request, session)}/login", status_code=303)

    def login_page(request: Request, session: LinkSession, error: str = "") -> HTMLResponse:
        brand = VEHICLE_VENDORS.get(session.vendor or "", session.vendor or "")
        note = f"<p class='error'>{escape(error)}</p>" if error else ""
        return _page(
            f"Log in to {brand}",
            f"{note}<form method='post' action='{base(request, session)}/login'>"
            "<label>Username<input name='username' autocomplete='username'></label>"
            "<label>Password<input name='password' type='password'></label>"
            "<button class='primary' type='submit'>Log in</button></form>",
            400 if error else 200,
        )

    async def login(request: Request) -> Response:
        session = session_or_page(request)
        if isinstance(session, HTMLResponse):
            return session
        if session.vendor is None:
            return RedirectResponse(base(request, session), status_code=303)
        if request.method == "GET":
            return login_page(request, session)
        form = await request.form()
        username, password = form.get("username"), form.get("password")
        if not isinstance(username, str) or not username.strip():
            return login_page(request, session, "Enter a username.")
        if not isinstance(password, str) or not password:
            return login_page(request, session, "Enter a password.")
        session.logged_in_as = username.strip()
        return RedirectResponse(f"{base(request, session)}/consent", status_code=303)

    async def consent(request: Request) -> Response:
        session = session_or_page(request)
        if isinstance(session, HTMLResponse):
            return session
        if session.logged_in_as is None:
            return RedirectResponse(f"{base(request, session)}/login", status_code=303)
        items = "".join(f"<li>{escape(SCOPE_TEXT.get(s, s))}</li>" for s in session.scopes)
        here = base(request, session)
        return _page(
            "Review access",
            f"<p>Signed in as <b>{escape(session.logged_in_as)}</b>. The app asks to:</p>"
            f"<ul>{items}</ul>"
            f"<form method='post' action='{here}/complete'>"
            "<button class='primary' type='submit'>Complete</button></form>"
            f"<form method='post' action='{here}/cancel'><button type='submit'>Cancel</button>"
            "</form>",
        )

    async def complete(request: Request) -> Response:
        session = session_or_page(request)
        if isinstance(session, HTMLResponse):
            return session
        if session.logged_in_as is None:
            return RedirectResponse(f"{base(request, session)}/login", status_code=303)
        cloud.complete_link(session)
        return RedirectResponse(session.redirect_uri, status_code=303)

    async def cancel(request: Request) -> Response:
        session = session_or_page(request)
        if isinstance(session, HTMLResponse):
            return session
        cloud.cancel_link(session)
        target = with_query(
            session.redirect_uri,
            {"error": "access_denied", "error_message": "The user cancelled linking."},
        )
        return RedirectResponse(target, status_code=303)

    return [
        Route("/link/{sessionId}", start, methods=["GET"]),
        Route("/link/{sessionId}/vendor", pick_vendor, methods=["POST"]),
        Route("/link/{sessionId}/login", login, methods=["GET", "POST"]),
        Route("/link/{sessionId}/consent", consent, methods=["GET"]),
        Route("/link/{sessionId}/complete", complete, methods=["POST"]),
        Route("/link/{sessionId}/cancel", cancel, methods=["POST"]),
    ]
