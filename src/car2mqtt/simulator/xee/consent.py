"""Xee's authorize page: a real HTML login and consent form, then the redirect with a code."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from starlette.datastructures import FormData, QueryParams
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from car2mqtt.net import with_query
from car2mqtt.simulator.xee.auth import DEFAULT_SCOPE, XeeAuth, redirect_allowed

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem} button{padding:.6rem 1rem;font-size:1rem;border-radius:.4rem;
border:1px solid #888;cursor:pointer;margin-right:.5rem} button.primary{background:#e4002b;
color:#fff;border-color:#e4002b} input{width:100%;padding:.5rem;margin:.2rem 0 .8rem;
box-sizing:border-box} .error{color:#b00} .note{color:#666;font-size:.85rem}
"""
_PASSED_ON = ("client_id", "response_type", "scope", "redirect_uri", "state")


_TEMPLATE = (
    "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
    "<meta name='viewport' content='width=device-width, initial-scale=1'>"
    "<title>{title} · Xee (simulated)</title><style>{style}</style></head>"
    "<body><h1>{title}</h1>{body}</body></html>"
)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = _TEMPLATE.format(title=escape(title), style=_STYLE, body=body)
    return HTMLResponse(html, status_code=status)


@dataclass(frozen=True, slots=True)
class _Ask:
    """What the client asked for, from the query (GET) or the hidden fields (POST)."""

    client_id: str
    response_type: str
    scope: str
    redirect_uri: str
    state: str | None

    @classmethod
    def read(cls, params: QueryParams | FormData) -> _Ask:
        def get(name: str) -> str:
            value = params.get(name)
            return value if isinstance(value, str) else ""

        state = params.get("state")
        return cls(
            get("client_id"),
            get("response_type"),
            get("scope"),
            get("redirect_uri"),
            state if isinstance(state, str) else None,
        )

    def back(self, **params: str) -> RedirectResponse:
        """Redirect to the client with `params` and the state, verbatim."""
        if self.state is not None:
            params["state"] = self.state
        return RedirectResponse(with_query(self.redirect_uri, params), status_code=302)


class ConsentPages:
    """`GET` shows the login and consent form; `POST` answers it."""

    def __init__(self, auth: XeeAuth) -> None:
        self.auth = auth

    def _check(self, ask: _Ask) -> Response | None:
        """Return the answer to a request that must not reach the form, if it is one."""
        if not ask.client_id or ask.client_id != self.auth.options.xee_client_id:
            return _page("Unknown application", "<p class='error'>Unknown client_id.</p>", 400)
        if not redirect_allowed(ask.redirect_uri):
            # Never send the user on to an address the client did not register.
            msg = "The redirect_uri is missing or not registered for this application."
            return _page("Invalid redirect", f"<p class='error'>{escape(msg)}</p>", 400)
        if ask.response_type != "code":
            return ask.back(error="unsupported_response_type")
        return None

    def _form(self, request: Request, ask: _Ask, error: str = "", email: str = "") -> Response:
        action = f"{request.scope.get('root_path', '')}/v4/oauth/authorize"
        hidden = "".join(
            f"<input type='hidden' name='{name}' value='{escape(value)}'>"
            for name in _PASSED_ON
            if (value := getattr(ask, name)) is not None
        )
        scopes = "".join(f"<li>{escape(s)}</li>" for s in (ask.scope or DEFAULT_SCOPE).split())
        note = f"<p class='error'>{escape(error)}</p>" if error else ""
        # A fake cloud's published test login: showing it is the point, there is nothing to hide.
        options = self.auth.options
        login = (
            "<p class='note'>Simulator test login: "
            f"<code>{escape(options.xee_username)}</code>, password "
            f"<code>{escape(options.xee_password)}</code></p>"
        )
        return _page(
            "Sign in to Xee",
            f"{note}<p>An application wants to access your Xee account:</p><ul>{scopes}</ul>"
            f"<form method='post' action='{escape(action)}'>{hidden}"
            f"<label>Email<input name='email' type='email' value='{escape(email)}'"
            " autocomplete='username'></label>"
            "<label>Password<input name='password' type='password'"
            " autocomplete='current-password'></label>"
            "<button class='primary' type='submit' name='decision' value='approve'>Approve"
            "</button><button type='submit' name='decision' value='deny'>Deny</button></form>"
            f"{login}",
        )

    async def show(self, request: Request) -> Response:
        """Show the login and consent form."""
        self.auth.world.sync()
        ask = _Ask.read(request.query_params)
        return self._check(ask) or self._form(request, ask)

    async def answer(self, request: Request) -> Response:
        """Log the user in and send them back with a code, or with `access_denied`."""
        self.auth.world.sync()
        form = await request.form()
        ask = _Ask.read(form)
        if (refused := self._check(ask)) is not None:
            return refused
        if form.get("decision") == "deny":
            return ask.back(error="access_denied")
        email, password = form.get("email"), form.get("password")
        email = email if isinstance(email, str) else ""
        user = self.auth.login(email, password if isinstance(password, str) else "")
        if user is None:
            return self._form(request, ask, "Wrong email or password.", email)
        return ask.back(code=self.auth.issue_code(user, ask.redirect_uri, ask.scope))
