"""`<base>/bridge/health`: retained, on request (never a retained one), counting what failed."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from car2mqtt.providers.registry import load_config
from car2mqtt.runtime import running_config
from tests.bridge.conftest import FAST, TOPICS, bridge_for
from tests.mqtt_support import Mosquitto, Probe, free_port, probe, publish, retained
from tests.support import Sim, run_cli, table_row

HEALTH = TOPICS.bridge_health


def health_count(seen: Probe) -> int:
    return sum(1 for topic, payload, _ in seen.messages if topic == HEALTH and payload)


async def test_the_health_is_retained_with_every_field(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    timing = replace(FAST, health_s=0.3)
    async with bridge_for(sim, mosquitto, tmp_path, timing=timing), probe(mosquitto.port) as seen:
        await seen.wait_json(HEALTH, lambda h: h["accounts"]["home"]["last_poll"] is not None)
        kept = await retained(mosquitto.port, HEALTH)
    health = json.loads(kept[HEALTH])
    assert set(health) == {"uptime_s", "rss_mb", "cpu_pct", "mqtt", "accounts", "history", "budget"}
    assert health["uptime_s"] >= 0
    assert 5 < health["rss_mb"] < 10_000
    assert health["cpu_pct"] >= 0
    assert set(health["mqtt"]) == {"sent", "received", "in_flight", "reconnects"}
    assert health["mqtt"]["sent"] > 0
    assert health["mqtt"]["received"] >= 1  # our own availability, at least
    assert health["mqtt"]["reconnects"] == 0
    assert 0 <= health["mqtt"]["in_flight"] <= 32
    home = health["accounts"]["home"]
    assert set(home) == {"link", "last_poll", "last_webhook", "errors", "api_calls", "budget"}
    assert home["link"] == "ok"
    assert home["last_poll"].endswith("+00:00")
    assert home["last_webhook"] is None
    assert home["errors"] == dict.fromkeys(
        ("unavailable", "rate_limited", "rejected", "bad_response", "auth"), 0
    )
    assert home["api_calls"] > 0
    # Counted by the meter under the API client; no cap is set, so nothing is "left".
    budget = home["budget"]
    assert budget["calls_month"] == budget["calls_today"] == home["api_calls"]
    assert 0 < budget["calls_hour"] <= budget["calls_today"]
    assert budget["left"] is None
    assert budget["calls_per_vehicle_month"] is None
    assert budget["poll_interval_s"] in (FAST.poll_interval_s, FAST.active_poll_interval_s)
    assert health["budget"]["calls_month"] == budget["calls_month"]
    assert health["history"] is None  # history is off


async def test_a_request_gets_a_fresh_health_at_once_and_a_retained_one_nothing(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with bridge_for(sim, mosquitto, tmp_path), probe(mosquitto.port) as seen:
        first = await seen.wait_json(HEALTH, lambda h: True)  # the one after connecting
        await asyncio.sleep(1.2)
        before = health_count(seen)
        await publish(mosquitto.port, TOPICS.bridge_health_request, b"")
        fresh = await seen.wait_json(HEALTH, lambda h: h["uptime_s"] > first["uptime_s"], 3)
        assert health_count(seen) == before + 1
        # Retained, it would be acted on at every reconnect: it is never acted on.
        await publish(mosquitto.port, TOPICS.bridge_health_request, b"now", retain=True)
        await asyncio.sleep(1.0)
        assert health_count(seen) == before + 1
    assert fresh["mqtt"]["received"] > first["mqtt"]["received"]


async def test_the_health_comes_every_interval(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    timing = replace(FAST, health_s=0.3)
    async with bridge_for(sim, mosquitto, tmp_path, timing=timing), probe(mosquitto.port) as seen:
        await seen.wait_for(lambda p: health_count(p) >= 4, timeout=5, what="four healths")


@pytest.mark.parametrize(
    ("rule", "kind"),
    [
        ({"unavailable": 1.0}, "unavailable"),
        ({"rateLimit": 1.0, "retryAfter": 1}, "rate_limited"),
        ({"malformed": 1.0}, "bad_response"),
    ],
    ids=["unavailable", "rate_limited", "bad_response"],
)
async def test_each_kind_of_cloud_error_is_counted(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, rule: dict[str, Any], kind: str
) -> None:
    timing = replace(FAST, health_s=0.3)
    async with bridge_for(sim, mosquitto, tmp_path, timing=timing), probe(mosquitto.port) as seen:
        await seen.wait_json(HEALTH, lambda h: h["accounts"]["home"]["last_poll"] is not None)
        sim.admin_call("PUT", "/faults", {"classes": {"read": rule}})
        health = await seen.wait_json(HEALTH, lambda h: h["accounts"]["home"]["errors"][kind] > 0)
        sim.admin_call("PUT", "/faults", {"profile": "none"})
    others = {k: n for k, n in health["accounts"]["home"]["errors"].items() if k != kind}
    assert set(others.values()) == {0}


async def test_refused_client_credentials_count_as_auth(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    timing = replace(FAST, health_s=0.3)
    accounts = [{"account": "broken", "secret": "not-the-secret"}]
    async with (
        bridge_for(sim, mosquitto, tmp_path, accounts=accounts, timing=timing),
        probe(mosquitto.port) as seen,
    ):
        health = await seen.wait_json(
            HEALTH, lambda h: h["accounts"]["broken"]["link"] == "relink_required"
        )
    assert health["accounts"]["broken"]["errors"]["auth"] > 0
    assert health["accounts"]["broken"]["last_poll"] is None


def status_config(tmp_path: Path, sim: Sim, broker_url: str) -> Path:
    enode = sim.info["enode"]
    document = {
        "mqtt": {"url": broker_url, "client_id": f"car2mqtt-status-{free_port()}"},
        "store": str(tmp_path / "car2mqtt.db"),
        "web": {"enabled": False},
        "accounts": [
            {
                "name": "home",
                "provider": "enode",
                "api_url": enode["apiUrl"],
                "token_url": enode["tokenUrl"],
                "client_id": enode["clientId"],
                "client_secret": enode["clientSecret"],
                "user_id": "demo",
            }
        ],
    }
    path = tmp_path / "car2mqtt.yaml"
    path.write_text(json.dumps(document))
    return path


async def test_status_shows_the_link_as_the_running_bridge_sees_it(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    path = status_config(tmp_path, sim, mosquitto.url)
    async with (
        running_config(load_config(path, env={}), timing=FAST),
        probe(mosquitto.port) as seen,
    ):
        await seen.wait_json(HEALTH, lambda h: True)
        shown = await asyncio.to_thread(run_cli, "status", "--config", str(path))
    assert shown.returncode == 0, shown.stderr
    assert table_row(shown.stdout, "home")["link"] == "ok"
    assert "car2mqtt status (the running bridge)" in shown.stdout
    assert "The bridge is running: up 0 h 0 min" in shown.stdout
    assert re.search(
        r"home: API calls \d+ in the last hour, \d+ today, \d+ this month, no cap", shown.stdout
    )
    # Stopped, it says offline: status reads the state file again, and says so.
    stopped = await asyncio.to_thread(run_cli, "status", "--config", str(path))
    assert stopped.returncode == 0, stopped.stderr
    assert "No bridge is running" in stopped.stdout
    assert table_row(stopped.stdout, "home")["link"] == "ok"


async def test_status_without_a_broker_falls_back_to_the_state_file(
    sim: Sim, tmp_path: Path
) -> None:
    path = status_config(tmp_path, sim, f"mqtt://127.0.0.1:{free_port()}")
    shown = await asyncio.to_thread(run_cli, "status", "--config", str(path))
    assert shown.returncode == 0, shown.stderr
    assert "The MQTT broker cannot be reached" in shown.stdout
    assert "showing what the state file last saw" in shown.stdout
    assert table_row(shown.stdout, "home")["link"] == "unknown"


async def test_the_health_follows_the_first_poll_without_waiting_a_minute(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    timing = replace(FAST, health_s=60.0)  # the default cadence
    async with bridge_for(sim, mosquitto, tmp_path, timing=timing), probe(mosquitto.port) as seen:
        health = await seen.wait_json(
            HEALTH, lambda h: h["accounts"]["home"]["last_poll"] is not None, 10
        )
    assert health["accounts"]["home"]["budget"]["calls_month"] > 0
    assert health["uptime_s"] < 60
