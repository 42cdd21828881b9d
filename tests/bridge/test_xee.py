"""Xee cars through the bridge: the real simulator over HTTP, a real mosquitto, in process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from car2mqtt.clock import SimClock
from car2mqtt.models import LinkState, VehicleRef
from car2mqtt.store import Store
from tests.bridge.conftest import (
    FAST,
    TOPICS,
    bridge_for,
    enode_provider,
    xee_password_tokens,
    xee_provider,
    xee_token_grant,
)
from tests.bridge.test_bridge import sim_now, wait_retained
from tests.mqtt_support import Mosquitto, Probe, probe, retained
from tests.support import START, Sim, running_sim

pytestmark = pytest.mark.asyncio
XEE_DEVICE_PREFIX = "homeassistant/device/car2mqtt_xee_"


def xee_configs(kept: dict[str, bytes]) -> dict[str, dict[str, Any]]:
    """The retained Xee device configs, by topic (empty payloads are removals)."""
    return {
        topic: json.loads(payload)
        for topic, payload in kept.items()
        if topic.startswith(XEE_DEVICE_PREFIX) and payload
    }


def dongles(sim: Sim) -> dict[str, str]:
    """Vehicle id -> dongle id for every car of the demo Xee user, from the cloud itself."""
    found = {}
    for vehicle_id in sim.info["xee"]["users"][xee_user(sim)]:
        car = sim.admin_call("GET", f"/xee/vehicles/{vehicle_id}").json()
        found[vehicle_id] = car["device"]["id"]
    return found


def xee_bridge(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> contextlib.AbstractAsyncContextManager[tuple[str, VehicleRef, Probe]]:
    """Bridge the demo Xee user (password grant); yield its first car once it has data."""
    return xee_bridge_on(sim, mosquitto, tmp_path, None)


@contextlib.asynccontextmanager
async def xee_bridge_on(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, clock: SimClock | None
) -> AsyncIterator[tuple[str, VehicleRef, Probe]]:
    """Bridge the demo Xee user on `clock`; yield its first car once it has data."""
    vehicle_id, dongle = next(iter(dongles(sim).items()))
    ref = VehicleRef("xee", "car", dongle)

    def providers(store: Store) -> list[Any]:
        return [xee_provider(sim, store, clock=clock)]

    async with (
        bridge_for(sim, mosquitto, tmp_path, providers=providers, clock=clock),
        probe(mosquitto.port) as seen,
    ):
        await seen.wait_json(TOPICS.state(ref), lambda s: "odometer" in s, 15)
        yield vehicle_id, ref, seen


def accelerated(sim: Sim) -> SimClock:
    """A clock for the bridge that runs with the simulator's (1800x) and agrees with it."""
    clock = SimClock(START, 1800.0)
    clock.advance(max(0.0, sim_now(sim) - clock.time()))
    return clock


def xee_calls(sim: Sim) -> int:
    return int(sim.admin_call("GET", "/").json()["apiCalls"]["xee"])


def xee_user(sim: Sim) -> str:
    users: dict[str, list[str]] = sim.info["xee"]["users"]
    return next(iter(users))


def save_linked(path: Path, tokens: dict[str, Any], account: str = "car") -> None:
    """Save tokens the way `car2mqtt link xee` does: another process, the same state file."""
    with Store.open(path) as other:
        other.save_token(
            account,
            {
                "access_token": tokens["access_token"],
                "refresh_token": tokens["refresh_token"],
                "expires_at": time.time() + 3000.0,  # the bridge here runs on real time
                "scope": tokens.get("scope"),
            },
        )


async def test_combustion_and_electric_cars_in_discovery(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    ids = dongles(sim)
    async with bridge_for(
        sim, mosquitto, tmp_path, providers=lambda store: [xee_provider(sim, store)]
    ):
        kept = await wait_retained(mosquitto.port, lambda r: len(xee_configs(r)) == len(ids))
    configs = xee_configs(kept)
    assert set(configs) == {f"{XEE_DEVICE_PREFIX}{d}/config" for d in ids.values()}
    kinds = {}
    for config in configs.values():
        components = config["components"]
        # Read-only: Xee has no commands, so no switch and no refresh button.
        assert not {c["platform"] for c in components.values()} & {"switch", "button"}
        for key in ("speed", "battery_voltage", "lock", "ignition", "odometer", "location"):
            assert key in components, (key, sorted(components))
        assert components["lock"]["device_class"] == "lock"
        assert components["speed"]["unit_of_measurement"] == "km/h"
        assert components["relink_required"]["device_class"] == "problem"
        fuel, battery = "fuel_level" in components, "battery" in components
        assert fuel != battery, sorted(components)  # a car burns one or the other
        if fuel:
            assert components["fuel_level"]["unit_of_measurement"] == "L"
        else:
            assert components["range"]["unit_of_measurement"] == "km"
        kinds[config["device"]["identifiers"][0]] = "combustion" if fuel else "electric"
    assert sorted(kinds.values()) == ["combustion", "electric"]


async def test_signal_values_reach_mqtt_by_name(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with xee_bridge(sim, mosquitto, tmp_path) as (vehicle_id, ref, seen):
        first = seen.json(TOPICS.state(ref))
        sim.admin_call("PUT", f"/xee/vehicles/{vehicle_id}/fuel", {"litres": 12.5})
        truth = sim.admin_call("GET", f"/xee/vehicles/{vehicle_id}").json()["signals"]
        state = await seen.wait_json(
            TOPICS.state(ref), lambda s: s.get("fuel_level") == truth["ComputedFuelLevel"], 15
        )
    assert truth["ComputedFuelLevel"] == pytest.approx(12.5, abs=1.0)
    assert first["odometer"] == truth["Odometer"]
    assert state["battery_voltage"] == truth["BatteryVoltage"]
    assert state["lock"] == ("OFF" if truth["LockSts"] else "ON")  # HA's lock: on = unlocked
    assert state["ignition"] == ("ON" if truth["IgnitionSts"] else "OFF")


async def test_a_changed_vehicle_id_keeps_the_same_device(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    ids = dongles(sim)
    async with xee_bridge(sim, mosquitto, tmp_path) as (vehicle_id, ref, seen):
        dongle = ref.vehicle_id
        repaired = sim.admin_call("POST", f"/xee/vehicles/{vehicle_id}/repair").json()
        assert repaired["id"] != vehicle_id
        assert repaired["device"]["id"] == dongle
        sim.admin_call("PUT", f"/xee/vehicles/{repaired['id']}/fuel", {"litres": 7.0})
        await seen.wait_json(TOPICS.state(ref), lambda s: abs(s.get("fuel_level", 0) - 7) < 1, 15)
        kept = await retained(mosquitto.port)
        # Never removed and re-created (that would give HA a `_2` entity id).
        removals = [t for t, payload, _ in seen.messages if t.startswith(XEE_DEVICE_PREFIX)]
        assert all(seen.last(t) for t in removals)
        assert not [
            t for t, payload, _ in seen.messages if t.startswith("car2mqtt/") and not payload
        ]
    assert len(xee_configs(kept)) == len(ids)


async def test_rotation_across_many_refreshes_on_an_accelerated_clock(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # Half a simulated hour per real second on both sides: an hour-long token lives 2 s.
    with running_sim(time_factor=1800.0) as sim:
        clock = accelerated(sim)
        first_refresh: list[str] = []

        def providers(store: Store) -> list[Any]:
            return [xee_provider(sim, store, clock=clock)]

        async with bridge_for(sim, mosquitto, tmp_path, providers=providers) as harness:
            provider = harness.running.bridge.provider("car")
            tokens = provider.tokens  # type: ignore[attr-defined]
            seen_refresh: set[str] = set()
            for _ in range(60):
                await asyncio.sleep(0.1)
                if tokens.token is not None and tokens.token.refresh_token:
                    seen_refresh.add(tokens.token.refresh_token)
                    if not first_refresh:
                        first_refresh.append(tokens.token.refresh_token)
            failures = harness.running.bridge.failures("car")
            bridge_state = json.loads((await retained(mosquitto.port))[TOPICS.bridge_state])
            saved = harness.store.load_token("car")
        assert len(seen_refresh) >= 3, "every refresh handed out a new refresh token"
        assert failures == 0
        assert bridge_state["accounts"]["car"]["link"] == LinkState.OK.value
        assert saved is not None
        assert saved["refresh_token"] == tokens.token.refresh_token  # stored before use
        # The first refresh token was used long ago and its successors too: it is dead.
        dead = xee_token_grant(sim, grant_type="refresh_token", refresh_token=first_refresh[0])
        assert dead.status_code == 400
        assert dead.json()["error"] == "invalid_request"


async def test_revoked_token_needs_relink_then_relinks_without_restart(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    state_file = tmp_path / "state" / "car2mqtt.db"
    state_file.parent.mkdir(parents=True, exist_ok=True)
    save_linked(state_file, xee_password_tokens(sim))
    dongle = next(iter(dongles(sim).values()))
    ref = VehicleRef("xee", "car", dongle)
    tesla = sim.vehicle_ids()[0]

    def providers(store: Store) -> list[Any]:
        return [xee_provider(sim, store, password=False), enode_provider(sim, store)]

    # The cloud is retried only every 10 minutes once the grant is dead: what brings the link
    # back within seconds is the bridge noticing the grant `car2mqtt link` saved.
    timing = replace(FAST, relink_retry_s=600.0, relink_check_s=0.2)
    async with (
        bridge_for(sim, mosquitto, tmp_path, providers=providers, timing=timing) as harness,
        probe(mosquitto.port) as seen,
    ):
        await seen.wait_json(TOPICS.state(ref), lambda s: s["relink_required"] == "OFF", 15)
        revoked = sim.admin_call("POST", "/xee/tokens/revoke")
        assert revoked.status_code == 200, revoked.text
        await seen.wait_json(TOPICS.state(ref), lambda s: s["relink_required"] == "ON", 15)
        bridge = await seen.wait_json(TOPICS.bridge_state, lambda s: s["problem"] == "ON", 15)
        assert bridge["accounts"]["car"]["link"] == "relink_required"
        assert harness.store.account_statuses()["car"][0] == "relink_required"
        # The other account goes on: a change on the Enode side still arrives.
        enode_ref = VehicleRef("enode", "home", tesla)
        sim.admin_call("PUT", f"/enode/vehicles/{tesla}/battery", {"level": 23})
        sim.refresh(tesla)
        await seen.wait_json(TOPICS.state(enode_ref), lambda s: s["battery"] == 23, 15)
        calls_while_dead = xee_calls(sim)
        await asyncio.sleep(1.0)
        # No retry storm: a dead grant is not hammered (next try in relink_retry_s).
        assert xee_calls(sim) == calls_while_dead

        save_linked(state_file, xee_password_tokens(sim))  # `car2mqtt link xee` in another process
        await seen.wait_json(TOPICS.state(ref), lambda s: s["relink_required"] == "OFF", 15)
        await seen.wait_json(TOPICS.bridge_state, lambda s: s["problem"] == "OFF", 15)
    relink_lines = [r.getMessage() for r in caplog.records if "needs re-linking" in r.getMessage()]
    assert len(relink_lines) == 1, relink_lines
    assert "car2mqtt link xee --account car" in relink_lines[0]
    assert "link repaired" in caplog.text
    assert "Traceback" not in caplog.text


async def test_xee_rate_limits_back_off_and_recover(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    dongle = next(iter(dongles(sim).values()))
    ref = VehicleRef("xee", "car", dongle)
    async with (
        bridge_for(sim, mosquitto, tmp_path, providers=lambda store: [xee_provider(sim, store)]),
        probe(mosquitto.port) as seen,
    ):
        await seen.wait_json(TOPICS.state(ref), lambda s: "odometer" in s, 15)
        sim.admin_call(
            "PUT", "/xee/faults", {"classes": {"read": {"rateLimit": 1.0, "retryAfter": 1}}}
        )
        await seen.wait_for(lambda p: p.last(TOPICS.availability(ref)) == b"offline", 15)
        sim.admin_call("PUT", "/xee/faults", {"profile": "none"})
        await seen.wait_for(lambda p: p.last(TOPICS.availability(ref)) == b"online", 15)


async def test_password_grant_takes_over_when_the_refresh_token_dies(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # An hour-long token lives 2 s on this clock: the bridge must refresh within the test.
    with running_sim(time_factor=1800.0) as sim:
        clock = accelerated(sim)
        dongle = next(iter(dongles(sim).values()))
        ref = VehicleRef("xee", "car", dongle)

        def providers(store: Store) -> list[Any]:
            return [xee_provider(sim, store, clock=clock)]

        async with (
            bridge_for(sim, mosquitto, tmp_path, providers=providers) as harness,
            probe(mosquitto.port) as seen,
        ):
            await seen.wait_json(TOPICS.state(ref), lambda s: "odometer" in s, 15)
            tokens = harness.running.bridge.provider("car").tokens  # type: ignore[attr-defined]
            revoke = f"/xee/users/{xee_user(sim)}/revoke-refresh-tokens"
            assert sim.admin_call("POST", revoke).status_code == 200
            dead = tokens.token.refresh_token
            # No refresh can work now: renewals from here on are password grants.
            refused = xee_token_grant(sim, grant_type="refresh_token", refresh_token=dead)
            assert refused.status_code == 400
            before = tokens.renewals
            for _ in range(50):  # a few token lifetimes
                await asyncio.sleep(0.1)
                if tokens.renewals >= before + 2:
                    break
            assert tokens.renewals >= before + 2
            state = json.loads((await retained(mosquitto.port))[TOPICS.state(ref)])
            failures = harness.running.bridge.failures("car")
    assert state["relink_required"] == "OFF"
    assert failures == 0


async def test_tokens_that_die_before_expires_in_are_renewed_on_401(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # Xee says an hour but the token dies after 10 simulated minutes (a third of a real second).
    with running_sim(time_factor=1800.0, xee_early_expiry_s=3000.0) as sim:
        clock = accelerated(sim)
        vehicle_id, dongle = next(iter(dongles(sim).items()))
        ref = VehicleRef("xee", "car", dongle)
        made: list[Any] = []

        def providers(store: Store) -> list[Any]:
            made.append(xee_provider(sim, store, clock=clock))
            return made

        async with (
            bridge_for(sim, mosquitto, tmp_path, providers=providers, clock=clock),
            probe(mosquitto.port) as seen,
        ):
            await seen.wait_json(TOPICS.state(ref), lambda s: "odometer" in s, 15)
            await asyncio.sleep(2.0)  # six token lives
            sim.admin_call("PUT", f"/xee/vehicles/{vehicle_id}/fuel", {"litres": 9.0})
            await seen.wait_json(
                TOPICS.state(ref), lambda s: abs(s.get("fuel_level", 0) - 9) < 1, 15
            )
            bridge = seen.json(TOPICS.bridge_state)
            refused = made[0].tokens.refused
    assert bridge["accounts"]["car"]["link"] == "ok"
    # The 401 path was taken: tokens the bridge still thought valid were refused and renewed.
    assert refused >= 1


async def test_a_suspended_account_needs_attention_and_others_go_on(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with xee_bridge(sim, mosquitto, tmp_path) as (_, ref, seen):
        assert sim.admin_call("POST", f"/xee/users/{xee_user(sim)}/suspend").status_code == 200
        await seen.wait_json(TOPICS.state(ref), lambda s: s["relink_required"] == "ON", 15)
        bridge = await seen.wait_json(TOPICS.bridge_state, lambda s: s["problem"] == "ON", 15)
    assert "suspended" in bridge["accounts"]["car"]["problem"]
