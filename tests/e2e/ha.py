"""A real, headless Home Assistant for end-to-end tests, seen through its REST and websocket API."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import websockets

from tests.e2e.install_ha import HaInstall
from tests.mqtt_support import free_port

USER, PASSWORD = "ci", "ci-password-123"


def _dies_with_us() -> list[str]:
    """A prefix that has the kernel stop Home Assistant if the test process dies first."""
    setpriv = shutil.which("setpriv")  # util-linux; it execs, so the process stays HA's
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


@dataclass
class HomeAssistant:
    """One Home Assistant process with its own config dir, wired to one MQTT broker."""

    install: HaInstall
    config_dir: Path  # on this machine; HA sees it as install.inside(config_dir)
    broker_port: int
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    token: str | None = None
    _out: BinaryIO | None = None

    @property
    def version(self) -> str:
        """The Home Assistant version."""
        return self.install.version

    @property
    def url(self) -> str:
        """The HTTP base URL."""
        return f"http://127.0.0.1:{self.port}"

    def prepare(self) -> None:
        """Write the configuration and the CI user (once per config dir)."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "configuration.yaml").write_text(
            "homeassistant:\n  name: CI\n  latitude: 52.52\n  longitude: 13.40\n"
            "  elevation: 0\n  unit_system: metric\n  time_zone: UTC\n  country: DE\n"
            "  currency: EUR\n"
            f"http:\n  server_host: 127.0.0.1\n  server_port: {self.port}\n"
            "api:\nauth:\nconfig:\nlogger:\n  default: warning\n"
        )
        config = self.install.inside(self.config_dir)
        subprocess.run(
            self.install.command("--script", "auth", "-c", config, "add", USER, PASSWORD),
            check=True,
            capture_output=True,
        )

    def start(self, timeout: float = 120.0) -> None:
        """Start Home Assistant and wait for its HTTP API."""
        self._out = (self.config_dir / "ha.out").open("ab")
        config = self.install.inside(self.config_dir)
        self.process = subprocess.Popen(
            _dies_with_us() + self.install.command("-c", config, "--log-no-color"),
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                msg = f"Home Assistant exited with {self.process.returncode}:\n{self.log_tail()}"
                raise RuntimeError(msg)
            try:
                if httpx.get(f"{self.url}/api/", timeout=2).status_code == 401:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        msg = f"Home Assistant did not start within {timeout:.0f} s:\n{self.log_tail()}"
        raise RuntimeError(msg)

    def stop(self) -> None:
        """Stop Home Assistant."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self._out is not None:
            self._out.close()
            self._out = None

    def bootstrap(self) -> None:
        """Log in, create the MQTT config entry if missing, and keep a long-lived token."""
        client_id = f"{self.url}/"
        with httpx.Client(base_url=self.url, timeout=30) as http:
            flow = http.post(
                "/auth/login_flow",
                json={
                    "client_id": client_id,
                    "handler": ["homeassistant", None],
                    "redirect_uri": f"{client_id}?auth_callback=1",
                },
            ).json()
            done = http.post(
                f"/auth/login_flow/{flow['flow_id']}",
                json={"client_id": client_id, "username": USER, "password": PASSWORD},
            ).json()
            assert done["type"] == "create_entry", done
            tokens = http.post(
                "/auth/token",
                data={
                    "grant_type": "authorization_code",
                    "code": done["result"],
                    "client_id": client_id,
                },
            ).json()
            access = tokens["access_token"]
            auth = {"Authorization": f"Bearer {access}"}
            entries = http.get("/api/config/config_entries/entry?domain=mqtt", headers=auth).json()
            if not entries:
                form = http.post(
                    "/api/config/config_entries/flow",
                    json={"handler": "mqtt", "show_advanced_options": False},
                    headers=auth,
                ).json()
                assert form.get("step_id") == "broker", form
                data = _broker_form(form["data_schema"], "127.0.0.1", self.broker_port)
                created = http.post(
                    f"/api/config/config_entries/flow/{form['flow_id']}", json=data, headers=auth
                ).json()
                assert created["type"] == "create_entry", created
        self.token = access
        self.token = asyncio.run(
            self._ws_call(
                {
                    "type": "auth/long_lived_access_token",
                    "client_name": f"ci-{time.time_ns()}",
                    "lifespan": 3650,
                }
            )
        )

    # ---- REST ------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        assert self.token, "bootstrap() first"
        return {"Authorization": f"Bearer {self.token}"}

    def states(self) -> dict[str, dict[str, Any]]:
        """Every entity's state, by entity id."""
        r = httpx.get(f"{self.url}/api/states", headers=self._headers(), timeout=30)
        r.raise_for_status()
        return {s["entity_id"]: s for s in r.json()}

    def version_reported(self) -> str:
        """The version the running Home Assistant says it is."""
        r = httpx.get(f"{self.url}/api/config", headers=self._headers(), timeout=30)
        r.raise_for_status()
        version: str = r.json()["version"]
        return version

    def state(self, entity_id: str) -> dict[str, Any] | None:
        """One entity's state, or None if Home Assistant has no such entity."""
        r = httpx.get(f"{self.url}/api/states/{entity_id}", headers=self._headers(), timeout=30)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def call_service(self, domain: str, service: str, **data: Any) -> None:
        """Call a service, as a dashboard button or an automation does."""
        r = httpx.post(
            f"{self.url}/api/services/{domain}/{service}",
            json=data,
            headers=self._headers(),
            timeout=30,
        )
        r.raise_for_status()

    def wait_state(self, entity_id: str, check: Any, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until `check(state)` holds for the entity; return the state."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.state(entity_id)
            if last is not None and check(last):
                return last
            time.sleep(0.25)
        msg = f"{entity_id} never satisfied the check within {timeout:.0f} s; last: {last}"
        raise AssertionError(msg)

    def wait_gone(self, entity_id: str, timeout: float = 30.0) -> None:
        """Wait until Home Assistant no longer has the entity."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state(entity_id) is None:
                return
            time.sleep(0.25)
        msg = f"{entity_id} is still there after {timeout:.0f} s"
        raise AssertionError(msg)

    # ---- websocket -------------------------------------------------------------------------

    async def _ws_call(self, message: dict[str, Any]) -> Any:
        url = self.url.replace("http", "ws", 1) + "/api/websocket"
        async with websockets.connect(url, max_size=None) as ws:
            await ws.recv()  # auth_required
            await ws.send(json.dumps({"type": "auth", "access_token": self.token}))
            reply = json.loads(await ws.recv())
            assert reply["type"] == "auth_ok", reply
            ident = next(_ids)
            await ws.send(json.dumps({"id": ident, **message}))
            while True:
                answer = json.loads(await ws.recv())
                if answer.get("id") == ident:
                    assert answer["success"], answer
                    return answer["result"]

    def ws(self, message: dict[str, Any]) -> Any:
        """Send one websocket command and return its result."""
        return asyncio.run(self._ws_call(message))

    def devices(self) -> list[dict[str, Any]]:
        """The device registry."""
        result: list[dict[str, Any]] = self.ws({"type": "config/device_registry/list"})
        return result

    def entity_registry(self) -> list[dict[str, Any]]:
        """The entity registry."""
        result: list[dict[str, Any]] = self.ws({"type": "config/entity_registry/list"})
        return result

    def set_home(self, latitude: float, longitude: float) -> None:
        """Move the home zone."""
        self.ws({"type": "config/core/update", "latitude": latitude, "longitude": longitude})

    def log_tail(self, lines: int = 60) -> str:
        """The end of Home Assistant's log, for failure reports."""
        text = ""
        for name in ("home-assistant.log", "ha.out"):
            path = self.config_dir / name
            if path.exists():
                text += f"--- {name} ---\n" + "\n".join(
                    path.read_text(errors="replace").splitlines()[-lines:]
                )
        return text


_ids = itertools.count(1)

# Required fields of the MQTT broker form's sections (2026.x) that come without a default.
_SECTION_DEFAULTS = {"set_client_cert": False, "set_ca_cert": "off", "transport": "tcp"}


def _broker_form(schema: list[dict[str, Any]], host: str, port: int) -> dict[str, Any]:
    """Fill the MQTT config flow's broker form: HA 2025.x has flat fields, 2026.x adds sections.

    The form is built from the schema HA returns, with every required field at its default, so
    the same code fills both versions' forms.
    """
    data: dict[str, Any] = {"broker": host, "port": port}
    for item in schema:
        if item.get("type") == "expandable":  # a section, e.g. 2026's "other_settings"
            data[item["name"]] = {
                entry["name"]: entry.get("default", _SECTION_DEFAULTS.get(entry["name"]))
                for entry in item["schema"]
                if entry.get("required")
            }
        elif item.get("required") and "default" in item and item["name"] not in data:
            data[item["name"]] = item["default"]
    return data
