"""Enode webhooks as a second source: real simulator deliveries into a real bridge and broker."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from car2mqtt.bridge.known import PushMode
from car2mqtt.bridge.push import Registration, deliveries_key
from car2mqtt.config import Config
from car2mqtt.models import VehicleRef
from car2mqtt.providers.enode.push import signature
from car2mqtt.providers.registry import load_config
from car2mqtt.runtime import Running, running_config
from car2mqtt.store import Store
from car2mqtt.web import receiver
from tests.bridge.conftest import FAST, TOPICS
from tests.enode_spec import EnodeSpec
from tests.mqtt_support import Mosquitto, Probe, free_port, probe
from tests.support import EnodeClient, Sim, run_cli, table_row
from tests.web.conftest import enode_account, until_read

PUSH = replace(FAST, safety_poll_s=3600.0, push_watchdog_s=900.0)


def push_config(tmp_path: Path, broker: Mosquitto, sim: Sim, **webhook: Any) -> Config:
    """A bridge whose Enode account takes webhooks on its own web server (loopback)."""
    port = free_port()
    account = {**enode_account(sim), "webhook": {"public_url": f"http://127.0.0.1:{port}"}}
    document = {
        "mqtt": {"url": broker.url, "client_id": f"car2mqtt-push-{port}"},
        "store": str(tmp_path / "car2mqtt.db"),
        "web": {"host": "127.0.0.1", "port": port},
        "webhook": webhook,
        "accounts": [account],
    }
    path = tmp_path / "car2mqtt.yaml"
    path.write_text(json.dumps(document))
    return load_config(path, env={})


async def until_push(run: Running, mode: PushMode, timeout_s: float = 10.0) -> None:
    """Wait until the account's push mode is `mode`."""
    async with asyncio.timeout(timeout_s):
        while run.bridge.hub.account("home").push is not mode:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def json_of(seen: Probe, topic: str) -> dict[str, Any]:
    """The last JSON payload on `topic` ({} before any)."""
    payload = seen.last(topic)
    data: dict[str, Any] = json.loads(payload) if payload else {}
    return data


def state_topic(vehicle_id: str) -> str:
    """The state topic of one of the simulator's cars."""
    return TOPICS.state(VehicleRef("enode", "home", vehicle_id))


async def admin(sim: Sim, method: str, path: str, body: Any = None) -> httpx.Response:
    """Call the simulator's admin API without blocking the bridge's loop."""
    return await asyncio.to_thread(sim.admin_call, method, path, body)


async def test_changes_arrive_by_webhook_and_polling_drops_to_a_safety_net(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = push_config(tmp_path, mosquitto, sim)
    async with running_config(config, timing=PUSH) as run, probe(mosquitto.port) as seen:
        await until_read(run)
        await until_push(run, PushMode.ACTIVE)  # the test delivery came through
        polls, calls = run.bridge.polls, run.bridge.hub.api_calls
        vehicle = sim.vehicle_ids()[0]
        await admin(sim, "PUT", f"/enode/vehicles/{vehicle}/battery", {"level": 33})
        await asyncio.to_thread(sim.refresh, vehicle)  # Enode's cache: user:vehicle:updated
        await seen.wait_for(
            lambda p: json_of(p, state_topic(vehicle)).get("battery") == 33,
            timeout=5,
            what="the pushed battery level",
        )
        # Not a single list call: the change came by push, and the next poll is an hour away.
        assert run.bridge.polls == polls
        assert run.bridge.hub.api_calls == calls
        await seen.wait_for(
            lambda p: json_of(p, TOPICS.bridge_state).get("push") == "active", what="push"
        )
        assert seen.json(TOPICS.bridge_state)["push_last_delivery"]
        page = await asyncio.to_thread(httpx.get, f"{run.web_url}/accounts/home")
        assert "pushed (webhooks)" in page.text


async def test_when_deliveries_stop_polling_takes_over_and_comes_back(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    timing = replace(PUSH, push_watchdog_s=1.5)
    config = push_config(tmp_path, mosquitto, sim)
    async with running_config(config, timing=timing) as run, probe(mosquitto.port) as seen:
        await until_read(run)
        await until_push(run, PushMode.ACTIVE)
        await admin(sim, "PUT", "/enode/webhook-delivery", {"paused": True})
        polls = run.bridge.polls
        await until_push(run, PushMode.DEGRADED)
        await seen.wait_for(
            lambda p: json_of(p, TOPICS.bridge_state).get("push") == "degraded",
            what="degraded in the bridge state",
        )
        async with asyncio.timeout(10):
            while run.bridge.polls <= polls + 2:  # noqa: ASYNC110 - polling at its usual pace
                await asyncio.sleep(0.05)
        assert "polling takes over" in caplog.text
        # Enode delivers again: the watchdog's next test gets through, and push is back.
        await admin(sim, "PUT", "/enode/webhook-delivery", {"paused": False})
        await until_push(run, PushMode.ACTIVE, timeout_s=15)
        assert run.bridge.pace_of("home").pushed  # polling is the safety net again
        assert "webhook deliveries arrive; polling only as a safety net" in caplog.text


async def deactivate_for_good(sim: Sim) -> None:
    """Deactivate the account's webhook at the simulator, and see that it stays so.

    The bridge's own test delivery may still be under way when the bridge turns active (it
    acts on the delivery, which arrives before the test call returns); once that call
    returns, the simulator, like Enode, marks the webhook active again.
    """
    enode = EnodeClient(sim, EnodeSpec.load())
    try:
        for _ in range(20):
            deactivated = (await admin(sim, "POST", "/enode/webhooks/deactivate")).json()
            assert len(deactivated["deactivated"]) <= 1
            await asyncio.sleep(0.3)
            (hook,) = (await asyncio.to_thread(enode.get, "/webhooks")).json()["data"]
            if not hook["isActive"]:
                return
    finally:
        enode.close()
    raise AssertionError("the webhook never stayed inactive")


async def test_a_webhook_the_cloud_reports_inactive_hands_over_to_polling_before_the_watchdog(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # Asked about only after half a watchdog period without deliveries: 3 s here, where the
    # watchdog itself would wait 6 s.
    timing = replace(PUSH, push_watchdog_s=6.0)
    config = push_config(tmp_path, mosquitto, sim)
    async with running_config(config, timing=timing) as run:
        await until_read(run)
        await until_push(run, PushMode.ACTIVE)
        await deactivate_for_good(sim)
        await until_push(run, PushMode.DEGRADED)
        # Degraded for what Enode said, not for the watchdog's silence (its words differ).
        assert (
            run.bridge.hub.account("home").push_detail == "the cloud reports the webhook inactive"
        )
        assert not run.bridge.pace_of("home").pushed  # polling at its usual pace again
        # Its test gets through (the simulator, like Enode, re-activates it): push is back.
        await until_push(run, PushMode.ACTIVE, timeout_s=15)
    assert "reports the webhook inactive; polling takes over" in caplog.text


async def test_a_webhook_deleted_at_the_cloud_is_subscribed_again(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    timing = replace(PUSH, push_watchdog_s=4.0)
    config = push_config(tmp_path, mosquitto, sim)
    enode = EnodeClient(sim, EnodeSpec.load())
    try:
        async with running_config(config, timing=timing) as run:
            await until_read(run)
            await until_push(run, PushMode.ACTIVE)
            (old,) = (await asyncio.to_thread(enode.get, "/webhooks")).json()["data"]
            deleted = await asyncio.to_thread(enode.request, "DELETE", f"/webhooks/{old['id']}")
            assert deleted.status_code == 204
            await until_push(run, PushMode.DEGRADED)
            await until_push(run, PushMode.ACTIVE, timeout_s=15)
            (new,) = (await asyncio.to_thread(enode.get, "/webhooks")).json()["data"]
            assert new["id"] != old["id"]
            assert new["url"] == old["url"]
    finally:
        enode.close()


async def test_what_the_receiver_refuses_and_what_it_takes_once(
    sim: Sim,
    mosquitto: Mosquitto,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = push_config(tmp_path, mosquitto, sim)
    async with running_config(config, timing=PUSH) as run, httpx.AsyncClient() as http:
        await until_read(run)
        await until_push(run, PushMode.ACTIVE)
        url = run.bridge.push.url_of("home")
        store = run.bridge.saver.store
        registration = Registration.load(store, "home")
        assert registration is not None
        secret = registration.secret
        vehicle = sim.vehicle_ids()[0]
        event = {
            "event": "user:vehicle:deleted",
            "createdAt": "2026-12-01T10:00:00Z",
            "version": "2024-10-01",
            "user": {"id": "demo"},
            "vehicle": {"id": vehicle},
        }
        body = json.dumps([event]).encode()

        async def post(content: bytes, sign: str | None) -> httpx.Response:
            headers = {"Content-Type": "application/json"}
            if sign is not None:
                headers["X-Enode-Signature"] = sign
            return await http.post(url, content=content, headers=headers)

        # No signature, a wrong one, one over other bytes: 401, and the car stays.
        caplog.set_level(logging.WARNING)
        assert (await post(body, None)).status_code == 401
        assert (await post(body, signature("not-the-secret", body))).status_code == 401
        assert (await post(body, signature(secret, body + b" "))).status_code == 401
        assert caplog.text.count("bad signature") == 1  # a flood is one line a minute
        key = VehicleRef("enode", "home", vehicle).key
        assert run.bridge.hub.vehicle(key) is not None

        # Too large: refused before it is read whole.
        huge = b"[" + b" " * 1_100_000 + b"]"
        assert (await post(huge, signature(secret, huge))).status_code == 413

        # A body that trickles in: given up after the receiver's time limit.
        monkeypatch.setattr(receiver, "BODY_TIMEOUT_S", 0.3)

        async def trickle() -> AsyncIterator[bytes]:
            yield b"["
            await asyncio.sleep(1.0)
            yield b"]"

        slow = await http.post(url, content=trickle(), headers={"X-Enode-Signature": "sha1=0"})
        assert slow.status_code == 408

        # Signed but unreadable, or unknown: taken (an error would be retried for ever), said.
        garbled = b"{not json"
        assert (await post(garbled, signature(secret, garbled))).status_code == 200
        assert "not JSON" in caplog.text
        odd = json.dumps([{"event": "user:teleport:done", "user": {"id": "demo"}}]).encode()
        assert (await post(odd, signature(secret, odd))).status_code == 200

        # The real thing, twice (Enode retries): applied once.
        assert (await post(body, signature(secret, body))).status_code == 200
        assert (await post(body, signature(secret, body))).status_code == 200
        assert run.bridge.hub.vehicle(key) is None
        log = json.loads(store.get_meta(deliveries_key("home")) or "[]")
        assert [entry["events"] for entry in log[:2]] == [0, 1]  # newest first: the replay
        assert secret not in caplog.text


async def test_pushed_actions_credentials_and_new_cars(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # Reading an action's status waits an hour here: only a push can move the command on.
    timing = replace(PUSH, command_poll_s=3600.0, after_command_poll_s=3600.0)
    config = push_config(tmp_path, mosquitto, sim)
    async with running_config(config, timing=timing) as run, probe(mosquitto.port) as seen:
        await until_read(run)
        await until_push(run, PushMode.ACTIVE)
        vehicle = next(
            v
            for v in run.bridge.hub.account("home").vehicles.values()
            if v.state.plugged_in  # the Volkswagen, charging (whatever Enode's cache says yet)
        )
        result_topic = TOPICS.command_result(vehicle.ref)
        await seen_publish(mosquitto, TOPICS.command(vehicle.ref, "charging"), "OFF")
        await seen.wait_for(
            lambda p: json_of(p, result_topic).get("status") == "pending", what="pending"
        )
        await asyncio.to_thread(sim.advance, 300)  # the vendor carries it out, Enode sees it
        await seen.wait_for(
            lambda p: json_of(p, result_topic).get("status") == "confirmed",
            timeout=10,
            what="confirmed, by push",
        )

        added = await admin(sim, "POST", "/enode/vehicles", {"userId": "demo"})
        assert added.status_code in (200, 201), added.text
        new_id = added.json()["id"]
        await seen.wait_for(lambda p: p.last(state_topic(new_id)) is not None, what="a new car")

        await admin(sim, "POST", "/enode/users/demo/invalidate-credentials", {})
        async with asyncio.timeout(10):
            while not run.bridge.hub.account("home").relink_required:  # noqa: ASYNC110
                await asyncio.sleep(0.02)


async def seen_publish(broker: Mosquitto, topic: str, payload: str) -> None:
    """Publish one command, as Home Assistant would (not retained)."""
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=f"ha-{free_port()}") as c:
        await c.publish(topic, payload, qos=1)


async def test_a_restart_reuses_its_own_webhook_and_leaves_others_alone(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = push_config(tmp_path, mosquitto, sim)
    theirs = await asyncio.to_thread(
        _enode_post, sim, "/webhooks", {"url": "https://example.invalid/hook", "secret": "x" * 16}
    )
    async with running_config(config, timing=PUSH) as run:
        await until_push(run, PushMode.ACTIVE)
    with Store.open(config.store) as store:
        first = Registration.load(store, "home")
    assert first is not None
    async with running_config(config, timing=PUSH) as run:
        await until_push(run, PushMode.ACTIVE)
    with Store.open(config.store) as store:
        second = Registration.load(store, "home")
        assert second == first
        store.delete_meta("webhook:home")  # a state file that lost it (or a lost answer)
    async with running_config(config, timing=PUSH) as run:
        await until_push(run, PushMode.ACTIVE)  # the one at its own URL, not a second one
    with Store.open(config.store) as store:
        third = Registration.load(store, "home")
    assert third is not None
    assert third.subscription_id == first.subscription_id
    assert third.secret != first.secret
    hooks = (await asyncio.to_thread(_enode_get, sim, "/webhooks"))["data"]
    assert sorted(h["id"] for h in hooks) == sorted([first.subscription_id, theirs["id"]])
    other = next(h for h in hooks if h["id"] == theirs["id"])
    assert other["url"] == "https://example.invalid/hook"
    assert other["events"] == theirs["events"]


def _token(sim: Sim) -> str:
    creds = sim.info["enode"]
    r = httpx.post(
        creds["tokenUrl"],
        data={"grant_type": "client_credentials"},
        auth=(creds["clientId"], creds["clientSecret"]),
    )
    token: str = r.json()["access_token"]
    return token


def _enode_post(sim: Sim, path: str, body: Any) -> dict[str, Any]:
    r = httpx.post(
        sim.info["enode"]["apiUrl"] + path,
        json=body,
        headers={"Authorization": f"Bearer {_token(sim)}"},
    )
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def _enode_get(sim: Sim, path: str) -> dict[str, Any]:
    r = httpx.get(
        sim.info["enode"]["apiUrl"] + path, headers={"Authorization": f"Bearer {_token(sim)}"}
    )
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def test_webhook_status_and_rotate_while_the_bridge_runs(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = push_config(tmp_path, mosquitto, sim)
    path = str(tmp_path / "car2mqtt.yaml")
    async with running_config(config, timing=PUSH) as run, probe(mosquitto.port) as seen:
        await until_read(run)
        await until_push(run, PushMode.ACTIVE)
        status = await asyncio.to_thread(run_cli, "webhook", "status", "--config", path)
        assert status.returncode == 0, status.stderr
        row = table_row(status.stdout, "home")
        saved = Registration.load(run.bridge.saver.store, "home")
        assert saved is not None
        assert row["webhook"] == saved.subscription_id
        assert row["active"] == "yes"
        assert "events, ok" in row["received"]
        assert saved.secret not in status.stdout + status.stderr

        rotated = await asyncio.to_thread(
            run_cli, "webhook", "rotate", "--account", "home", "--config", path
        )
        assert rotated.returncode == 0, rotated.stderr
        fresh = Registration.load(run.bridge.saver.store, "home")
        assert fresh is not None
        assert fresh.secret != saved.secret
        assert fresh.subscription_id == saved.subscription_id
        assert fresh.secret not in rotated.stdout + rotated.stderr
        # Enode signs with the new secret now; the running bridge takes it up by itself.
        vehicle = sim.vehicle_ids()[1]
        await admin(sim, "PUT", f"/enode/vehicles/{vehicle}/battery", {"level": 44})
        await asyncio.to_thread(sim.refresh, vehicle)
        await seen.wait_for(
            lambda p: json_of(p, state_topic(vehicle)).get("battery") == 44,
            timeout=5,
            what="a delivery signed with the new secret",
        )
        wrong = await asyncio.to_thread(
            run_cli, "webhook", "rotate", "--account", "nobody", "--config", path
        )
        assert wrong.returncode == 2
        assert "no account named 'nobody'" in wrong.stderr


async def test_a_listener_of_its_own_takes_the_deliveries_and_nothing_else(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    hook_port = free_port()
    push_config(tmp_path, mosquitto, sim, host="127.0.0.1", port=hook_port)
    # Enode reaches the receiver's own port; the web UI stays where it is.
    document = json.loads((tmp_path / "car2mqtt.yaml").read_text())
    document["accounts"][0]["webhook"]["public_url"] = f"http://127.0.0.1:{hook_port}"
    (tmp_path / "car2mqtt.yaml").write_text(json.dumps(document))
    config = load_config(tmp_path / "car2mqtt.yaml", env={})
    async with running_config(config, timing=PUSH) as run, httpx.AsyncClient() as http:
        await until_read(run)
        await until_push(run, PushMode.ACTIVE)  # Enode's test came to the receiver's port
        assert run.receiver_url == f"http://127.0.0.1:{hook_port}/webhooks"
        assert run.bridge.push.url_of("home").startswith(f"http://127.0.0.1:{hook_port}/")
        # Only the receiver answers there: no page, no health probe, no static file.
        for path in ("/", "/healthz", "/config", "/static/app.css"):
            assert (await http.get(f"http://127.0.0.1:{hook_port}{path}")).status_code == 404
        assert (await http.get(f"{run.web_url}/healthz")).status_code == 200
        # And the web UI's server has no receiver of its own.
        posted = await http.post(f"{run.web_url}/webhooks/enode/home", content=b"[]")
        assert posted.status_code in (404, 405)


def test_the_secret_before_a_rotation_verifies_for_an_hour_only() -> None:
    registration = Registration("hook-1", "new-secret", "https://x/h", "old-secret", 1000.0)
    assert registration.secrets(1000.0 + 3599) == ["new-secret", "old-secret"]
    assert registration.secrets(1000.0 + 3601) == ["new-secret"]
    assert Registration("hook-1", "only").secrets(0.0) == ["only"]
