"""Helpers for the Xee simulator tests: a plain HTTP client and a browser for the consent page."""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from tests.support import Sim

REDIRECT = "http://127.0.0.1:8123/callback"


@dataclass
class Form:
    """The consent page's form: where it posts, and its hidden fields."""

    action: str
    hidden: dict[str, str]
    error: str


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.hidden: dict[str, str] = {}
        self.error = ""
        self._in_error = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a.get("action", "")
        elif tag == "input" and a.get("type") == "hidden":
            self.hidden[a["name"]] = a.get("value", "")
        elif tag == "p" and a.get("class") == "error":
            self._in_error = True

    def handle_data(self, data: str) -> None:
        if self._in_error:
            self.error += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self._in_error = False


def parse_form(html: str) -> Form:
    """Read the consent form out of a page."""
    parser = _FormParser()
    parser.feed(html)
    return Form(parser.action, parser.hidden, parser.error)


def query(location: str) -> dict[str, str]:
    """Return a redirect's query parameters (single values)."""
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query, keep_blank_values=True).items()}


class Xee:
    """A plain client of the simulated Xee cloud."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        info = sim.info["xee"]
        self.api = info["apiUrl"]
        self.client_auth = (info["clientId"], info["clientSecret"])
        self.username, self.password = info["username"], info["password"]
        self.user_id = next(iter(info["users"]))
        self.http = httpx.Client(timeout=10, follow_redirects=False)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def vehicle_ids(self) -> list[str]:
        """The demo user's vehicles, oldest first."""
        return list(self.sim.info["xee"]["users"][self.user_id])

    def token_call(self, auth: Any = None, **form: str) -> httpx.Response:
        """POST the token endpoint with `form`, as the registered client unless told otherwise."""
        return self.http.post(
            f"{self.api}/oauth/token", data=form, auth=self.client_auth if auth is None else auth
        )

    def login(self, username: str | None = None, password: str | None = None) -> dict[str, Any]:
        """Get a token pair with the password grant."""
        r = self.token_call(
            grant_type="password",
            username=username or self.username,
            password=password or self.password,
        )
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    def refresh(self, token: str) -> httpx.Response:
        """Use a refresh token."""
        return self.token_call(grant_type="refresh_token", refresh_token=token)

    def get(self, path: str, token: str, **params: Any) -> httpx.Response:
        """GET an API path with a bearer token."""
        headers = {"Authorization": f"Bearer {token}"}
        return self.http.get(f"{self.api}{path}", headers=headers, params=params)

    def authorize(self, **params: str) -> httpx.Response:
        """Open the authorize page as a browser would."""
        return self.http.get(f"{self.api}/oauth/authorize", params=params)

    def submit(self, page: httpx.Response, **fields: str) -> httpx.Response:
        """Fill in and post the consent form on `page`."""
        form = parse_form(page.text)
        return self.http.post(urljoin(str(page.url), form.action), data={**form.hidden, **fields})

    def consent(self, state: str = "xyz", redirect_uri: str = REDIRECT) -> str:
        """Go through the consent page and return the authorization code."""
        page = self.authorize(
            client_id=self.client_auth[0],
            response_type="code",
            scope="account.read vehicles.read",
            redirect_uri=redirect_uri,
            state=state,
        )
        assert page.status_code == 200, page.text
        r = self.submit(page, email=self.username, password=self.password, decision="approve")
        assert r.status_code == 302, r.text
        return query(r.headers["location"])["code"]

    def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """Call the Xee admin API."""
        return self.http.request(method, f"{self.sim.admin}/xee{path}", json=body)
