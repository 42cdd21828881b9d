"""The Link flow, driven through the simulator's real HTML pages over HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from tests.support import EnodeClient, Sim

REDIRECT = "https://app.example/enode/done?session=42"
LINK_BODY: dict[str, Any] = {
    "vendorType": "vehicle",
    "scopes": ["vehicle:read:data", "vehicle:read:location", "vehicle:control:charging"],
    "language": "en-US",
    "redirectUri": REDIRECT,
}


def form_action(html: str, label: str) -> str:
    """Return the action of the form whose button says `label`."""
    for form in re.findall(r"<form[^>]*>.*?</form>", html, flags=re.S):
        if f">{label}<" in form:
            match = re.search(r"action='([^']+)'", form)
            assert match, form
            return match.group(1)
    msg = f"no form with a {label!r} button in {html}"
    raise AssertionError(msg)


class Browser:
    """Just enough of a browser: follows links and submits forms, without auto-redirects."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, follow_redirects=False, timeout=10)

    def get(self, url: str) -> httpx.Response:
        return self.http.get(url)

    def submit(self, page: httpx.Response, label: str, data: dict[str, str]) -> httpx.Response:
        action = form_action(page.text, label)
        return self.http.post(urljoin(str(page.url), action), data=data)

    def follow(self, response: httpx.Response) -> httpx.Response:
        assert response.status_code == 303, response.text
        return self.http.get(urljoin(str(response.url), response.headers["location"]))


@pytest.fixture
def browser(sim: Sim) -> Iterator[Browser]:
    """A browser pointed at the simulator."""
    b = Browser(sim.url)
    yield b
    b.http.close()


def start_link(enode: EnodeClient, user: str = "alice", **extra: Any) -> dict[str, Any]:
    r = enode.post(f"/users/{user}/link", {**LINK_BODY, **extra})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def test_full_link_flow_creates_vehicles(sim: Sim, enode: EnodeClient, browser: Browser) -> None:
    link = start_link(enode)
    assert link["linkToken"]
    assert link["linkUrl"].startswith(f"{sim.enode}/link/")

    brands = browser.get(link["linkUrl"])
    assert brands.status_code == 200
    assert "Choose your car's brand" in brands.text
    assert "<button name='vendor' value='XPENG'>XPENG</button>" in brands.text
    login = browser.follow(browser.submit(brands, "XPENG", {"vendor": "XPENG"}))
    assert "Log in to XPENG" in login.text
    consent = browser.follow(
        browser.submit(login, "Log in", {"username": "alice@example.com", "password": "x"})
    )
    assert "alice@example.com" in consent.text
    assert "Start and stop charging" in consent.text
    assert "Read the vehicle&#x27;s location" in consent.text

    done = browser.submit(consent, "Complete", {})
    assert done.status_code == 303
    assert done.headers["location"] == REDIRECT

    vehicles = enode.get("/users/alice/vehicles").json()["data"]
    assert 1 <= len(vehicles) <= 2
    assert {v["vendor"] for v in vehicles} == {"XPENG"}
    assert sorted(vehicles[0]["scopes"]) == sorted(LINK_BODY["scopes"])
    user = enode.get("/users/alice").json()
    assert user["linkedVendors"] == [{"vendor": "XPENG", "vendorType": "vehicle", "isValid": True}]

    # Single use: the same link now shows an error page and links nothing more.
    again = browser.get(link["linkUrl"])
    assert again.status_code == 410
    assert "already been used" in again.text
    assert len(enode.get("/users/alice/vehicles").json()["data"]) == len(vehicles)


def test_vendor_in_request_skips_the_brand_page(
    sim: Sim, enode: EnodeClient, browser: Browser
) -> None:
    link = start_link(enode, vendor="TESLA")
    first = browser.get(link["linkUrl"])
    assert first.status_code == 303
    login = browser.follow(first)
    assert "Log in to Tesla" in login.text


def test_cancel_redirects_with_error(sim: Sim, enode: EnodeClient, browser: Browser) -> None:
    link = start_link(enode, vendor="VOLKSWAGEN")
    login = browser.follow(browser.get(link["linkUrl"]))
    consent = browser.follow(browser.submit(login, "Log in", {"username": "a", "password": "b"}))
    cancelled = browser.submit(consent, "Cancel", {})
    assert cancelled.status_code == 303
    target = urlsplit(cancelled.headers["location"])
    assert target.netloc == "app.example"
    query = parse_qs(target.query)
    assert query["session"] == ["42"]  # the client's own query survives
    assert query["error"] == ["access_denied"]
    assert query["error_message"]
    assert enode.get("/users/alice/vehicles").json()["data"] == []
    assert browser.get(link["linkUrl"]).status_code == 410


def test_login_needs_username_and_password(sim: Sim, enode: EnodeClient, browser: Browser) -> None:
    link = start_link(enode, vendor="TESLA")
    login = browser.follow(browser.get(link["linkUrl"]))
    empty = browser.submit(login, "Log in", {"username": " ", "password": "x"})
    assert empty.status_code == 400
    assert "Enter a username" in empty.text
    no_password = browser.submit(login, "Log in", {"username": "bob", "password": ""})
    assert no_password.status_code == 400
    assert "Enter a password" in no_password.text
    # Skipping ahead to the consent or complete step sends the user back to log in.
    base = link["linkUrl"]
    assert browser.get(f"{base}/consent").headers["location"].endswith("/login")
    assert browser.http.post(f"{base}/complete").headers["location"].endswith("/login")


def test_link_session_expires_after_24_simulated_hours(
    sim: Sim, enode: EnodeClient, browser: Browser
) -> None:
    link = start_link(enode)
    sim.advance(24 * 3600 - 60)
    assert browser.get(link["linkUrl"]).status_code == 200
    sim.advance(61)
    expired = browser.get(link["linkUrl"])
    assert expired.status_code == 410
    assert "expired" in expired.text


def test_unknown_link_session(sim: Sim) -> None:
    r = httpx.get(f"{sim.enode}/link/0000")
    assert r.status_code == 410
    assert "does not exist" in r.text


def test_relink_restores_invalid_credentials(
    sim: Sim, enode: EnodeClient, browser: Browser
) -> None:
    vid = sim.vehicle_ids()[0]
    r = sim.admin_call("POST", "/enode/users/demo/invalidate-credentials", {"vendor": "TESLA"})
    assert r.status_code == 200
    broken = enode.get(f"/vehicles/{vid}").json()
    assert broken["capabilities"]["chargeState"]["interventionIds"]
    assert broken["isReachable"] is False

    link = start_link(enode, user="demo", vendor="TESLA")
    login = browser.follow(browser.get(link["linkUrl"]))
    consent = browser.follow(browser.submit(login, "Log in", {"username": "a", "password": "b"}))
    assert browser.submit(consent, "Complete", {}).status_code == 303

    fixed = enode.get(f"/vehicles/{vid}").json()
    assert fixed["isReachable"] is True
    assert fixed["capabilities"]["chargeState"] == {"isCapable": True, "interventionIds": []}
    assert len(enode.get("/users/demo/vehicles").json()["data"]) == 3  # same cars, none added


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"scopes": []}, "scopes"),
        ({"scopes": ["vehicle:fly"]}, "scope"),
        ({"scopes": ["vehicle:read:location"]}, "vehicle:read:data"),
        ({"language": "xx-XX"}, "language"),
        ({"redirectUri": "not a uri"}, "redirectUri"),
        ({"redirectUri": "https://x.example/" + "a" * 500}, "redirectUri"),
        ({"vendor": "TRABANT"}, "vendor"),
        ({"vendorType": "charger"}, "vendorType"),
        ({"unexpected": True}, "unexpected"),
    ],
)
def test_link_request_validation(enode: EnodeClient, change: dict[str, Any], needle: str) -> None:
    body = {**LINK_BODY, **change}
    r = enode.post("/users/alice/link", body, check=False)
    assert r.status_code == 400, r.text
    enode.spec.validate_response(
        "POST", "/users/alice/link", 400, r.json(), r.headers["content-type"]
    )
    assert needle in r.text


def test_link_request_requires_language_and_redirect(enode: EnodeClient) -> None:
    for missing in ("language", "redirectUri", "scopes"):
        body = {k: v for k, v in LINK_BODY.items() if k != missing}
        r = enode.post("/users/alice/link", body, check=False)
        assert r.status_code == 400
        assert missing in r.json()["detail"]
