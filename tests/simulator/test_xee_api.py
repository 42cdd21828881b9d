"""The simulated Xee API v4: shapes of every endpoint, history windows, errors, determinism."""

from __future__ import annotations

import itertools
import re
from typing import Any

import httpx

from tests.simulator.xee_support import Xee
from tests.support import running_sim

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
COMBUSTION = {
    "VehiculeSpeed", "EngineSpeed", "Odometer", "FuelLevel", "ComputedFuelLevel",
    "BatteryVoltage", "LockSts", "IgnitionSts", "FrontLeftDoorSts", "FrontRightDoorSts",
    "RearLeftDoorSts", "RearRightDoorSts", "TrunkSts", "HoodSts",
}  # fmt: skip
ELECTRIC = (COMBUSTION - {"EngineSpeed", "FuelLevel", "ComputedFuelLevel"}) | {
    "EVBatterySOC", "EVRemainingRange", "EVChargerSts", "EVChargingSts",
}  # fmt: skip


def _status(xee: Xee, token: str, vid: str) -> dict[str, Any]:
    r = xee.get(f"/vehicles/{vid}/status", token)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def test_describe_announces_xee(xee: Xee) -> None:
    info = httpx.get(xee.sim.url).json()["xee"]
    assert info["apiUrl"] == f"{xee.sim.url}/xee/v4"
    assert info["authorizeUrl"] == f"{xee.sim.url}/xee/v4/oauth/authorize"
    assert info["tokenUrl"] == f"{xee.sim.url}/xee/v4/oauth/token"
    assert info["clientId"] == "car2mqtt-xee-client"
    assert info["clientSecret"] == "car2mqtt-xee-secret"
    assert info["username"] == "demo@xee.example"
    assert info["password"] == "demo-password"
    assert info["tokenTtlS"] == 3600
    assert info["faults"] == "none"
    assert list(info["users"].values()) == [xee.vehicle_ids()]
    assert len(xee.vehicle_ids()) == 2


def test_user_and_vehicles(xee: Xee) -> None:
    token = xee.login()["access_token"]
    me = xee.get("/users/me", token).json()
    assert set(me) == {"id", "firstName", "lastName", "email", "gender", "createdAt", "updatedAt"}
    assert me["id"] == xee.user_id
    assert ISO.match(me["createdAt"])
    vehicles = xee.get("/users/me/vehicles", token).json()
    assert [v["id"] for v in vehicles] == xee.vehicle_ids()
    assert xee.get(f"/users/{me['id']}/vehicles", token).json() == vehicles
    assert xee.get("/users/someone-else/vehicles", token).status_code == 403
    for v in vehicles:
        assert set(v) == {
            "id", "userId", "name", "brand", "model", "kType", "licensePlate", "device",
            "createdAt", "updatedAt", "firstEntryIntoService",
        }  # fmt: skip
        assert v["userId"] == me["id"]
        assert v["device"]["vehicleId"] == v["id"]
        assert v["device"]["brand"] == "xee"
        assert re.match(r"^[A-Z]{2}-\d{3}-[A-Z]{2}$", v["licensePlate"])
        assert ISO.match(v["firstEntryIntoService"])
        assert xee.get(f"/vehicles/{v['id']}", token).json() == v


def test_vehicle_errors(xee: Xee) -> None:
    token = xee.login()["access_token"]
    r = xee.get("/vehicles/00000000-0000-4000-8000-000000000000/status", token)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"] == "not_found"
    assert xee.admin("POST", "/users", {"email": "b@xee.example", "password": "pw"}).is_success
    other = xee.login("b@xee.example", "pw")["access_token"]
    theirs = xee.get(f"/vehicles/{xee.vehicle_ids()[0]}", other)
    assert theirs.status_code == 403
    assert set(theirs.json()) == {"error", "error_description"}
    assert xee.get("/no/such/path", token).json()["error"] == "not_found"


def test_status_shape_and_signals(xee: Xee) -> None:
    token = xee.login()["access_token"]
    combustion, electric = xee.vehicle_ids()
    status = _status(xee, token, combustion)
    assert set(status) == {
        "vehicleId", "createdAt", "updatedAt", "location", "accelerometer", "signals"
    }  # fmt: skip
    assert status["vehicleId"] == combustion
    loc = status["location"]
    assert set(loc) == {"latitude", "longitude", "altitude", "heading", "nbSat", "hacc", "date"}
    assert set(status["accelerometer"]) == {"x", "y", "z", "date"}
    signals = {s["name"]: s for s in status["signals"]}
    assert set(signals) == COMBUSTION
    assert all(ISO.match(s["date"]) for s in signals.values())
    assert all(isinstance(s["value"], int | float) for s in signals.values())
    assert signals["LockSts"]["value"] == 1
    assert signals["IgnitionSts"]["value"] == 0
    assert signals["EngineSpeed"]["value"] == 0
    assert 12.0 <= signals["BatteryVoltage"]["value"] <= 12.6
    assert 0 < signals["FuelLevel"]["value"] <= 50
    assert len({s["date"] for s in signals.values()}) > 3  # each signal has its own date
    ev = {s["name"]: s["value"] for s in _status(xee, token, electric)["signals"]}
    assert set(ev) == ELECTRIC
    assert 0 < ev["EVBatterySOC"] <= 100
    assert ev["EVRemainingRange"] > 0


def test_signal_order_changes_but_dates_stay_when_parked(xee: Xee) -> None:
    vid = xee.vehicle_ids()[0]
    orders, snapshots = [], []
    for _ in range(5):
        status = _status(xee, xee.login()["access_token"], vid)
        orders.append([s["name"] for s in status["signals"]])
        snapshots.append({s["name"]: (s["value"], s["date"]) for s in status["signals"]})
        xee.sim.advance(3600)
    assert all(a != b for a, b in itertools.pairwise(orders))
    # Parked with the ignition off, nothing is reported.
    assert all(s == snapshots[0] for s in snapshots)


def test_history_endpoints(xee: Xee) -> None:
    token = xee.login()["access_token"]
    vid = xee.vehicle_ids()[0]
    before = _status(xee, token, vid)
    start = before["updatedAt"]
    odometer = next(s["value"] for s in before["signals"] if s["name"] == "Odometer")
    assert xee.admin("POST", f"/vehicles/{vid}/drive", {"speedKmh": 60, "distanceKm": 5}).is_success
    xee.sim.advance(600)
    now = _status(xee, token, vid)["updatedAt"]
    signals = xee.get(
        f"/vehicles/{vid}/signals", token, **{"from": start, "to": now, "signals": "Odometer"}
    ).json()
    assert len(signals) >= 10
    assert {s["name"] for s in signals} == {"Odometer"}
    odometers = [s["value"] for s in signals]
    assert odometers == sorted(odometers)
    assert abs(odometers[-1] - odometer - 5) < 0.11
    limited = xee.get(f"/vehicles/{vid}/signals", token, **{"from": start, "limit": 3}).json()
    assert len(limited) == 3
    locations = xee.get(f"/vehicles/{vid}/locations", token, **{"from": start}).json()
    assert len(locations) >= 10
    assert set(locations[0]) == {
        "latitude", "longitude", "altitude", "heading", "nbSat", "hacc", "date"
    }  # fmt: skip
    trips = xee.get(f"/vehicles/{vid}/trips", token, **{"from": start, "to": now}).json()
    assert len(trips) == 1
    trip = trips[0]
    assert trip["vehicleId"] == vid
    assert abs(trip["stats"]["distance"] - 5) < 0.01
    ended = trip["endLocation"]["date"]
    assert trip["startLocation"]["date"] < ended <= now
    # Inclusive: a window touching only the trip's end still finds it.
    edge = xee.get(f"/vehicles/{vid}/trips", token, **{"from": ended, "to": now})
    assert len(edge.json()) == 1
    before = xee.get(f"/vehicles/{vid}/trips", token, **{"from": start, "to": start}).json()
    assert before == []


def test_history_errors(xee: Xee) -> None:
    token = xee.login()["access_token"]
    combustion, electric = xee.vehicle_ids()
    r = xee.get(f"/vehicles/{combustion}/signals", token, signals="Odometer,EVBatterySOC")
    assert r.status_code == 400
    assert r.json() == {
        "error": "signals_unexistant",
        "error_description": "Signals does not exist",
    }
    assert xee.get(f"/vehicles/{electric}/signals", token, signals="EVBatterySOC").is_success
    bad = [
        {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        {"from": "2025-11-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        {"from": "yesterday"},
        {"to": "9999-12-31T23:59:59-14:00"},
        {"limit": "-1"},
        {"limit": "many"},
    ]
    for params in bad:
        for path in ("signals", "locations", "trips"):
            r = xee.get(f"/vehicles/{combustion}/{path}", token, **params)
            if path == "trips" and "limit" in params:
                continue
            assert r.status_code == 400, (path, params)
            assert r.json()["error"] == "invalid_request"


def test_api_calls_are_counted(xee: Xee) -> None:
    token = xee.login()["access_token"]
    xee.get("/users/me", token)
    xee.get("/users/me/vehicles", token)
    overview = httpx.get(xee.sim.admin).json()
    assert overview["apiCalls"]["xee"] == 3
    assert overview["apiCalls"]["enode"] == 0
    assert overview["xeeUsers"] == {xee.user_id: xee.vehicle_ids()}


def _script(seed: int) -> list[Any]:
    with running_sim(seed=seed) as sim:
        xee = Xee(sim)
        pair = xee.login()
        token = pair["access_token"]
        out: list[Any] = [sim.info["xee"]["users"], pair]
        for vid in xee.vehicle_ids():
            xee.admin("POST", f"/vehicles/{vid}/drive", {"speedKmh": 50})
            out.append(xee.get(f"/vehicles/{vid}", token).content)
        sim.advance(900)
        for vid in xee.vehicle_ids():
            out.append(xee.get(f"/vehicles/{vid}/status", token).content)
            out.append(xee.get(f"/vehicles/{vid}/locations", token).content)
        out.append(xee.refresh(pair["refresh_token"]).content)
        enode = httpx.get(sim.url).json()["users"]
        out.append(enode)
        xee.close()
        return out


def test_same_seed_same_bytes() -> None:
    a, b = _script(3), _script(3)
    assert a == b
    assert _script(4)[0] != a[0]


def test_xee_leaves_enode_ids_alone() -> None:
    with running_sim(seed=5) as with_xee, running_sim(seed=5, xee_vehicles=0) as without:
        assert with_xee.info["users"] == without.info["users"]
        car = with_xee.vehicle_ids()[0]
        assert with_xee.live(car)["latitude"] == without.live(car)["latitude"]
