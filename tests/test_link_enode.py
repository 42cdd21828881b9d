"""`car2mqtt link enode --host 0.0.0.0`: the browser is sent to an address it can open."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from car2mqtt.net import reachable_host
from tests.mqtt_support import free_port
from tests.support import Sim, running_sim, started_cli

EVERY_INTERFACE = "0.0.0.0"  # noqa: S104 - the point of these tests


@pytest.fixture
def sim() -> Iterator[Sim]:
    with running_sim() as running:
        yield running


def write_config(tmp_path: Path, sim: Sim) -> Path:
    creds = sim.info["enode"]
    config = {
        "store": str(tmp_path / "car2mqtt.db"),
        "accounts": [
            {
                "name": "home",
                "provider": "enode",
                "api_url": creds["apiUrl"],
                "token_url": creds["tokenUrl"],
                "client_id": creds["clientId"],
                "client_secret": creds["clientSecret"],
                "user_id": "demo",
            }
        ],
    }
    path = tmp_path / "car2mqtt.yaml"
    path.write_text(json.dumps(config))
    return path


def drive_enode_link(url: str) -> httpx.Response:
    """Click through the simulator's Link UI like a person, and follow the final redirect."""
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        browser.get(url)
        page = browser.post(urljoin(url + "/", "vendor"), data={"vendor": "POLESTAR"})
        page = browser.get(urljoin(str(page.url), page.headers["location"]))
        login = browser.post(str(page.url), data={"username": "me", "password": "pw"})
        consent = browser.get(urljoin(str(login.url), login.headers["location"]))
        done = browser.post(str(consent.url).replace("/consent", "/complete"))
        assert done.status_code == 303
        return browser.get(done.headers["location"])


def link_through(tmp_path: Path, sim: Sim, *options: str) -> tuple[httpx.Response, str]:
    """Run the link command, log in on the Link UI; return the landing page and the output."""
    path = write_config(tmp_path, sim)
    with started_cli("link", "enode", "--account", "home", "--config", str(path), *options) as proc:
        assert proc.stdout is not None
        seen, url = "", ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "Waiting for you" not in seen:
            line = proc.stdout.readline()
            seen += line
            if re.fullmatch(r"http://\S+/enode/link/\S+", line.strip()):
                url = line.strip()
        assert url, seen
        landing = drive_enode_link(url)
        assert proc.wait(timeout=20) == 0
        seen += proc.stdout.read()
    return landing, seen


def test_a_wildcard_host_sends_the_browser_to_this_machines_address(
    tmp_path: Path, sim: Sim
) -> None:
    landing, out = link_through(tmp_path, sim, "--host", EVERY_INTERFACE)
    where = urlsplit(str(landing.url))
    assert where.hostname == reachable_host(EVERY_INTERFACE)
    assert where.hostname != EVERY_INTERFACE
    assert where.path == "/callback"
    assert f"comes back to {landing.url.copy_with(query=None)}" in out  # said before it happens
    assert "Done" in landing.text
    assert "Polestar" in out


def test_public_url_is_where_the_browser_comes_back(tmp_path: Path, sim: Sim) -> None:
    port = free_port()
    public = f"http://localhost:{port}"
    landing, out = link_through(
        tmp_path, sim, "--host", EVERY_INTERFACE, "--port", str(port), "--public-url", public
    )
    assert str(landing.url).startswith(f"{public}/callback")
    assert f"comes back to {public}/callback" in out
    assert "Done" in landing.text
