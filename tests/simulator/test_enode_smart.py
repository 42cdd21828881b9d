"""Charging controls: max current, the smart charging policy, its plans, status and overrides."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.support import START, EnodeClient, Receiver, Sim

SECRET = "a-webhook-secret-of-reasonable-length"
STATUS_EVENT = "user:vehicle:smart-charging-status-updated"
MARGIN_S = 15 * 60


def epoch(stamp: str) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def now(sim: Sim) -> float:
    """The simulator's clock."""
    return epoch(sim.admin_call("GET", "").json()["now"])


def later(sim: Sim, enode: EnodeClient, seconds: float) -> None:
    """Advance the clock by hours, with a fresh token (they last an hour of simulated time)."""
    sim.advance(seconds)
    enode.token(fresh=True)


def plugged(sim: Sim, vid: str, level: float, *, charging: bool = False) -> dict[str, Any]:
    """Set the battery, plug the car in and return the API's fresh view of it."""
    assert sim.admin_call("PUT", f"/enode/vehicles/{vid}/battery", {"level": level}).is_success
    r = sim.admin_call("POST", f"/enode/vehicles/{vid}/plug-in", {"startCharging": charging})
    assert r.status_code == 200, r.text
    return sim.refresh(vid)


@pytest.fixture
def tesla(sim: Sim) -> str:
    """The first demo car (a Tesla) at 40 %, plugged in, not charging."""
    vid = sim.vehicle_ids()[0]
    assert plugged(sim, vid, 40)["chargeState"]["powerDeliveryState"] == "PLUGGED_IN:STOPPED"
    return vid


def subscribe(enode: EnodeClient, receiver: Receiver, events: list[str]) -> None:
    r = enode.post("/webhooks", {"url": receiver.url, "secret": SECRET, "events": events})
    assert r.status_code == 200, r.text


def spec_valid_events(enode: EnodeClient, receiver: Receiver) -> list[dict[str, Any]]:
    """Every event received, each signed and checked against the spec."""
    for delivery in receiver.deliveries:
        assert delivery.signature_ok(SECRET)
        for event in delivery.events:
            enode.spec.validate_webhook_event(event)
    return receiver.events()


def put_policy(enode: EnodeClient, vid: str, body: Any) -> dict[str, Any]:
    r = enode.request("PUT", f"/vehicles/{vid}/smart-charging-policy", json_body=body)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def status(enode: EnodeClient, vid: str) -> dict[str, Any]:
    r = enode.get(f"/vehicles/{vid}/smart-charging-status")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def get_json(enode: EnodeClient, path: str) -> dict[str, Any]:
    r = enode.get(path)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


# ---- max current ---------------------------------------------------------------------------


def test_max_current_action_is_confirmed_and_shown(
    sim: Sim, enode: EnodeClient, receiver: Receiver, tesla: str
) -> None:
    subscribe(enode, receiver, ["user:vendor-action:updated"])
    assert get_json(enode, f"/vehicles/{tesla}")["capabilities"]["setMaxCurrent"]["isCapable"]
    r = enode.post(f"/vehicles/{tesla}/max-current", {"maxCurrent": 8})
    assert r.status_code == 200
    created = r.json()
    assert created["state"] == "PENDING"
    assert created["targetState"] == {"maxCurrent": 8}
    assert created["targetType"] == "vehicle"
    assert "kind" not in created
    again = enode.post(f"/vehicles/{tesla}/max-current", {"maxCurrent": 8}).json()
    assert again["id"] == created["id"]  # an identical pending action is reused

    sim.advance(60)  # executed within 45 s, seen at the refresh 10 s later
    done = get_json(enode, f"/vehicles/actions/{created['id']}")
    assert done["state"] == "CONFIRMED"
    assert done["targetState"] == {"maxCurrent": 8}
    assert get_json(enode, f"/vehicles/{tesla}")["chargeState"]["maxCurrent"] == 8
    assert sim.live(tesla)["maxCurrent"] == 8

    def confirmed(event: dict[str, Any]) -> bool:
        action = event.get("vendorAction", {})
        return bool(action.get("id") == created["id"] and action["state"] == "CONFIRMED")

    events = receiver.wait_for(confirmed)
    assert events[0]["vendorAction"]["targetState"] == {"maxCurrent": 8}
    trail = [
        e["vendorAction"]["state"]
        for e in spec_valid_events(enode, receiver)
        if e["event"] == "user:vendor-action:updated"
    ]
    assert trail == ["PENDING", "CONFIRMED"]


def test_a_new_max_current_cancels_the_pending_one(
    sim: Sim, enode: EnodeClient, tesla: str
) -> None:
    first = enode.post(f"/vehicles/{tesla}/max-current", {"maxCurrent": 8}).json()
    second = enode.post(f"/vehicles/{tesla}/max-current", {"maxCurrent": 10}).json()
    assert second["id"] != first["id"]
    cancelled = get_json(enode, f"/vehicles/actions/{first['id']}")
    assert cancelled["state"] == "CANCELLED"
    assert cancelled["failureReason"]["type"] == "CONFLICT"
    sim.advance(60)
    assert get_json(enode, f"/vehicles/actions/{second['id']}")["state"] == "CONFIRMED"
    assert get_json(enode, f"/vehicles/{tesla}")["chargeState"]["maxCurrent"] == 10


def test_lower_max_current_charges_slower(sim: Sim, enode: EnodeClient, tesla: str) -> None:
    def charge_half_an_hour() -> tuple[dict[str, Any], float]:
        """Charge from 30 %: the cached charge state at the start, and the points gained."""
        assert sim.admin_call("PUT", f"/enode/vehicles/{tesla}/battery", {"level": 30}).is_success
        state = sim.refresh(tesla)["chargeState"]
        sim.advance(30 * 60)
        return state, sim.live(tesla)["batteryLevel"] - 30

    assert enode.post(f"/vehicles/{tesla}/charging", {"action": "START"}).status_code == 200
    sim.advance(130)
    fast, gained_fast = charge_half_an_hour()
    action = enode.post(f"/vehicles/{tesla}/max-current", {"maxCurrent": 8}).json()
    sim.advance(60)
    assert get_json(enode, f"/vehicles/actions/{action['id']}")["state"] == "CONFIRMED"
    slow, gained_slow = charge_half_an_hour()

    assert (fast["maxCurrent"], slow["maxCurrent"]) == (16, 8)
    assert fast["chargeRate"] == 11.0
    assert slow["chargeRate"] == 5.5  # power follows current: 11 kW x 8 A / 16 A
    ratio = slow["chargeTimeRemaining"] / fast["chargeTimeRemaining"]
    assert ratio == pytest.approx(2, rel=0.02)
    assert 0 < gained_slow < gained_fast
    assert gained_slow == pytest.approx(gained_fast / 2, rel=0.02)


def test_max_current_refused(sim: Sim, enode: EnodeClient, tesla: str) -> None:
    vw = sim.vehicle_ids()[1]  # only Teslas can set their max current
    assert not get_json(enode, f"/vehicles/{vw}")["capabilities"]["setMaxCurrent"]["isCapable"]
    r = enode.post(f"/vehicles/{vw}/max-current", {"maxCurrent": 8})
    assert r.status_code == 400
    assert "setMaxCurrent" in r.json()["detail"]
    r = enode.post(f"/vehicles/{tesla}/max-current", {"maxCurrent": 32})
    assert r.status_code == 400
    assert "at most 16 A" in r.json()["detail"]
    assert enode.post("/vehicles/nope/max-current", {"maxCurrent": 8}).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"maxCurrent": 0},
        {"maxCurrent": -6},
        {"maxCurrent": "8"},
        {"maxCurrent": True},
        {"maxCurrent": 8, "phases": 3},
        {},
        None,
    ],
)
def test_invalid_max_current_body(enode: EnodeClient, tesla: str, body: Any) -> None:
    r = enode.request("POST", f"/vehicles/{tesla}/max-current", json_body=body)
    assert r.status_code == 400
    assert r.json()["issues"]


# ---- the policy ----------------------------------------------------------------------------


def test_policy_put_and_get(sim: Sim, enode: EnodeClient, receiver: Receiver, tesla: str) -> None:
    subscribe(enode, receiver, ["user:vehicle:updated"])
    default = get_json(enode, f"/vehicles/{tesla}/smart-charging-policy")
    assert default == {"isEnabled": False, "deadline": None, "minimumChargeLimit": 0}
    policy = put_policy(
        enode, tesla, {"isEnabled": True, "deadline": "12:00", "minimumChargeLimit": 20}
    )
    assert policy == {"isEnabled": True, "deadline": "12:00", "minimumChargeLimit": 20}
    assert get_json(enode, f"/vehicles/{tesla}/smart-charging-policy") == policy
    # Enode's own setting: the vehicle shows it at once, with no refresh in between.
    assert get_json(enode, f"/vehicles/{tesla}")["smartChargingPolicy"] == policy
    updated = receiver.wait_for(lambda e: e["event"] == "user:vehicle:updated")
    assert sorted(updated[0]["updatedFields"]) == [
        "smartChargingPolicy.deadline",
        "smartChargingPolicy.isEnabled",
        "smartChargingPolicy.minimumChargeLimit",
    ]
    partial = put_policy(enode, tesla, {"deadline": "06:30"})
    assert partial == {"isEnabled": True, "deadline": "06:30", "minimumChargeLimit": 20}
    off = put_policy(enode, tesla, {"isEnabled": False})
    assert off == {"isEnabled": False, "deadline": "06:30", "minimumChargeLimit": 20}
    assert sim.live(tesla)["smartChargingPolicy"] == off
    spec_valid_events(enode, receiver)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"isEnabled": True}, "deadline"),
        ({"minimumChargeLimit": -1}, "minimumChargeLimit"),
        ({"minimumChargeLimit": 101}, "minimumChargeLimit"),
        ({"deadline": "7:00"}, "deadline"),
        ({"deadline": "24:01"}, "deadline"),
        ({"deadline": "07:60"}, "deadline"),
        ({"deadline": "０７:００"}, "deadline"),
        ({"deadline": None}, "deadline"),
        ({"isEnabled": "yes"}, "isEnabled"),
        ([True], "body"),
    ],
)
def test_policy_refused(enode: EnodeClient, tesla: str, body: Any, needle: str) -> None:
    r = enode.request("PUT", f"/vehicles/{tesla}/smart-charging-policy", json_body=body)
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")
    assert needle in r.text
    assert get_json(enode, f"/vehicles/{tesla}/smart-charging-policy")["isEnabled"] is False


def test_minimum_above_the_charge_limit_is_refused(enode: EnodeClient, tesla: str) -> None:
    limit = get_json(enode, f"/vehicles/{tesla}")["chargeState"]["chargeLimit"]
    assert put_policy(enode, tesla, {"minimumChargeLimit": limit})["minimumChargeLimit"] == limit
    r = enode.request(
        "PUT",
        f"/vehicles/{tesla}/smart-charging-policy",
        json_body={"minimumChargeLimit": limit + 1},
    )
    assert r.status_code == 400
    assert "charge limit" in r.json()["detail"]


def test_policy_refused_when_not_capable(sim: Sim, enode: EnodeClient) -> None:
    r = sim.admin_call("POST", "/enode/vehicles", {"userId": "demo", "vendor": "KIA"})
    kia = r.json()["id"]
    assert not get_json(enode, f"/vehicles/{kia}")["capabilities"]["smartCharging"]["isCapable"]
    body = {"isEnabled": True, "deadline": "07:00"}
    r = enode.request("PUT", f"/vehicles/{kia}/smart-charging-policy", json_body=body)
    assert r.status_code == 400
    assert "smartCharging" in r.json()["detail"]
    r = sim.admin_call("PUT", f"/enode/vehicles/{kia}/smart-charging", {"enabled": True})
    assert r.status_code == 400


def test_admin_hook_sets_the_policy(sim: Sim, enode: EnodeClient, tesla: str) -> None:
    r = sim.admin_call("PUT", f"/enode/vehicles/{tesla}/smart-charging", {"enabled": True})
    assert r.status_code == 200
    assert r.json()["smartChargingPolicy"] == {
        "isEnabled": True,
        "deadline": "07:00",
        "minimumChargeLimit": 0,
    }
    assert r.json()["smartChargingState"] == "PLAN:EXECUTING:STOPPED"
    body = {"enabled": True, "deadline": "09:30", "minimumChargeLimit": 30}
    r = sim.admin_call("PUT", f"/enode/vehicles/{tesla}/smart-charging", body)
    assert r.json()["smartChargingPolicy"]["deadline"] == "09:30"
    assert get_json(enode, f"/vehicles/{tesla}/smart-charging-policy")["minimumChargeLimit"] == 30
    r = sim.admin_call(
        "PUT", f"/enode/vehicles/{tesla}/smart-charging", {"enabled": True, "deadline": "9"}
    )
    assert r.status_code == 400
    assert "deadline" in r.json()["error"]


# ---- plans ---------------------------------------------------------------------------------


def test_plan_defers_charging_then_starts_by_itself(
    sim: Sim, enode: EnodeClient, receiver: Receiver
) -> None:
    subscribe(enode, receiver, [STATUS_EVENT])
    vid = sim.vehicle_ids()[0]
    charge_state = plugged(sim, vid, 40, charging=True)["chargeState"]
    assert charge_state["powerDeliveryState"] == "PLUGGED_IN:INITIALIZING"
    assert status(enode, vid)["state"] == "DISABLED"
    put_policy(enode, vid, {"isEnabled": True, "deadline": "12:00"})
    assert sim.live(vid)["chargeMode"] == "STOPPED"  # the plan stopped the car at once
    waiting = status(enode, vid)
    assert waiting["state"] == "PLAN:EXECUTING:STOPPED"
    assert waiting["consideration"]["isPluggedIn"] is True
    plan = waiting["plan"]
    deadline = START + 12 * 3600  # the simulator's clock starts at 00:00 UTC
    start_at = epoch(plan["startAt"])
    assert now(sim) < start_at < deadline
    assert epoch(plan["estimatedFinishAt"]) == pytest.approx(deadline - MARGIN_S, abs=1)
    assert plan["currency"] == "EUR"
    assert plan["nonSmartCost"] > plan["smartCost"] > 0
    assert plan["endedAt"] is None

    later(sim, enode, start_at - now(sim) - 60)
    assert sim.live(vid)["chargeMode"] == "STOPPED"
    assert status(enode, vid)["state"] == "PLAN:EXECUTING:STOPPED"
    sim.advance(120)  # the plan's start fell due on the way
    assert sim.live(vid)["chargeMode"] in ("INITIALIZING", "CHARGING")
    started = status(enode, vid)
    assert started["state"] == "PLAN:EXECUTING:STARTED"
    assert epoch(started["stateChangedAt"]) == pytest.approx(start_at, abs=1)
    assert started["plan"]["id"] == plan["id"]

    later(sim, enode, deadline - now(sim))
    full = status(enode, vid)
    assert full["state"] == "FULLY_CHARGED"
    assert full["plan"] is None
    assert sim.live(vid)["chargeMode"] == "COMPLETE"
    assert epoch(full["stateChangedAt"]) < deadline - MARGIN_S + 3 * 60  # a refresh saw it
    ended = get_json(enode, f"/vehicles/{vid}/smart-charging-plans/latest")
    assert ended["id"] == plan["id"]
    assert ended["finalState"] == "PLAN:ENDED:FINISHED"
    assert ended["startConfirmedAt"] is not None
    assert get_json(enode, f"/vehicles/{vid}/smart-charging-plans/{plan['id']}") == ended

    events = [e for e in spec_valid_events(enode, receiver) if e["event"] == STATUS_EVENT]
    states = [e["smartChargingStatus"]["state"] for e in events]
    assert states[0] == "PLAN:EXECUTING:STOPPED"
    assert "PLAN:EXECUTING:STARTED" in states
    assert states[-1] == "FULLY_CHARGED"
    assert all(e["smartChargingStatus"]["vehicleId"] == vid for e in events)
    assert "state" in events[-1]["updatedFields"]


def test_plan_charges_to_the_minimum_first(sim: Sim, enode: EnodeClient) -> None:
    vid = sim.vehicle_ids()[0]
    plugged(sim, vid, 20)
    put_policy(enode, vid, {"isEnabled": True, "deadline": "24:00", "minimumChargeLimit": 50})
    first = status(enode, vid)
    assert first["state"] == "PLAN:EXECUTING:STARTED"  # below the minimum: charge at once
    assert sim.live(vid)["chargeMode"] == "INITIALIZING"
    reached = epoch(first["plan"]["stopAt"])
    assert epoch(first["plan"]["startAt"]) > reached

    later(sim, enode, reached - now(sim) - 60)
    assert sim.live(vid)["chargeMode"] == "CHARGING"
    assert sim.live(vid)["batteryLevel"] < 50
    sim.advance(120)
    live = sim.live(vid)
    assert live["chargeMode"] == "STOPPED"
    assert live["batteryLevel"] == pytest.approx(50, abs=0.01)
    assert status(enode, vid)["state"] == "PLAN:EXECUTING:STOPPED"
    sim.advance(15 * 60)
    assert sim.live(vid)["batteryLevel"] == pytest.approx(50, abs=0.01)  # waits for the plan


def test_unplugging_ends_the_plan_and_disabling_leaves_the_car_alone(
    sim: Sim, enode: EnodeClient
) -> None:
    vid = sim.vehicle_ids()[0]
    sim.refresh(vid)
    put_policy(enode, vid, {"isEnabled": True, "deadline": "12:00"})
    unplugged = status(enode, vid)
    assert unplugged["state"] == "CONSIDERING"
    assert unplugged["consideration"]["isPluggedIn"] is False
    assert unplugged["plan"] is None

    plugged(sim, vid, 40)
    plan = status(enode, vid)["plan"]
    assert status(enode, vid)["state"] == "PLAN:EXECUTING:STOPPED"
    assert sim.admin_call("POST", f"/enode/vehicles/{vid}/unplug").is_success
    sim.refresh(vid)
    ended = status(enode, vid)
    assert ended["state"] == "PLAN:ENDED:UNPLUGGED"
    assert ended["plan"]["id"] == plan["id"]
    assert ended["plan"]["finalState"] == "PLAN:ENDED:UNPLUGGED"

    plugged(sim, vid, 40, charging=True)
    assert status(enode, vid)["state"] == "PLAN:EXECUTING:STOPPED"  # a new plan
    put_policy(enode, vid, {"minimumChargeLimit": 60})
    assert status(enode, vid)["state"] == "PLAN:EXECUTING:STARTED"
    put_policy(enode, vid, {"isEnabled": False})
    off = status(enode, vid)
    assert off["state"] == "DISABLED"
    assert off["plan"] is None
    assert off["consideration"] is None
    latest = get_json(enode, f"/vehicles/{vid}/smart-charging-plans/latest")
    assert latest["finalState"] == "PLAN:ENDED:DISABLED"
    sim.advance(10 * 60)
    assert sim.live(vid)["chargeMode"] == "CHARGING"  # the car's own charging again
    assert enode.get(f"/vehicles/{vid}/smart-charging-plans/nope").status_code == 404


# ---- overrides -----------------------------------------------------------------------------


def test_override_charges_now_and_delete_hands_back_to_the_plan(
    sim: Sim, enode: EnodeClient, receiver: Receiver, tesla: str
) -> None:
    subscribe(enode, receiver, [STATUS_EVENT, "user:vendor-action:updated"])
    put_policy(enode, tesla, {"isEnabled": True, "deadline": "12:00"})
    assert status(enode, tesla)["state"] == "PLAN:EXECUTING:STOPPED"
    r = enode.post(f"/vehicles/{tesla}/smart-override")
    assert r.status_code == 200
    override = r.json()
    assert override["endedAt"] is None
    assert override["targetType"] == "vehicle"
    assert override["targetId"] == tesla
    assert override["vendor"] == "TESLA"
    action = get_json(enode, f"/vehicles/actions/{override['vendorActionId']}")
    assert action["kind"] == "START"
    overridden = status(enode, tesla)
    assert overridden["state"] == "PLAN:EXECUTING:OVERRIDDEN"
    assert overridden["smartOverride"]["vendorActionId"] == action["id"]
    again = enode.post(f"/vehicles/{tesla}/smart-override").json()
    assert again == override  # the active one

    sim.advance(130)
    assert get_json(enode, f"/vehicles/actions/{action['id']}")["state"] == "CONFIRMED"
    assert sim.live(tesla)["chargeMode"] == "CHARGING"
    assert status(enode, tesla)["state"] == "PLAN:EXECUTING:OVERRIDDEN"

    r = enode.request("DELETE", f"/vehicles/{tesla}/smart-override")
    assert r.status_code == 200
    ended = r.json()
    assert ended["vendorActionId"] == action["id"]
    assert ended["endedAt"] is not None
    back = status(enode, tesla)
    assert back["state"] == "PLAN:EXECUTING:STOPPED"
    assert back["smartOverride"] is None
    assert sim.live(tesla)["chargeMode"] == "STOPPED"
    r = enode.request("DELETE", f"/vehicles/{tesla}/smart-override")
    assert r.status_code == 404

    states = [
        e["smartChargingStatus"]["state"]
        for e in spec_valid_events(enode, receiver)
        if e["event"] == STATUS_EVENT
    ]
    assert states == [
        "PLAN:EXECUTING:STOPPED",
        "PLAN:EXECUTING:OVERRIDDEN",
        "PLAN:EXECUTING:OVERRIDDEN",  # a refresh saw the car charging: plan.startConfirmedAt
        "PLAN:EXECUTING:STOPPED",
    ]


def test_override_ends_when_the_car_is_unplugged(sim: Sim, enode: EnodeClient, tesla: str) -> None:
    put_policy(enode, tesla, {"isEnabled": True, "deadline": "12:00"})
    override = enode.post(f"/vehicles/{tesla}/smart-override").json()
    sim.advance(130)
    assert sim.admin_call("POST", f"/enode/vehicles/{tesla}/unplug").is_success
    sim.refresh(tesla)
    ended = status(enode, tesla)
    assert ended["state"] == "PLAN:ENDED:UNPLUGGED"
    assert ended["smartOverride"] is None
    assert enode.request("DELETE", f"/vehicles/{tesla}/smart-override").status_code == 404
    assert get_json(enode, f"/vehicles/actions/{override['vendorActionId']}")["state"] == (
        "CONFIRMED"
    )


def test_override_needs_smart_charging(sim: Sim, enode: EnodeClient, tesla: str) -> None:
    r = enode.post(f"/vehicles/{tesla}/smart-override")
    assert r.status_code == 400
    assert "no smart feature to override" in r.json()["detail"]
    r = enode.request("DELETE", f"/vehicles/{tesla}/smart-override")
    assert r.status_code == 404
    assert sim.live(tesla)["smartOverride"] is False


# ---- faults --------------------------------------------------------------------------------


def test_new_routes_are_faulted_by_class(sim: Sim, enode: EnodeClient, tesla: str) -> None:
    r = sim.admin_call("PUT", "/faults", {"classes": {"write": {"unavailable": 1.0}}})
    assert r.status_code == 200
    body = {"isEnabled": True, "deadline": "12:00"}
    writes = [
        ("PUT", f"/vehicles/{tesla}/smart-charging-policy", body),
        ("POST", f"/vehicles/{tesla}/max-current", {"maxCurrent": 8}),
        ("POST", f"/vehicles/{tesla}/smart-override", None),
        ("DELETE", f"/vehicles/{tesla}/smart-override", None),
    ]
    for method, path, json_body in writes:
        assert enode.request(method, path, json_body=json_body).status_code == 503
    assert status(enode, tesla)["state"] == "DISABLED"  # reads are another class
    r = sim.admin_call(
        "PUT", "/faults", {"profile": "none", "classes": {"read": {"rateLimit": 1.0}}}
    )
    assert r.status_code == 200
    for path in ("smart-charging-status", "smart-charging-policy", "smart-charging-plans/latest"):
        assert enode.get(f"/vehicles/{tesla}/{path}").status_code == 429
    assert put_policy(enode, tesla, body)["isEnabled"] is True
