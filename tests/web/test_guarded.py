"""The web UI's guards and bad input over plain HTTP: CSRF, login, proxies, clear error pages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path

import httpx

from car2mqtt.runtime import running_config
from tests.bridge.conftest import FAST
from tests.mqtt_support import Mosquitto
from tests.support import Sim, run_cli
from tests.web.conftest import (
    enode_account,
    get,
    links_of,
    ui_config,
    ui_for,
    until_read,
    xee_account,
)

ANY = "0.0.0.0"  # noqa: S104 (the point of these tests)

SECRET_MARKERS = ("clientSecret",)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "the page has a form with a CSRF token"
    return found.group(1)


async def test_a_post_without_a_valid_csrf_token_is_refused(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = ui_config(tmp_path, mosquitto, [enode_account(sim)])
    tesla = f"enode_{sim.vehicle_ids()[0]}"
    async with ui_for(config) as run, httpx.AsyncClient(base_url=run.web_url or "") as web:
        await until_read(run)
        good = _csrf((await web.get("/accounts/home")).text)
        for token in (None, "", "0" * 64, good[:-1] + ("0" if good[-1] != "0" else "1")):
            data = {"command": "refresh"} | ({"csrf": token} if token is not None else {})
            answer = await web.post(f"/cars/{tesla}/commands", data=data)
            assert answer.status_code == 403, token
            assert "security token" in answer.text
            assert "Traceback" not in answer.text
        assert run.bridge.hub.vehicle(tesla) is not None
        assert run.web is not None
        assert run.web.sink.commands(tesla) == []  # nothing was sent
        accepted = await web.post(
            f"/cars/{tesla}/commands", data={"command": "refresh", "csrf": good}
        )
        assert accepted.status_code == 303


async def test_bad_input_gets_a_clear_page_and_never_a_500(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = ui_config(tmp_path, mosquitto, [enode_account(sim), xee_account(sim)])
    async with ui_for(config) as run, httpx.AsyncClient(base_url=run.web_url or "") as web:
        await until_read(run)
        csrf = _csrf((await web.get("/accounts/car")).text)
        cases = [
            (await web.get("/cars/enode_nope"), 404, "No such car"),
            (await web.get("/accounts/nobody"), 404, "No such account"),
            (await web.get("/nowhere"), 404, "Not found"),
            (await web.get("/link/callback"), 400, "carries no state"),
            (await web.get("/link/callback?state=forged&code=x"), 400, "unknown or expired"),
            (
                await web.post("/cars/enode_nope/commands", data={"csrf": csrf}),
                404,
                "No such car",
            ),
            (
                await web.post(
                    f"/cars/enode_{sim.vehicle_ids()[0]}/commands",
                    data={"csrf": csrf, "command": "self_destruct"},
                ),
                400,
                "Commands are",
            ),
            (
                await web.post(
                    "/accounts/car/paste",
                    data={"csrf": csrf, "pasted": "https://x/?code=a&state=b"},
                ),
                400,
                "unknown or expired",
            ),
            (
                await web.post("/accounts/car/paste", data={"csrf": csrf, "pasted": "  "}),
                400,
                "Paste the whole address",
            ),
            (
                await web.post(
                    "/accounts/car/link",
                    content=b"\xff\xfe%%%=&&",
                    headers={"content-type": "multipart/form-data; boundary=zz"},
                ),
                400,
                "could not be read",
            ),
            (
                await web.post("/accounts/home/link", data={"csrf": csrf, "vendor": "<script>"}),
                502,
                "vendor is Enode",
            ),
            (await web.post("/config"), 405, "does not take that kind"),
        ]
        for answer, status, text in cases:
            assert answer.status_code == status, (answer.request.url, answer.text[:300])
            assert text in answer.text, (answer.request.url, answer.text[:500])
            assert "Traceback" not in answer.text
            assert "Go back" in answer.text
        assert "&lt;script&gt;" not in (await web.get("/accounts/home")).text
        # A setting out of range is a refused command, shown among the car's commands.
        tesla = sim.vehicle_ids()[0]
        data = {"csrf": csrf, "command": "set_max_current", "value": "9000"}
        answer = await web.post(f"/cars/enode_{tesla}/commands", data=data, follow_redirects=True)
        assert answer.status_code == 200
        assert "is not a number from 6 to 48" in answer.text
        assert sim.live(tesla)["maxCurrent"] == 16


async def test_a_link_state_works_once(sim: Sim, mosquitto: Mosquitto, tmp_path: Path) -> None:
    config = ui_config(tmp_path, mosquitto, [xee_account(sim)])
    async with ui_for(config) as run, httpx.AsyncClient(base_url=run.web_url or "") as web:
        csrf = _csrf((await web.get("/accounts/car")).text)
        step = await web.post("/accounts/car/link", data={"csrf": csrf})
        assert step.status_code == 200
        consent = re.search(r'id="consent" href="([^"]+)"', step.text)
        assert consent
        state = re.search(r"state=([^&]+)", consent.group(1).replace("&amp;", "&"))
        assert state
        # A redirect with the right state but Xee's refusal: linking stops, clearly.
        refused = await web.get(f"/link/callback?state={state.group(1)}&error=access_denied")
        assert refused.status_code == 400
        assert "did not grant access" in refused.text
        again = await web.get(f"/link/callback?state={state.group(1)}&code=abc")
        assert again.status_code == 400
        assert "unknown or expired" in again.text


async def test_no_page_shows_a_secret(sim: Sim, mosquitto: Mosquitto, tmp_path: Path) -> None:
    password = "web-pass-Zq8"
    config = ui_config(
        tmp_path, mosquitto, [enode_account(sim), xee_account(sim)], password=password
    )
    secrets = [sim.info["enode"]["clientSecret"], sim.info["xee"]["clientSecret"], password]
    async with ui_for(config) as run, httpx.AsyncClient(base_url=run.web_url or "") as web:
        login = await web.get("/login")
        answer = await web.post("/login", data={"csrf": _csrf(login.text), "password": password})
        assert answer.status_code == 303
        seen = ""
        for path in ("/", "/config", "/accounts/home", "/accounts/car"):
            page = await web.get(path)
            assert page.status_code == 200, path
            seen += page.text
        assert "**********" in seen
        for secret in secrets:
            assert secret not in seen


async def test_a_password_guards_the_ui(sim: Sim, mosquitto: Mosquitto, tmp_path: Path) -> None:
    config = ui_config(tmp_path, mosquitto, [enode_account(sim)], password="open-sesame-1")
    async with ui_for(config) as run, httpx.AsyncClient(base_url=run.web_url or "") as web:
        first = await web.get("/")
        assert first.status_code == 303
        assert first.headers["location"] == "/login"
        assert (await web.get("/events")).status_code == 401
        login = await web.get("/login")
        wrong = await web.post("/login", data={"csrf": _csrf(login.text), "password": "guess"})
        assert wrong.status_code == 401
        assert "not the password" in wrong.text
        right = await web.post(
            "/login", data={"csrf": _csrf(login.text), "password": "open-sesame-1"}
        )
        assert right.status_code == 303
        assert "httponly" in right.headers["set-cookie"].lower()
        assert (await web.get("/")).status_code == 200
        out = await web.post("/logout", data={"csrf": _csrf((await web.get("/")).text)})
        assert out.status_code == 303
        assert (await web.get("/")).status_code == 303


async def test_only_trusted_proxies_are_served_without_a_password(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # Any address, trusting only a proxy that is not this test: this client is refused.
    refusing = ui_config(
        tmp_path, mosquitto, [enode_account(sim)], host=ANY, trusted_proxies=["10.9.9.9"]
    )
    async with ui_for(refusing) as run:
        url = (run.web_url or "").replace(ANY, "127.0.0.1")
        answer = await get(f"{url}/")
        assert answer.status_code == 403
        assert "trusted proxies" in answer.text
    trusting = ui_config(
        tmp_path, mosquitto, [enode_account(sim)], host=ANY, trusted_proxies=["127.0.0.1"]
    )
    async with ui_for(trusting) as run:
        url = (run.web_url or "").replace(ANY, "127.0.0.1")
        prefix = "/api/hassio_ingress/abc"
        answer = await get(f"{url}/", **{"X-Ingress-Path": prefix})
        assert answer.status_code == 200
        assert all(u.startswith(prefix) for u in links_of(answer.text) if u.startswith("/"))


def test_a_non_loopback_bind_without_a_password_refuses_to_start(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    path = tmp_path / "car2mqtt.yaml"
    document = {
        "mqtt": {"url": mosquitto.url},
        "web": {"host": ANY},
        "accounts": [enode_account(sim)],
    }
    path.write_text(json.dumps(document))
    result = run_cli("run", "--config", str(path), timeout=30)
    assert result.returncode == 2
    assert "web.host" in result.stderr
    assert "set web.password" in result.stderr
    assert "Traceback" not in result.stderr


async def test_web_enabled_false_serves_no_ui(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = ui_config(tmp_path, mosquitto, [enode_account(sim)], enabled=False)
    port = config.web.port
    async with running_config(config, timing=FAST) as run:
        await until_read(run)
        assert run.web is None
        assert run.web_url is None
        with contextlib.suppress(httpx.ConnectError):
            answer = await get(f"http://127.0.0.1:{port}/")
            raise AssertionError(f"something answered on the UI's port: {answer.status_code}")


async def test_the_health_probe_needs_no_login_and_follows_the_broker(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # A password, and a bind where this client is no trusted proxy: the probe still answers,
    # as a container's HEALTHCHECK or a supervisor asks without a login.
    config = ui_config(
        tmp_path, mosquitto, [enode_account(sim)], host=ANY, password="open-sesame-1"
    )
    async with ui_for(config) as run:
        url = (run.web_url or "").replace(ANY, "127.0.0.1")
        await until_read(run)
        up = await get(f"{url}/healthz")
        assert up.status_code == 200
        assert up.json() == {"status": "ok", "mqtt": True}
        assert (await get(f"{url}/")).status_code == 303  # the rest still wants the login
        mosquitto.stop()
        for _ in range(100):
            down = await get(f"{url}/healthz")
            if down.status_code == 503:
                break
            await asyncio.sleep(0.05)
        assert down.status_code == 503
        assert down.json() == {"status": "unhealthy", "mqtt": False}
        mosquitto.start()
        await asyncio.wait_for(run.link.connected.wait(), 30)
        assert (await get(f"{url}/healthz")).status_code == 200


async def test_only_a_trusted_proxy_may_say_where_the_ui_lives(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # A proxy that forwards only /webhooks/* from the internet to a loopback UI: a request
    # that claims /webhooks as its ingress prefix must not reach the car pages through it.
    config = ui_config(tmp_path, mosquitto, [enode_account(sim)])
    async with ui_for(config) as run, httpx.AsyncClient(base_url=run.web_url or "") as web:
        await until_read(run)
        car = f"enode_{sim.vehicle_ids()[0]}"
        claimed = {"X-Ingress-Path": "/webhooks"}
        page = await web.get(f"/webhooks/cars/{car}", headers=claimed)
        assert page.status_code == 404
        assert "csrf" not in page.text
        asked = await web.post(f"/webhooks/cars/{car}/commands", headers=claimed, data={})
        assert asked.status_code in (404, 405)
        vehicle = run.bridge.hub.vehicle(car)
        assert vehicle is not None
        assert vehicle.last_command is None
        # From this untrusted client the header changes no link either.
        overview = await web.get("/", headers={"X-Ingress-Path": "/api/hassio_ingress/x"})
        assert not any(u.startswith("/api/") for u in links_of(overview.text))
