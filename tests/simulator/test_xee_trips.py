"""Simulated Xee trips over HTTP: a day of drives, the Android SDK's trip shape, detail routes."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import httpx
import pytest

from car2mqtt.clock import isoformat
from tests.simulator.xee_support import Xee
from tests.support import START, running_sim

TRIP_KEYS = {"id", "vehicleId", "startLocation", "endLocation", "stats", "createdAt", "updatedAt"}
PLACE_KEYS = {"latitude", "longitude", "altitude", "heading", "date"}
FIX_KEYS = {"latitude", "longitude", "altitude", "heading", "nbSat", "hacc", "date"}


def _ok(r: httpx.Response) -> Any:
    assert r.is_success, r.text
    return r.json()


def _odometer(xee: Xee, vid: str) -> float:
    odometer: float = _ok(xee.admin("GET", f"/vehicles/{vid}"))["odometerKm"]
    return odometer


def _at(seconds: float) -> str:
    return isoformat(START + seconds)


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def _drive(xee: Xee, vid: str, speed: float, km: float | None = None) -> None:
    body: dict[str, Any] = {"speedKmh": speed}
    if km is not None:
        body["distanceKm"] = km
    _ok(xee.admin("POST", f"/vehicles/{vid}/drive", body))


def _day(xee: Xee, vid: str) -> list[tuple[float, float, float, float]]:
    """Drive three trips; return each one's (start s, end s, start km, end km) from the truth."""
    out: list[tuple[float, float, float, float]] = []
    # 08:00, 5 km at 60 km/h: ends on its own after 300 s.
    xee.sim.advance(8 * 3600)
    before = _odometer(xee, vid)
    _drive(xee, vid, 60, 5)
    xee.sim.advance(1800)
    out.append((8 * 3600, 8 * 3600 + 300, before, _odometer(xee, vid)))
    # 12:30, 3 km at 36 km/h: 300 s.
    xee.sim.advance(12.5 * 3600 - 8.5 * 3600)
    before = _odometer(xee, vid)
    _drive(xee, vid, 36, 3)
    xee.sim.advance(3600)
    out.append((12.5 * 3600, 12.5 * 3600 + 300, before, _odometer(xee, vid)))
    # 18:00, at 90 km/h with no set distance, parked by hand after 20 minutes (30 km).
    xee.sim.advance(18 * 3600 - 13.5 * 3600)
    before = _odometer(xee, vid)
    _drive(xee, vid, 90)
    xee.sim.advance(1200)
    _ok(xee.admin("POST", f"/vehicles/{vid}/park"))
    out.append((18 * 3600, 18 * 3600 + 1200, before, _odometer(xee, vid)))
    xee.sim.advance(3600)
    return out


@pytest.fixture
def day(xee: Xee) -> tuple[str, list[tuple[float, float, float, float]]]:
    """The demo's combustion car after a day with three drives."""
    vid = xee.vehicle_ids()[0]
    return vid, _day(xee, vid)


def test_a_day_of_drives_gives_exactly_those_trips(xee: Xee, day: Any) -> None:
    vid, drives = day
    token = xee.login()["access_token"]
    trips = _ok(xee.get(f"/vehicles/{vid}/trips", token, **{"from": _at(0), "to": _at(86_400)}))
    assert len(trips) == 3
    assert len({t["id"] for t in trips}) == 3
    for trip, (start_s, end_s, start_km, end_km) in zip(trips, drives, strict=True):
        assert set(trip) == TRIP_KEYS
        assert trip["vehicleId"] == vid
        assert set(trip["startLocation"]) == set(trip["endLocation"]) == PLACE_KEYS
        assert trip["startLocation"]["date"] == _at(start_s)
        assert trip["endLocation"]["date"] == _at(end_s)
        assert trip["createdAt"] == trip["updatedAt"] == _at(end_s)
        assert set(trip["stats"]) == {"distance", "duration"}
        assert trip["stats"]["duration"] == end_s - start_s
        assert isinstance(trip["stats"]["duration"], int)
        assert trip["stats"]["distance"] == pytest.approx(end_km - start_km, abs=0.002)
        assert trip["startLocation"] != trip["endLocation"]
    assert [round(t["stats"]["distance"]) for t in trips] == [5, 3, 30]
    # A trip ends where the car is parked, and the next one starts there.
    for earlier, later in itertools.pairwise(trips):
        end, start = earlier["endLocation"], later["startLocation"]
        assert (end["latitude"], end["longitude"]) == (start["latitude"], start["longitude"])
    # Without from/to: this month's trips (the v3 default), as the Android SDK asks.
    assert _ok(xee.get(f"/vehicles/{vid}/trips", token)) == trips


def test_trip_windows_are_inclusive_overlaps(xee: Xee, day: Any) -> None:
    vid, drives = day
    token = xee.login()["access_token"]

    def ids(start_s: float, end_s: float) -> list[str]:
        window = {"from": _at(start_s), "to": _at(end_s)}
        return [t["id"] for t in _ok(xee.get(f"/vehicles/{vid}/trips", token, **window))]

    everything = ids(0, 86_400)
    (s1, e1, _, _), (s2, _, _, _), (s3, e3, _, _) = drives
    assert ids(s3 + 60, s3 + 120) == [everything[2]]  # inside the trip only
    assert ids(e1, e1) == [everything[0]]  # touching its end
    assert ids(s2 - 60, s2) == [everything[1]]  # touching its start
    assert ids(e1 + 1, s2 - 1) == []  # between two trips
    assert ids(s1 - 3600, e3 + 3600) == everything
    assert ids(0, s1 - 1) == []


def test_trip_detail_is_the_listed_trip(xee: Xee, day: Any) -> None:
    vid, _ = day
    token = xee.login()["access_token"]
    for trip in _ok(xee.get(f"/vehicles/{vid}/trips", token)):
        assert _ok(xee.get(f"/trips/{trip['id']}", token)) == trip


def test_trip_signals_are_what_the_dongle_sent_on_the_way(xee: Xee, day: Any) -> None:
    vid, drives = day
    token = xee.login()["access_token"]
    trips = _ok(xee.get(f"/vehicles/{vid}/trips", token))
    for trip, (start_s, end_s, start_km, end_km) in zip(trips, drives, strict=True):
        signals = _ok(xee.get(f"/trips/{trip['id']}/signals", token))
        dates = [s["date"] for s in signals]
        assert dates == sorted(dates)
        assert dates[0] == _at(start_s)
        assert dates[-1] == _at(end_s)
        assert all(set(s) == {"name", "value", "date"} for s in signals)
        first = {s["name"]: s["value"] for s in signals if s["date"] == dates[0]}
        last = {s["name"]: s["value"] for s in signals if s["date"] == dates[-1]}
        # Ignition on and off are full reports: every signal, odometers included.
        assert set(first) == set(last) == {s["name"] for s in signals}
        assert (first["IgnitionSts"], last["IgnitionSts"]) == (1, 0)
        assert first["Odometer"] == pytest.approx(start_km, abs=0.06)
        assert last["Odometer"] == pytest.approx(end_km, abs=0.06)
        odometers = _ok(xee.get(f"/trips/{trip['id']}/signals", token, signals="Odometer"))
        assert {s["name"] for s in odometers} == {"Odometer"}
        values = [s["value"] for s in odometers]
        assert values == sorted(values)
        assert len(values) >= (end_s - start_s) / 60  # every second report while driving
        assert len(_ok(xee.get(f"/trips/{trip['id']}/signals", token, limit=2))) == 2
        assert _ok(xee.get(f"/trips/{trip['id']}/signals", token, limit=0)) == []
        middle = _at((start_s + end_s) / 2)
        later = _ok(xee.get(f"/trips/{trip['id']}/signals", token, **{"from": middle}))
        assert later == [s for s in signals if s["date"] >= middle]
        earlier = _ok(xee.get(f"/trips/{trip['id']}/signals", token, to=middle))
        assert earlier == [s for s in signals if s["date"] <= middle]


def test_trip_locations_run_from_its_start_to_its_end(xee: Xee, day: Any) -> None:
    vid, drives = day
    token = xee.login()["access_token"]
    trips = _ok(xee.get(f"/vehicles/{vid}/trips", token))
    for trip, (start_s, end_s, _, _) in zip(trips, drives, strict=True):
        fixes = _ok(xee.get(f"/trips/{trip['id']}/locations", token))
        assert all(set(f) == FIX_KEYS for f in fixes)
        assert len(fixes) >= (end_s - start_s) / 30  # one at least every 30 s
        assert [f["date"] for f in fixes] == sorted(f["date"] for f in fixes)
        for fix, place in ((fixes[0], trip["startLocation"]), (fixes[-1], trip["endLocation"])):
            assert {k: fix[k] for k in PLACE_KEYS} == place
        assert all(_at(start_s) <= f["date"] <= _at(end_s) for f in fixes)
        assert len({(f["latitude"], f["longitude"]) for f in fixes}) > len(fixes) / 2
        assert _ok(xee.get(f"/trips/{trip['id']}/locations", token, limit=3)) == fixes[:3]
        middle = _at((start_s + end_s) / 2)
        later = _ok(xee.get(f"/trips/{trip['id']}/locations", token, **{"from": middle}))
        assert later == [f for f in fixes if f["date"] >= middle]


def test_a_long_trip_keeps_bounded_evenly_spread_detail(xee: Xee) -> None:
    vid = xee.vehicle_ids()[0]
    tank = _ok(xee.admin("GET", f"/vehicles/{vid}"))["tankLitres"]
    _ok(xee.admin("PUT", f"/vehicles/{vid}/fuel", {"litres": tank}))
    _drive(xee, vid, 100, 500)  # five hours, 600 reports
    xee.sim.advance(6 * 3600)
    token = xee.login()["access_token"]
    [trip] = _ok(xee.get(f"/vehicles/{vid}/trips", token))
    assert trip["stats"]["duration"] == 5 * 3600
    fixes = _ok(xee.get(f"/trips/{trip['id']}/locations", token))
    assert 150 <= len(fixes) <= 361
    assert fixes[0]["date"] == trip["startLocation"]["date"]
    assert fixes[-1]["date"] == trip["endLocation"]["date"]
    gaps = [_epoch(b["date"]) - _epoch(a["date"]) for a, b in itertools.pairwise(fixes)]
    assert max(gaps) <= 120
    signals = _ok(xee.get(f"/trips/{trip['id']}/signals", token, signals="IgnitionSts"))
    assert (signals[0]["value"], signals[-1]["value"]) == (1, 0)


def test_a_trip_in_progress_is_not_listed_until_it_ends(xee: Xee) -> None:
    vid = xee.vehicle_ids()[1]
    token = xee.login()["access_token"]
    _drive(xee, vid, 50, 10)
    xee.sim.advance(300)
    assert _ok(xee.get(f"/vehicles/{vid}/trips", token)) == []
    xee.sim.advance(600)  # it ended on its own, 720 s after setting off
    [trip] = _ok(xee.get(f"/vehicles/{vid}/trips", token))
    assert trip["stats"]["duration"] == 720
    assert trip["stats"]["distance"] == pytest.approx(10, abs=0.002)


def test_trip_errors(xee: Xee, day: Any) -> None:
    vid, _ = day
    token = xee.login()["access_token"]
    trip_id = _ok(xee.get(f"/vehicles/{vid}/trips", token))[0]["id"]
    unknown = "00000000-0000-4000-8000-000000000000"
    for path in ("", "/signals", "/locations"):
        r = xee.get(f"/trips/{unknown}{path}", token)
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {
            "error": "not_found",
            "error_description": f"Trip {unknown} was not found",
        }
        r = xee.http.get(f"{xee.api}/trips/{trip_id}{path}")
        assert r.status_code == 401
        assert r.json()["error"] == "invalid_token"
    bad = [
        ("/signals", {"from": "yesterday"}),
        ("/signals", {"from": _at(86_400), "to": _at(0)}),
        ("/signals", {"limit": "-1"}),
        ("/signals", {"limit": "many"}),
        ("/locations", {"to": "9999-12-31T23:59:59-14:00"}),
        ("/locations", {"from": _at(86_400), "to": _at(0)}),
        ("/locations", {"limit": "-3"}),
    ]
    for path, params in bad:
        r = xee.get(f"/trips/{trip_id}{path}", token, **params)
        assert r.status_code == 400, (path, params, r.text)
        assert r.json()["error"] == "invalid_request"
    r = xee.get(f"/trips/{trip_id}/signals", token, signals="Odometer,EVBatterySOC")
    assert r.status_code == 400
    assert r.json() == {
        "error": "signals_unexistant",
        "error_description": "Signals does not exist",
    }
    assert xee.get(f"/trips/{trip_id}/stats", token).json()["error"] == "not_found"
    r = xee.http.post(f"{xee.api}/trips/{trip_id}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 405
    assert r.json()["error"] == "method_not_allowed"


def test_another_users_trip_is_not_found(xee: Xee, day: Any) -> None:
    vid, _ = day
    token = xee.login()["access_token"]
    mine = _ok(xee.get(f"/vehicles/{vid}/trips", token))[0]["id"]
    other = _ok(xee.admin("POST", "/users", {"email": "b@xee.example", "password": "pw"}))
    car = _ok(xee.admin("POST", "/vehicles", {"userId": other["id"], "kind": "electric"}))
    _drive(xee, car["id"], 60, 2)
    xee.sim.advance(600)
    theirs_token = xee.login("b@xee.example", "pw")["access_token"]
    token = xee.login()["access_token"]
    [theirs] = _ok(xee.get(f"/vehicles/{car['id']}/trips", theirs_token))
    assert _ok(xee.get(f"/trips/{theirs['id']}", theirs_token)) == theirs
    for path in ("", "/signals", "/locations"):
        assert xee.get(f"/trips/{theirs['id']}{path}", token).status_code == 404
        assert xee.get(f"/trips/{mine}{path}", theirs_token).status_code == 404
    # Their car itself is forbidden, as for every vehicle route.
    assert xee.get(f"/vehicles/{car['id']}/trips", token).status_code == 403


def test_expired_token_and_suspended_account(xee: Xee, day: Any) -> None:
    vid, _ = day
    token = xee.login()["access_token"]
    trip_id = _ok(xee.get(f"/vehicles/{vid}/trips", token))[0]["id"]
    xee.sim.advance(3601)
    expired = xee.get(f"/trips/{trip_id}", token)
    assert expired.status_code == 401
    assert expired.json() == {"error": "token_expired", "error_description": "Token has expired"}
    token = xee.login()["access_token"]
    _ok(xee.admin("POST", f"/users/{xee.user_id}/suspend"))
    for path in ("", "/signals", "/locations"):
        r = xee.get(f"/trips/{trip_id}{path}", token)
        assert r.status_code == 403
        assert r.json()["error"] == "account_suspended"
    _ok(xee.admin("POST", f"/users/{xee.user_id}/unsuspend"))
    assert xee.get(f"/trips/{trip_id}", token).is_success


def test_re_pairing_leaves_the_old_trips_behind(xee: Xee, day: Any) -> None:
    vid, _ = day
    token = xee.login()["access_token"]
    trip_id = _ok(xee.get(f"/vehicles/{vid}/trips", token))[0]["id"]
    new = _ok(xee.admin("POST", f"/vehicles/{vid}/repair"))["id"]
    assert _ok(xee.get(f"/vehicles/{new}/trips", token)) == []
    assert xee.get(f"/trips/{trip_id}", token).status_code == 404


def _trip_bytes(seed: int) -> list[bytes]:
    with running_sim(seed=seed) as sim:
        xee = Xee(sim)
        try:
            vid = xee.vehicle_ids()[0]
            _day(xee, vid)
            token = xee.login()["access_token"]
            listed = xee.get(f"/vehicles/{vid}/trips", token)
            out = [listed.content]
            for trip in listed.json():
                for path in ("", "/signals", "/locations"):
                    out.append(xee.get(f"/trips/{trip['id']}{path}", token).content)
            return out
        finally:
            xee.close()


def test_same_seed_same_trips() -> None:
    first = _trip_bytes(3)
    assert len(first) == 10
    assert _trip_bytes(3) == first
    assert _trip_bytes(4)[0] != first[0]
