"""The bridge's commands, run as users run them: subprocesses against real services."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from tests.mqtt_support import Mosquitto, free_port, retained
from tests.support import Sim, run_cli, started_cli, table_row

SECRET = "car2mqtt-sim-secret"


def write_config(tmp_path: Path, sim: Sim, broker: Mosquitto, **extra: Any) -> Path:
    creds = sim.info["enode"]
    account = {
        "name": "home",
        "provider": "enode",
        "api_url": creds["apiUrl"],
        "token_url": creds["tokenUrl"],
        "client_id": creds["clientId"],
        "client_secret": creds["clientSecret"],
        "user_id": "demo",
        **extra,
    }
    config = {
        "mqtt": {"url": broker.url},
        "store": str(tmp_path / "car2mqtt.db"),
        "accounts": [account],
    }
    path = tmp_path / "car2mqtt.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def test_config_check_valid(sim: Sim, mosquitto: Mosquitto, tmp_path: Path) -> None:
    path = write_config(tmp_path, sim, mosquitto)
    result = run_cli("config", "check", str(path))
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout
    assert "home" in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_config_check_invalid_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "mqtt:\n  url: http://broker\naccounts:\n  - name: home\n    provider: enode\n"
        "    environment: sandbx\n    client_id: x\n    client_secret: hunter22\n    user_id: u\n"
    )
    result = run_cli("config", "check", str(path))
    assert result.returncode == 2
    assert "accounts[home].environment" in result.stderr
    assert "sandbx" in result.stderr
    assert "production, sandbox" in result.stderr
    assert "mqtt.url" in result.stderr
    assert "hunter22" not in result.stderr
    assert "Traceback" not in result.stderr


def test_run_publishes_then_says_offline_on_sigterm(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    path = write_config(tmp_path, sim, mosquitto)
    tesla = sim.vehicle_ids()[0]
    config_topic = f"homeassistant/device/car2mqtt_enode_{tesla}/config"
    with started_cli("run", "--config", str(path), stop=signal.SIGTERM) as proc:
        kept = wait_retained(mosquitto, lambda r: config_topic in r)
        assert kept["car2mqtt/bridge/availability"] == b"online"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert proc.stderr is not None
        log = proc.stderr.read()
    kept = wait_retained(mosquitto, lambda r: r.get("car2mqtt/bridge/availability") == b"offline")
    assert "connected to MQTT broker" in log
    assert SECRET not in log
    assert "Traceback" not in log

    status = run_cli("status", "--config", str(path))
    assert status.returncode == 0, status.stderr
    row = table_row(status.stdout, "home")
    assert row["link"] == "ok"
    assert row["token"].startswith("valid")  # the token's remaining life, never the token
    assert row["vehicles"] == "3"


def test_run_with_unreachable_broker_keeps_trying(sim: Sim, tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path)  # never started: nothing listens on its port
    path = write_config(tmp_path, sim, broker)
    with started_cli("run", "--config", str(path), stop=signal.SIGTERM) as proc:
        time.sleep(3)
        assert proc.poll() is None, "the bridge must not die when the broker is away"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        assert proc.stderr is not None
        log = proc.stderr.read()
    assert log.count("unavailable") == 1, "one line per change of state"
    assert "Traceback" not in log


def test_vehicles_table(sim: Sim, mosquitto: Mosquitto, tmp_path: Path) -> None:
    path = write_config(tmp_path, sim, mosquitto)
    result = run_cli("vehicles", "--config", str(path))
    assert result.returncode == 0, result.stderr
    for name in ("Tesla Model 3", "Volkswagen ID.4", "XPENG G6"):
        assert name in result.stdout


def drive_link_ui(url: str, *, complete: bool) -> httpx.Response:
    """Click through the simulator's Link UI like a person, then follow the final redirect."""
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        page = browser.get(url)
        page = browser.post(urljoin(url + "/", "vendor"), data={"vendor": "POLESTAR"})
        page = browser.get(urljoin(str(page.url), page.headers["location"]))
        login = browser.post(str(page.url), data={"username": "me", "password": "pw"})
        consent = browser.get(urljoin(str(login.url), login.headers["location"]))
        action = "complete" if complete else "cancel"
        done = browser.post(str(consent.url).replace("/consent", f"/{action}"))
        assert done.status_code == 303
        return browser.get(done.headers["location"])


@pytest.mark.parametrize("complete", [True, False])
def test_link_enode_end_to_end(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, complete: bool
) -> None:
    path = write_config(tmp_path, sim, mosquitto)
    with started_cli(
        "link", "enode", "--account", "home", "--config", str(path), stop=signal.SIGTERM
    ) as proc:
        assert proc.stdout is not None
        url = ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not url:
            line = proc.stdout.readline().strip()
            if re.fullmatch(r"http://\S+/enode/link/\S+", line):
                url = line
        assert url, "the link URL is printed on a line of its own"
        landing = drive_link_ui(url, complete=complete)
        assert landing.status_code == 200
        code = proc.wait(timeout=20)
        out = proc.stdout.read()
        assert proc.stderr is not None
        err = proc.stderr.read()
    if complete:
        assert code == 0, err
        assert "Done" in landing.text
        assert "Polestar" in out
        assert "Tesla Model 3" in out
    else:
        assert code == 2
        assert "cancelled" in err
        assert "Traceback" not in err


def test_link_unknown_account(sim: Sim, mosquitto: Mosquitto, tmp_path: Path) -> None:
    path = write_config(tmp_path, sim, mosquitto)
    result = run_cli("link", "enode", "--account", "work", "--config", str(path))
    assert result.returncode == 2
    assert "no account named 'work'" in result.stderr


def test_demo_shows_cars_with_no_credentials(tmp_path: Path) -> None:
    mqtt_port = free_port()
    with started_cli(
        "demo",
        "--port",
        "0",
        "--mqtt-port",
        str(mqtt_port),
        "--state-dir",
        str(tmp_path / "demo"),
        stop=signal.SIGTERM,
    ) as proc:
        assert proc.stdout is not None
        text = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "Ctrl-C" not in text:
            text += proc.stdout.readline()
        assert f"MQTT broker: mqtt://127.0.0.1:{mqtt_port} (embedded)" in text
        assert "/xee/v4" in text
        broker = Mosquitto(tmp_path, port=mqtt_port)

        def ready(r: dict[str, bytes]) -> bool:
            configs = [t for t in r if t.startswith("homeassistant/device/car2mqtt_enode")]
            dongles = [t for t in r if t.startswith("homeassistant/device/car2mqtt_xee")]
            charging = [t for t, v in r.items() if t.endswith("/state") and b'"charging":"ON"' in v]
            return len(configs) == 3 and len(dongles) == 2 and bool(charging)

        kept = wait_retained(broker, ready, timeout=20)
        assert kept["car2mqtt/bridge/availability"] == b"online"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0


def wait_retained(broker: Mosquitto, check: Any, timeout: float = 15.0) -> dict[str, bytes]:
    """Poll the broker's retained messages until `check` holds."""
    deadline = time.monotonic() + timeout
    last: dict[str, bytes] = {}
    while time.monotonic() < deadline:
        try:
            last = asyncio.run(retained(broker.port, settle=0.3))
        except Exception:
            time.sleep(0.2)
            continue
        if check(last):
            return last
    msg = f"retained messages never satisfied the check; have {sorted(last)}"
    raise AssertionError(msg)


def test_unusable_ca_file_is_one_clear_line(sim: Sim, tmp_path: Path) -> None:
    bad_ca = tmp_path / "ca.pem"
    bad_ca.write_text("not a certificate\n")
    broker = Mosquitto(tmp_path)
    path = write_config(tmp_path, sim, broker)
    config = json.loads(path.read_text())
    config["mqtt"] = {"url": f"mqtts://127.0.0.1:{broker.port}", "ca_file": str(bad_ca)}
    path.write_text(json.dumps(config))
    result = run_cli("run", "--config", str(path), timeout=30)
    assert result.returncode == 2
    assert "mqtt.ca_file" in result.stderr
    assert "Traceback" not in result.stderr
