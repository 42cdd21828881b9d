"""Virtual cars behave like cars, on Enode's refresh cadence, reproducibly."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.enode_spec import EnodeSpec
from tests.support import EnodeClient, Sim, running_sim


def read(enode: EnodeClient, vid: str) -> dict[str, Any]:
    """GET a vehicle, renewing the token when it expired (time may run fast)."""
    r = enode.get(f"/vehicles/{vid}")
    if r.status_code == 401:
        r = enode.get(f"/vehicles/{vid}", token=enode.token(fresh=True))
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def test_full_charge_cycle_in_seconds_of_real_time(spec: EnodeSpec) -> None:
    # Two simulated hours per real second: a multi-hour charge completes in a few seconds.
    with running_sim(time_factor=7200.0) as sim:
        enode = EnodeClient(sim, spec)
        try:
            vw = sim.vehicle_ids()[1]  # plugged in and charging from the start
            seen: list[dict[str, Any]] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                charge = read(enode, vw)["chargeState"]
                if not seen or charge != seen[-1]:
                    seen.append(charge)
                if charge["powerDeliveryState"] == "PLUGGED_IN:COMPLETE":
                    break
                time.sleep(0.01)
        finally:
            enode.close()
    states = [c["powerDeliveryState"] for c in seen]
    # (INITIALIZING lasts 30 simulated seconds, a few real milliseconds here: the frozen-clock
    # tests check it.)
    assert set(states) <= {"PLUGGED_IN:INITIALIZING", "PLUGGED_IN:CHARGING", "PLUGGED_IN:COMPLETE"}
    assert "PLUGGED_IN:CHARGING" in states
    assert states[-1] == "PLUGGED_IN:COMPLETE"
    levels = [c["batteryLevel"] for c in seen]
    assert levels == sorted(levels), "state of charge never falls while charging"
    final = seen[-1]
    assert final["batteryLevel"] == final["chargeLimit"]
    assert final["isFullyCharged"] is True
    assert final["isCharging"] is False
    assert final["chargeRate"] is None
    assert final["chargeTimeRemaining"] is None
    charging = [c for c in seen if c["powerDeliveryState"] == "PLUGGED_IN:CHARGING"]
    assert all(c["isCharging"] and c["chargeRate"] > 0 for c in charging)
    assert all(c["chargeTimeRemaining"] > 0 for c in charging)
    rates = [c["chargeRate"] for c in charging]
    assert max(rates) <= 11.0  # the Volkswagen's on-board charger
    assert rates[-1] < rates[0], "power tapers near the charge limit"
    remaining = [c["chargeTimeRemaining"] for c in charging]
    assert remaining == sorted(remaining, reverse=True)


def test_driving_uses_energy_and_moves(sim: Sim, enode: EnodeClient) -> None:
    tesla = sim.vehicle_ids()[0]
    before = read(enode, tesla)
    r = sim.admin_call("POST", f"/enode/vehicles/{tesla}/drive", {"speedKmh": 60, "distanceKm": 30})
    assert r.status_code == 200
    assert r.json()["driving"] is True
    sim.advance(10 * 60)
    during = sim.refresh(tesla)
    assert during["odometer"]["distance"] - before["odometer"]["distance"] == 10.0
    assert during["chargeState"]["batteryLevel"] < before["chargeState"]["batteryLevel"]
    assert during["chargeState"]["range"] < before["chargeState"]["range"]
    assert during["location"] != before["location"]
    sim.advance(40 * 60)
    after = sim.refresh(tesla)
    assert after["odometer"]["distance"] - before["odometer"]["distance"] == 30.0
    assert sim.live(tesla)["driving"] is False
    # 30 km at 0.15 kWh/km on a 57.5 kWh pack is 7.8 % of the battery.
    used = before["chargeState"]["batteryLevel"] - after["chargeState"]["batteryLevel"]
    assert 7 <= used <= 9


def test_xpeng_reports_no_odometer_and_no_position_while_driving(
    sim: Sim, enode: EnodeClient
) -> None:
    xpeng = sim.vehicle_ids()[2]  # the demo's third car sets off on a 25 km trip at start
    start = read(enode, xpeng)
    assert start["vendor"] == "XPENG"
    sim.advance(10 * 60)
    driving = sim.refresh(xpeng)
    assert sim.live(xpeng)["driving"] is True
    assert driving["odometer"]["distance"] is None
    assert driving["location"] == start["location"]
    assert driving["chargeState"]["batteryLevel"] < start["chargeState"]["batteryLevel"]
    sim.advance(30 * 60)
    parked = sim.refresh(xpeng)
    assert sim.live(xpeng)["driving"] is False
    assert parked["location"]["latitude"] != start["location"]["latitude"]


def test_cache_refreshes_on_enode_cadence(sim: Sim, enode: EnodeClient) -> None:
    tesla = sim.vehicle_ids()[0]
    level = read(enode, tesla)["chargeState"]["batteryLevel"]
    target = 50 if level != 50 else 60
    r = sim.admin_call("PUT", f"/enode/vehicles/{tesla}/battery", {"level": target})
    assert r.status_code == 200
    assert read(enode, tesla)["chargeState"]["batteryLevel"] == level  # still the cached view
    sim.advance(6 * 60)  # idle cadence is about 7 minutes (±10 %)
    assert read(enode, tesla)["chargeState"]["batteryLevel"] == level
    sim.advance(2 * 60)
    assert read(enode, tesla)["chargeState"]["batteryLevel"] == target


def test_refresh_hint_brings_the_refresh_forward(sim: Sim, enode: EnodeClient) -> None:
    tesla = sim.vehicle_ids()[0]
    level = read(enode, tesla)["chargeState"]["batteryLevel"]
    target = 42 if level != 42 else 43
    assert sim.admin_call("PUT", f"/enode/vehicles/{tesla}/battery", {"level": target}).is_success
    assert enode.post(f"/vehicles/{tesla}/refresh-hint").status_code == 204
    sim.advance(5)
    assert read(enode, tesla)["chargeState"]["batteryLevel"] == level
    sim.advance(10)
    assert read(enode, tesla)["chargeState"]["batteryLevel"] == target


def test_charging_car_refreshes_every_two_minutes(sim: Sim, enode: EnodeClient) -> None:
    vw = sim.vehicle_ids()[1]
    stamps = set()
    for _ in range(10):
        sim.advance(60)
        stamps.add(read(enode, vw)["chargeState"]["lastUpdated"])
    assert 4 <= len(stamps) <= 6  # ten minutes at a ~2 minute cadence


def test_asleep_car_is_unreachable_and_stale(sim: Sim, enode: EnodeClient) -> None:
    tesla = sim.vehicle_ids()[0]
    before = read(enode, tesla)
    assert before["isReachable"] is True
    r = sim.admin_call("PUT", f"/enode/vehicles/{tesla}/reachable", {"reachable": False})
    assert r.status_code == 200
    sim.admin_call("PUT", f"/enode/vehicles/{tesla}/battery", {"level": 12})
    sim.advance(20 * 60)
    asleep = read(enode, tesla)
    assert asleep["isReachable"] is False
    assert asleep["lastSeen"] == before["lastSeen"]
    assert asleep["chargeState"] == before["chargeState"]
    sim.admin_call("PUT", f"/enode/vehicles/{tesla}/reachable", {"reachable": True})
    sim.advance(8 * 60)
    awake = read(enode, tesla)
    assert awake["isReachable"] is True
    assert awake["lastSeen"] > before["lastSeen"]
    assert awake["chargeState"]["batteryLevel"] == 12


def test_parked_car_does_not_change(sim: Sim, enode: EnodeClient) -> None:
    tesla = sim.vehicle_ids()[0]
    before = read(enode, tesla)
    sim.advance(30 * 60)
    after = read(enode, tesla)
    assert after["lastSeen"] > before["lastSeen"]
    for key in ("chargeState", "odometer", "location"):
        assert {k: v for k, v in after[key].items() if k != "lastUpdated"} == {
            k: v for k, v in before[key].items() if k != "lastUpdated"
        }


def _script(sim: Sim, spec: EnodeSpec) -> list[str]:
    """Drive one fixed scenario and return every API answer's body."""
    enode = EnodeClient(sim, spec)
    try:
        bodies = [enode.get("/vehicles").text]
        tesla, vw = sim.vehicle_ids()[:2]
        sim.admin_call("POST", f"/enode/vehicles/{tesla}/plug-in", {"startCharging": False})
        sim.advance(600)
        action = enode.post(f"/vehicles/{tesla}/charging", {"action": "START"})
        bodies.append(action.text)
        bodies.append(enode.post(f"/vehicles/{vw}/charging", {"action": "STOP"}).text)
        sim.advance(1800)
        bodies.append(enode.get(f"/vehicles/actions/{action.json()['id']}").text)
        bodies.append(enode.get("/vehicles").text)
        bodies.append(enode.get("/users").text)
        return bodies
    finally:
        enode.close()


def test_same_seed_same_run(spec: EnodeSpec) -> None:
    with running_sim(seed=7, vehicles=5) as first:
        a = _script(first, spec)
    with running_sim(seed=7, vehicles=5) as second:
        b = _script(second, spec)
    assert a == b
    with running_sim(seed=8, vehicles=5) as other:
        c = _script(other, spec)
    assert c[0] != a[0]


def test_root_describes_the_simulator(sim: Sim) -> None:
    info = httpx.get(sim.url).json()
    assert info["enode"]["apiVersion"] == "2024-10-01"
    assert info["users"] == sim.info["users"]
