"""`car2mqtt link xee`: the authorization-code flow through the simulator's real consent pages."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from car2mqtt.models import VehicleRef
from car2mqtt.store import Store
from tests.bridge.conftest import FAST, TOPICS, bridge_for, write_xee_config, xee_provider
from tests.bridge.test_cli import write_config as write_enode_config
from tests.mqtt_support import Mosquitto, free_port, probe
from tests.support import Sim, run_cli, started_cli, table_row

URL_LINE = re.compile(r"http://\S+/xee/v4/oauth/authorize\?\S+")


def write_config(tmp_path: Path, sim: Sim, redirect_uri: str) -> Path:
    return write_xee_config(tmp_path, sim, redirect_uri=redirect_uri)


def consent(sim: Sim, url: str, decision: str = "approve", password: str | None = None) -> str:
    """Log in and answer Xee's consent page like a person; return where it redirects to."""
    xee = sim.info["xee"]
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        page = browser.get(url)
        assert page.status_code == 200, page.text
        action = re.search(r"<form method='post' action='([^']+)'", page.text)
        assert action, "the consent page has a form"
        hidden = dict(re.findall(r"<input type='hidden' name='(\w+)' value='([^']*)'>", page.text))
        answer = browser.post(
            urljoin(url, action.group(1).replace("&amp;", "&")),
            data={
                **hidden,
                "email": xee["username"],
                "password": password or xee["password"],
                "decision": decision,
            },
        )
        assert answer.status_code == 302, answer.text
        return answer.headers["location"]


def authorize_url(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline().strip()
        if URL_LINE.fullmatch(line):
            return line
    msg = "the authorization URL is printed on a line of its own"
    raise AssertionError(msg)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    code = proc.wait(timeout=20)
    assert proc.stdout is not None
    assert proc.stderr is not None
    return code, proc.stdout.read(), proc.stderr.read()


def saved_token(tmp_path: Path) -> dict[str, Any] | None:
    with Store.open(tmp_path / "car2mqtt.db") as store:
        return store.load_token("car")


def test_consent_approved_links_and_lists_the_cars(sim: Sim, tmp_path: Path) -> None:
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    path = write_config(tmp_path, sim, redirect_uri)
    with started_cli("link", "xee", "--account", "car", "--config", str(path)) as proc:
        url = authorize_url(proc)
        query = parse_qs(urlsplit(url).query)
        assert query["redirect_uri"] == [redirect_uri]
        assert len(query["state"][0]) >= 32  # random, unguessable
        location = consent(sim, url)
        assert location.startswith(redirect_uri)
        landing = httpx.get(location, timeout=10)  # the browser follows the redirect
        code, out, err = finish(proc)
    assert code == 0, err
    assert "Done" in landing.text
    assert "Volkswagen Golf" in out  # the demo user's combustion car
    assert "no restart needed" in out
    token = saved_token(tmp_path)
    assert token is not None
    assert token["refresh_token"]
    assert sim.info["xee"]["clientSecret"] not in out + err
    assert token["access_token"] not in out + err
    status = run_cli("status", "--config", str(path))
    assert status.returncode == 0, status.stderr
    row = table_row(status.stdout, "car")
    assert row["link"] == "ok"
    assert row["token"].startswith("valid")
    assert row["vehicles"] == "2"  # the cars link listed, saved for status to count


def test_consent_denied(sim: Sim, tmp_path: Path) -> None:
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    path = write_config(tmp_path, sim, redirect_uri)
    with started_cli("link", "xee", "--account", "car", "--config", str(path)) as proc:
        location = consent(sim, authorize_url(proc), decision="deny")
        assert "error=access_denied" in location
        landing = httpx.get(location, timeout=10)
        code, _, err = finish(proc)
    assert code == 2
    assert "Linking stopped" in landing.text
    assert "access_denied" in err
    assert "Traceback" not in err
    assert saved_token(tmp_path) is None


@pytest.mark.parametrize("forged", ["state=forged-by-someone-else", "state=", ""])
def test_a_redirect_without_our_state_is_refused_and_the_real_one_still_works(
    sim: Sim, tmp_path: Path, forged: str
) -> None:
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    path = write_config(tmp_path, sim, redirect_uri)
    with started_cli("link", "xee", "--account", "car", "--config", str(path)) as proc:
        location = consent(sim, authorize_url(proc))
        real_state = parse_qs(urlsplit(location).query)["state"][0]
        # Someone else's redirect (login CSRF) carrying the code but not our state.
        bogus = location.replace(f"state={real_state}", forged).rstrip("&")
        refused = httpx.get(bogus, timeout=10)
        assert refused.status_code == 400
        assert proc.poll() is None, "a forged redirect must not end the real attempt"
        assert saved_token(tmp_path) is None
        landing = httpx.get(location, timeout=10)  # the user's own browser arrives
        code, out, err = finish(proc)
    assert code == 0, err
    assert "Done" in landing.text
    assert "state" in err  # the refused redirect was logged
    assert "Volkswagen Golf" in out
    assert saved_token(tmp_path) is not None


@pytest.mark.parametrize("what", ["url", "code"])
def test_paste_back_when_the_redirect_cannot_reach_us(sim: Sim, tmp_path: Path, what: str) -> None:
    # https://localhost/ is what many register at Xee: nothing can listen there.
    path = write_config(tmp_path, sim, "https://localhost/")
    with started_cli(
        "link", "xee", "--account", "car", "--config", str(path), stdin=True, stop=signal.SIGTERM
    ) as proc:
        location = consent(sim, authorize_url(proc))
        assert location.startswith("https://localhost/?")
        pasted = location if what == "url" else parse_qs(urlsplit(location).query)["code"][0]
        assert proc.stdin is not None
        proc.stdin.write("\n" + pasted + "\n")  # a stray empty line first is ignored
        proc.stdin.flush()
        code, out, err = finish(proc)
    assert code == 0, err
    assert "paste" in out
    assert "Volkswagen Golf" in out
    assert saved_token(tmp_path) is not None


def test_link_xee_refuses_an_enode_account(sim: Sim, tmp_path: Path) -> None:
    path = write_enode_config(tmp_path, sim, Mosquitto(tmp_path))  # never started
    result = run_cli("link", "xee", "--account", "home", "--config", str(path))
    assert result.returncode == 2
    assert "use car2mqtt link enode --account home" in result.stderr


def test_status_says_how_to_relink_a_xee_account(sim: Sim, tmp_path: Path) -> None:
    path = write_config(tmp_path, sim, "http://127.0.0.1:8765/callback")
    with Store.open(tmp_path / "car2mqtt.db") as store:  # as the bridge leaves it
        store.save_account_status("car", "relink_required", "invalid_request: refresh token dead")
    result = run_cli("status", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "relink_required" in result.stdout
    assert "refresh token dead" in result.stdout
    assert "car needs re-linking: car2mqtt link xee --account car" in result.stdout


async def test_relinking_with_the_cli_beside_a_running_bridge(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    state_file = tmp_path / "state" / "car2mqtt.db"  # the one bridge_for uses
    state_file.parent.mkdir()
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    path = write_xee_config(tmp_path, sim, store=state_file, redirect_uri=redirect_uri)
    dongle = sim.admin_call("GET", f"/xee/vehicles/{first_xee_car(sim)}").json()["device"]["id"]
    ref = VehicleRef("xee", "car", dongle)

    def link() -> tuple[int, str, str]:
        with started_cli("link", "xee", "--account", "car", "--config", str(path)) as proc:
            httpx.get(consent(sim, authorize_url(proc)), timeout=10)
            return finish(proc)

    timing = replace(FAST, relink_retry_s=600.0, relink_check_s=0.2)
    providers = lambda store: [xee_provider(sim, store, password=False)]  # noqa: E731
    async with (
        bridge_for(sim, mosquitto, tmp_path, providers=providers, timing=timing),
        probe(mosquitto.port) as seen,
    ):
        # Never linked: the account says so, and how to fix it.
        await seen.wait_json(TOPICS.bridge_state, lambda s: s["problem"] == "ON", 15)
        code, out, err = await asyncio.to_thread(link)
        assert code == 0, err
        await seen.wait_json(TOPICS.state(ref), lambda s: s["relink_required"] == "OFF", 15)
        await seen.wait_json(TOPICS.bridge_state, lambda s: s["problem"] == "OFF", 15)
    assert "no restart needed" in out


def first_xee_car(sim: Sim) -> str:
    users: dict[str, list[str]] = sim.info["xee"]["users"]
    return next(iter(users.values()))[0]


def test_vehicles_says_how_to_link_an_unlinked_xee_account(sim: Sim, tmp_path: Path) -> None:
    path = write_config(tmp_path, sim, "http://127.0.0.1:8765/callback")
    result = run_cli("vehicles", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "not linked to Xee yet" in result.stderr
    assert "car2mqtt link xee --account car" in result.stderr
    assert "Traceback" not in result.stderr
