"""Xee cars over time and through the admin API: driving, fuel, charge, doors, faults."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.simulator.xee_support import Xee


def _signals(xee: Xee, vid: str) -> dict[str, dict[str, Any]]:
    # A fresh token each time: these tests jump the clock past any token's life.
    r = xee.get(f"/vehicles/{vid}/status", xee.login()["access_token"])
    assert r.status_code == 200, r.text
    return {s["name"]: s for s in r.json()["signals"]}


def _ok(r: httpx.Response) -> dict[str, Any]:
    assert r.is_success, r.text
    data: dict[str, Any] = r.json()
    return data


def test_combustion_car_burns_fuel_and_moves(xee: Xee) -> None:
    token = xee.login()["access_token"]
    vid = xee.vehicle_ids()[0]
    before = xee.get(f"/vehicles/{vid}/status", token).json()
    truth = _ok(xee.admin("PUT", f"/vehicles/{vid}/fuel", {"litres": 30}))
    assert truth["fuelLitres"] == 30
    _ok(xee.admin("POST", f"/vehicles/{vid}/drive", {"speedKmh": 60}))
    xee.sim.advance(1800)
    status = xee.get(f"/vehicles/{vid}/status", xee.login()["access_token"]).json()
    s = {x["name"]: x for x in status["signals"]}
    assert s["IgnitionSts"]["value"] == 1
    assert s["LockSts"]["value"] == 0
    assert s["VehiculeSpeed"]["value"] == 60
    assert 2000 <= s["EngineSpeed"]["value"] <= 3000
    assert s["BatteryVoltage"]["value"] == 14.2
    burnt = 30 - s["FuelLevel"]["value"]
    tank = truth["tankLitres"]
    assert 30 * 0.03 < burnt < 30 * 0.07  # 30 km at 3 to 7 L/100 km
    assert abs(s["ComputedFuelLevel"]["value"] - s["FuelLevel"]["value"]) <= 0.5
    assert s["FuelLevel"]["value"] < tank
    assert status["location"] != before["location"]
    assert status["location"]["date"] == status["updatedAt"]
    # While driving, the dongle keeps reporting: dates move on.
    xee.sim.advance(120)
    later = _signals(xee, vid)
    assert later["VehiculeSpeed"]["date"] > s["VehiculeSpeed"]["date"]
    assert later["Odometer"]["value"] > s["Odometer"]["value"]
    _ok(xee.admin("POST", f"/vehicles/{vid}/park"))
    parked = _signals(xee, vid)
    assert parked["IgnitionSts"]["value"] == 0
    assert parked["LockSts"]["value"] == 1
    assert parked["EngineSpeed"]["value"] == 0
    assert parked["BatteryVoltage"]["value"] == 12.6
    xee.sim.advance(3600)
    assert _signals(xee, vid) == parked


def test_trip_ends_on_its_own_and_tank_runs_dry(xee: Xee) -> None:
    vid = xee.vehicle_ids()[0]
    _ok(xee.admin("PUT", f"/vehicles/{vid}/fuel", {"litres": 1}))
    _ok(xee.admin("POST", f"/vehicles/{vid}/drive", {"speedKmh": 100}))
    started = _signals(xee, vid)["IgnitionSts"]
    assert started["value"] == 1
    xee.sim.advance(6 * 3600)
    s = _signals(xee, vid)
    assert s["FuelLevel"]["value"] == 0
    assert s["IgnitionSts"]["value"] == 0
    assert _ok(xee.admin("GET", f"/vehicles/{vid}"))["driving"] is False
    # 1 L lasts 17 to 25 km: at 100 km/h the car stopped 10 to 15 minutes after it set off.
    stopped = datetime.fromisoformat(s["IgnitionSts"]["date"])
    minutes = (stopped - datetime.fromisoformat(started["date"])).total_seconds() / 60
    assert 10 < minutes < 15
    empty = xee.admin("POST", f"/vehicles/{vid}/drive", {})
    assert empty.status_code == 409
    assert "empty" in empty.json()["error"]


def test_battery_voltage_sags_when_parked(xee: Xee) -> None:
    vid = xee.vehicle_ids()[0]
    _ok(xee.admin("POST", f"/vehicles/{vid}/drive", {"distanceKm": 1}))
    xee.sim.advance(600)
    parked = _signals(xee, vid)["BatteryVoltage"]
    assert parked["value"] == 12.6
    xee.sim.advance(5 * 86_400)
    sagged = _signals(xee, vid)["BatteryVoltage"]
    assert sagged["value"] == 12.4
    # Reported when it crossed the step, two days after the next, not when someone looked.
    sag = datetime.fromisoformat(sagged["date"]) - datetime.fromisoformat(parked["date"])
    assert sag.total_seconds() == 4 * 86_400


def test_electric_car_loses_charge_driving_and_charges_plugged(xee: Xee) -> None:
    vid = xee.vehicle_ids()[1]
    _ok(xee.admin("PUT", f"/vehicles/{vid}/battery", {"level": 60}))
    _ok(xee.admin("POST", f"/vehicles/{vid}/drive", {"speedKmh": 50, "distanceKm": 25}))
    xee.sim.advance(3600)
    s = _signals(xee, vid)
    assert s["IgnitionSts"]["value"] == 0  # the 25 km trip is over
    assert 60 - 10 < s["EVBatterySOC"]["value"] < 60 - 5
    assert s["EVRemainingRange"]["value"] > 0
    truth = _ok(xee.admin("POST", f"/vehicles/{vid}/plug", {}))
    assert truth["pluggedIn"] is True
    xee.sim.advance(3600)
    s = _signals(xee, vid)
    assert s["EVChargerSts"]["value"] == 1
    assert s["EVChargingSts"]["value"] == 1
    assert s["EVBatterySOC"]["value"] > 60
    assert s["BatteryVoltage"]["value"] == 13.8
    _ok(xee.admin("POST", f"/vehicles/{vid}/unplug"))
    s = _signals(xee, vid)
    assert s["EVChargerSts"]["value"] == 0
    assert s["EVChargingSts"]["value"] == 0


def test_doors_and_lock(xee: Xee) -> None:
    vid = xee.vehicle_ids()[0]
    before = _signals(xee, vid)
    xee.sim.advance(60)
    truth = _ok(xee.admin("PUT", f"/vehicles/{vid}/doors", {"door": "TrunkSts", "open": True}))
    assert truth["doors"]["TrunkSts"] is True
    s = _signals(xee, vid)
    assert s["TrunkSts"]["value"] == 1
    assert s["LockSts"]["value"] == 0
    assert s["TrunkSts"]["date"] > before["TrunkSts"]["date"]
    assert s["FrontLeftDoorSts"] == before["FrontLeftDoorSts"]
    _ok(xee.admin("PUT", f"/vehicles/{vid}/doors", {"door": "TrunkSts", "open": False}))
    assert _signals(xee, vid)["LockSts"]["value"] == 1


def test_location_admin(xee: Xee) -> None:
    token = xee.login()["access_token"]
    vid = xee.vehicle_ids()[0]
    _ok(xee.admin("PUT", f"/vehicles/{vid}/location", {"latitude": 48.85, "longitude": 2.35}))
    loc = xee.get(f"/vehicles/{vid}/status", token).json()["location"]
    assert (loc["latitude"], loc["longitude"]) == (48.85, 2.35)


def test_repair_gives_a_new_vehicle_id(xee: Xee) -> None:
    token = xee.login()["access_token"]
    old_id = xee.vehicle_ids()[0]
    old = xee.get(f"/vehicles/{old_id}", token).json()
    new = _ok(xee.admin("POST", f"/vehicles/{old_id}/repair"))
    assert new["id"] != old_id
    for key in ("name", "licensePlate", "brand", "model", "kType", "userId"):
        assert new[key] == old[key]
    assert new["device"]["id"] == old["device"]["id"]
    assert new["device"]["vehicleId"] == new["id"]
    assert xee.get(f"/vehicles/{old_id}", token).status_code == 404
    assert xee.get(f"/vehicles/{old_id}/status", token).json()["error"] == "not_found"
    assert xee.get(f"/vehicles/{new['id']}/status", token).json()["vehicleId"] == new["id"]
    listed = [v["id"] for v in xee.get("/users/me/vehicles", token).json()]
    assert new["id"] in listed
    assert old_id not in listed
    assert xee.admin("GET", f"/vehicles/{old_id}").status_code == 404


def test_admin_adds_and_removes_vehicles(xee: Xee) -> None:
    token = xee.login()["access_token"]
    r = xee.admin("POST", "/vehicles", {"kind": "electric", "name": "Zozo"})
    assert r.status_code == 201
    vehicle = r.json()
    assert vehicle["name"] == "Zozo"
    assert vehicle["userId"] == xee.user_id
    names = {
        s["name"] for s in xee.get(f"/vehicles/{vehicle['id']}/status", token).json()["signals"]
    }
    assert "EVBatterySOC" in names
    assert xee.admin("DELETE", f"/vehicles/{vehicle['id']}").status_code == 204
    assert xee.get(f"/vehicles/{vehicle['id']}", token).status_code == 404
    other = _ok(xee.admin("POST", "/users", {"email": "c@xee.example", "password": "pw"}))
    theirs = xee.admin("POST", "/vehicles", {"userId": other["id"]})
    assert theirs.status_code == 201
    assert xee.get(f"/vehicles/{theirs.json()['id']}", token).status_code == 403


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/vehicles", {"kind": "steam"}, 400),
        ("POST", "/vehicles", {"userId": "nobody"}, 404),
        ("POST", "/vehicles", {"unknown": 1}, 400),
        ("PUT", "/vehicles/{c}/fuel", {"litres": -1}, 400),
        ("PUT", "/vehicles/{c}/fuel", {"litres": 999}, 400),
        ("PUT", "/vehicles/{c}/fuel", "not json", 400),
        ("PUT", "/vehicles/{e}/fuel", {"litres": 10}, 400),
        ("PUT", "/vehicles/{c}/battery", {"level": 50}, 400),
        ("POST", "/vehicles/{c}/plug", {}, 400),
        ("PUT", "/vehicles/{c}/doors", {"door": "Sunroof", "open": True}, 400),
        ("POST", "/vehicles/{c}/drive", {"speedKmh": -3}, 400),
        ("POST", "/vehicles/nope/park", {}, 404),
        ("POST", "/users/nope/suspend", None, 404),
        ("PUT", "/faults", {"classes": {"bogus": {}}}, 400),
        ("PUT", "/faults", {"profile": "doom"}, 400),
    ],
)
def test_bad_admin_input(xee: Xee, method: str, path: str, body: Any, status: int) -> None:
    combustion, electric = xee.vehicle_ids()
    url = f"{xee.sim.admin}/xee{path.format(c=combustion, e=electric)}"
    if isinstance(body, str):
        r = xee.http.request(method, url, content=body)
    else:
        r = xee.http.request(method, url, json=body)
    assert r.status_code == status, r.text
    assert isinstance(r.json()["error"], str)


def test_plugging_a_driving_ev_conflicts(xee: Xee) -> None:
    vid = xee.vehicle_ids()[1]
    _ok(xee.admin("POST", f"/vehicles/{vid}/drive", {}))
    r = xee.admin("POST", f"/vehicles/{vid}/plug", {})
    assert r.status_code == 409


# ---- faults ----------------------------------------------------------------------------------


def test_rate_limit_with_retry_after(xee: Xee) -> None:
    token = xee.login()["access_token"]
    r = xee.admin("PUT", "/faults", {"classes": {"read": {"rateLimit": 1.0, "retryAfter": 9}}})
    assert r.json()["profile"] == "custom"
    assert _ok(xee.admin("GET", "/faults"))["classes"]["read"]["rateLimit"] == 1.0
    limited = xee.get("/users/me", token)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "9"
    assert limited.headers["content-type"] == "application/json"
    assert limited.json()["error"] == "too_many_requests"
    assert xee.refresh(xee.login()["refresh_token"]).status_code == 200  # auth is its own class
    # Enode is unaffected.
    assert httpx.get(f"{xee.sim.admin}/faults").json()["profile"] == "none"
    _ok(xee.admin("PUT", "/faults", {"profile": "none"}))
    assert xee.get("/users/me", token).status_code == 200


def test_unavailable_token_endpoint(xee: Xee) -> None:
    _ok(xee.admin("PUT", "/faults", {"classes": {"auth": {"unavailable": 1.0}}}))
    r = xee.token_call(grant_type="password", username=xee.username, password=xee.password)
    assert r.status_code == 503
    assert set(r.json()) == {"error", "error_description"}
    assert xee.authorize(client_id="x").status_code == 400  # the consent page is never faulted


def test_slow_reads(xee: Xee) -> None:
    token = xee.login()["access_token"]
    _ok(xee.admin("PUT", "/faults", {"classes": {"read": {"slow": 1.0, "slowSeconds": 1.0}}}))
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{xee.api}/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=0.3)
