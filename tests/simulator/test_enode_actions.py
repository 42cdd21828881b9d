"""Charging actions: PENDING to CONFIRMED, FAILED or CANCELLED, under the spec's rules."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.support import EnodeClient, Sim


@pytest.fixture
def tesla(sim: Sim) -> str:
    """The first demo car (a Tesla), plugged in but not charging, as the API sees it."""
    vid = sim.vehicle_ids()[0]
    r = sim.admin_call("POST", f"/enode/vehicles/{vid}/plug-in", {"startCharging": False})
    assert r.status_code == 200, r.text
    cached = sim.refresh(vid)
    assert cached["chargeState"]["powerDeliveryState"] == "PLUGGED_IN:STOPPED"
    return vid


def action(enode: EnodeClient, action_id: str) -> dict[str, Any]:
    r = enode.get(f"/vehicles/actions/{action_id}")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def test_start_goes_pending_then_confirmed(sim: Sim, enode: EnodeClient, tesla: str) -> None:
    r = enode.post(f"/vehicles/{tesla}/charging", {"action": "START"})
    assert r.status_code == 200
    created = r.json()
    assert created["state"] == "PENDING"
    assert created["kind"] == "START"
    assert created["targetId"] == tesla
    assert created["targetType"] == "vehicle"
    assert created["completedAt"] is None
    assert created["failureReason"] is None

    sim.advance(10)  # the vendor has not acted yet
    assert action(enode, created["id"])["state"] == "PENDING"
    sim.advance(120)  # command executed, charger settled, Enode saw it in device data
    done = action(enode, created["id"])
    assert done["state"] == "CONFIRMED"
    assert done["completedAt"] is not None
    assert done["updatedAt"] == done["completedAt"]
    vehicle = enode.get(f"/vehicles/{tesla}").json()
    assert vehicle["chargeState"]["isCharging"] is True
    assert vehicle["chargeState"]["powerDeliveryState"] == "PLUGGED_IN:CHARGING"

    r = enode.post(f"/vehicles/{tesla}/charging", {"action": "STOP"})
    stop = r.json()
    sim.advance(130)
    assert action(enode, stop["id"])["state"] == "CONFIRMED"
    charge = enode.get(f"/vehicles/{tesla}").json()["chargeState"]
    assert charge["powerDeliveryState"] == "PLUGGED_IN:STOPPED"
    assert charge["chargeRate"] is None
    assert charge["chargeTimeRemaining"] is None


def test_identical_pending_action_is_reused(enode: EnodeClient, tesla: str) -> None:
    first = enode.post(f"/vehicles/{tesla}/charging", {"action": "START"}).json()
    again = enode.post(f"/vehicles/{tesla}/charging", {"action": "START"}).json()
    assert again["id"] == first["id"]
    assert again["state"] == "PENDING"


def test_opposite_action_cancels_the_pending_one(sim: Sim, enode: EnodeClient, tesla: str) -> None:
    start = enode.post(f"/vehicles/{tesla}/charging", {"action": "START"}).json()
    stop = enode.post(f"/vehicles/{tesla}/charging", {"action": "STOP"}).json()
    assert stop["id"] != start["id"]
    assert stop["kind"] == "STOP"
    cancelled = action(enode, start["id"])
    assert cancelled["state"] == "CANCELLED"
    assert cancelled["failureReason"]["type"] == "CONFLICT"
    assert cancelled["completedAt"] is not None
    sim.advance(130)
    assert action(enode, stop["id"])["state"] == "CONFIRMED"
    assert action(enode, start["id"])["state"] == "CANCELLED"  # resolved actions never move


def test_cancel_then_conflict(enode: EnodeClient, tesla: str) -> None:
    start = enode.post(f"/vehicles/{tesla}/charging", {"action": "START"}).json()
    r = enode.post(f"/vehicles/actions/{start['id']}/cancel")
    assert r.status_code == 200
    assert r.json()["state"] == "CANCELLED"
    assert r.json()["failureReason"]["type"] == "REQUESTED_CANCELLATION"
    r = enode.post(f"/vehicles/actions/{start['id']}/cancel")
    assert r.status_code == 409
    assert r.json()["id"] == start["id"]  # 409 answers with the resolved action itself
    assert r.json()["state"] == "CANCELLED"


def test_unknown_action_is_404(enode: EnodeClient) -> None:
    missing = str(uuid.uuid4())
    assert enode.get(f"/vehicles/actions/{missing}").status_code == 404
    assert enode.post(f"/vehicles/actions/{missing}/cancel").status_code == 404
    r = enode.post("/vehicles/nope/charging", {"action": "START"})
    assert r.status_code == 404


def test_start_refused_when_unplugged(sim: Sim, enode: EnodeClient) -> None:
    vid = sim.vehicle_ids()[0]  # parked, unplugged
    r = enode.post(f"/vehicles/{vid}/charging", {"action": "START"})
    assert r.status_code == 400
    assert "not plugged in" in r.json()["detail"]


def test_start_refused_when_already_charging(sim: Sim, enode: EnodeClient) -> None:
    vw = sim.vehicle_ids()[1]  # plugged in and charging from the start
    r = enode.post(f"/vehicles/{vw}/charging", {"action": "START"})
    assert r.status_code == 400
    assert "already charging" in r.json()["detail"]


def test_stop_refused_when_not_charging(enode: EnodeClient, tesla: str) -> None:
    r = enode.post(f"/vehicles/{tesla}/charging", {"action": "STOP"})
    assert r.status_code == 400
    assert "not charging" in r.json()["detail"]


def test_start_refused_when_full(sim: Sim, enode: EnodeClient, tesla: str) -> None:
    assert sim.admin_call("PUT", f"/enode/vehicles/{tesla}/battery", {"level": 100}).is_success
    assert sim.refresh(tesla)["chargeState"]["isFullyCharged"] is True
    r = enode.post(f"/vehicles/{tesla}/charging", {"action": "START"})
    assert r.status_code == 400
    assert "fully charged" in r.json()["detail"]


def test_smart_charging_gets_422(sim: Sim, enode: EnodeClient, tesla: str) -> None:
    r = sim.admin_call("PUT", f"/enode/vehicles/{tesla}/smart-charging", {"enabled": True})
    assert r.status_code == 200
    assert sim.refresh(tesla)["smartChargingPolicy"]["isEnabled"] is True
    r = enode.post(f"/vehicles/{tesla}/charging", {"action": "START"})
    assert r.status_code == 422
    assert "Smart Charging" in r.json()["detail"]


def test_unreachable_vehicle_times_out(sim: Sim, enode: EnodeClient, tesla: str) -> None:
    r = sim.admin_call("PUT", f"/enode/vehicles/{tesla}/reachable", {"reachable": False})
    assert r.status_code == 200
    start = enode.post(f"/vehicles/{tesla}/charging", {"action": "START"}).json()
    sim.advance(14 * 60)
    assert action(enode, start["id"])["state"] == "PENDING"  # Enode keeps trying
    sim.advance(2 * 60)
    failed = action(enode, start["id"])
    assert failed["state"] == "FAILED"
    assert failed["failureReason"]["type"] == "NO_RESPONSE"
    assert sim.live(tesla)["chargeMode"] == "STOPPED"


def test_precondition_lost_before_execution(sim: Sim, enode: EnodeClient, tesla: str) -> None:
    start = enode.post(f"/vehicles/{tesla}/charging", {"action": "START"}).json()
    assert sim.admin_call("POST", f"/enode/vehicles/{tesla}/unplug").is_success
    sim.advance(60)
    cancelled = action(enode, start["id"])
    assert cancelled["state"] == "CANCELLED"
    assert cancelled["failureReason"]["type"] == "FAILED_PRECONDITION"


@pytest.mark.parametrize(
    "body",
    [{"action": "GO"}, {}, {"action": "START", "extra": 1}, ["START"], None],
)
def test_invalid_charging_body(enode: EnodeClient, tesla: str, body: Any) -> None:
    r = enode.request("POST", f"/vehicles/{tesla}/charging", json_body=body)
    assert r.status_code == 400
    problem = r.json()
    assert problem["title"] == "Bad Request"
    assert problem["issues"]


def test_non_json_charging_body(enode: EnodeClient, tesla: str) -> None:
    r = enode.http.post(
        f"/vehicles/{tesla}/charging",
        content=b"{action: START",
        headers={"Authorization": f"Bearer {enode.token()}", "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["detail"]
