"""Charging statistics: sessions and time buckets, from the energy the simulated cars took."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from car2mqtt.clock import isoformat
from car2mqtt.simulator.catalog import CATALOG
from car2mqtt.simulator.physics import INIT_SECONDS, MAX_SESSIONS, SessionEnd, SimCar
from tests.support import START, EnodeClient, Sim

STATS = "/users/demo/statistics/charging"
SESSIONS = "/users/demo/statistics/charging/sessions"
DAY_S = 86_400
TESLA_KW = 11.0  # the catalogue's Model 3 on AC, and the ID.4's


def epoch(stamp: str) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def now(sim: Sim) -> float:
    """The simulator's clock."""
    return epoch(sim.admin_call("GET", "").json()["now"])


def get_list(enode: EnodeClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """GET a statistics endpoint (checked against the spec) and return its array."""
    r = enode.get(path, params={"type": "vehicle", **params})
    assert r.status_code == 200, r.text
    data: list[dict[str, Any]] = r.json()
    return data


def plug_in_at(sim: Sim, vid: str, level: float, *, charging: bool = True) -> None:
    """Unplug the car, set its battery and plug it in again (charging at once by default)."""
    assert sim.admin_call("POST", f"/enode/vehicles/{vid}/unplug").is_success
    assert sim.admin_call("PUT", f"/enode/vehicles/{vid}/battery", {"level": level}).is_success
    r = sim.admin_call("POST", f"/enode/vehicles/{vid}/plug-in", {"startCharging": charging})
    assert r.status_code == 200, r.text


@pytest.fixture
def vw(sim: Sim) -> str:
    """The second demo car (an ID.4, 77 kWh, limit 80 %), charged from 40 % to full."""
    vid = sim.vehicle_ids()[1]
    live = sim.live(vid)
    assert (live["vendor"], live["chargeLimit"]) == ("VOLKSWAGEN", 80.0)
    plug_in_at(sim, vid, 40)
    sim.advance(5 * 3600)  # about 3 h 15 min of charging, then complete
    assert sim.live(vid)["batteryLevel"] == 80.0
    assert sim.live(vid)["chargeMode"] == "COMPLETE"
    return vid


def capacity(sim: Sim, vid: str) -> float:
    """The battery's capacity as the API reports it."""
    value: float = sim.live(vid)["cached"]["chargeState"]["batteryCapacity"]
    return value


def test_a_charge_from_40_to_80_percent_is_one_session_of_40_percent_of_the_battery(
    sim: Sim, enode: EnodeClient, vw: str
) -> None:
    sessions = get_list(enode, SESSIONS, startDate=isoformat(START), id=vw)
    assert len(sessions) == 1
    session = sessions[0]
    assert session["id"] == vw
    assert session["locationId"] is None
    expected = 0.40 * capacity(sim, vw)
    assert session["kwhSum"] == pytest.approx(expected, rel=0.01)
    # Energy flows once the charger settled, and stops when the taper reaches the limit.
    assert epoch(session["from"]) == pytest.approx(START + INIT_SECONDS, abs=0.01)
    hours = (epoch(session["to"]) - epoch(session["from"])) / 3600
    assert 3.0 < hours < 3.5
    assert epoch(session["to"]) < now(sim)
    assert session["kw"]["max"] == pytest.approx(TESLA_KW)
    assert 0 < session["kw"]["min"] < session["kw"]["mean"] < session["kw"]["max"]
    assert session["kw"]["mean"] == pytest.approx(session["kwhSum"] / hours, rel=0.05)
    # No smart charging moved it: the peak price, no savings.
    assert session["price"] == {"min": 0.30, "max": 0.30, "mean": 0.30}
    assert session["costSum"] == pytest.approx(session["kwhSum"] * 0.30, abs=1e-3)
    assert session["nonSmartPrice"] == {"min": None, "max": None, "mean": None}
    assert session["estimatedSavings"] is None

    days = get_list(enode, STATS, startDate=isoformat(START), id=vw)
    assert [d["date"] for d in days] == [isoformat(START)]  # the default resolution: DAY
    assert days[0]["kwhSum"] == pytest.approx(session["kwhSum"], abs=1e-3)
    assert days[0]["costSum"] == pytest.approx(session["costSum"], abs=1e-3)
    assert days[0]["kw"]["max"] == pytest.approx(TESLA_KW)


def test_hourly_buckets_follow_the_charge_curve(sim: Sim, enode: EnodeClient, vw: str) -> None:
    session = get_list(enode, SESSIONS, startDate=isoformat(START), id=vw)[0]
    hours = get_list(
        enode,
        STATS,
        startDate=isoformat(START),
        endDate=isoformat(START + 5 * 3600),
        resolution="HOUR",
        id=vw,
    )
    assert [epoch(h["date"]) for h in hours] == [START + i * 3600 for i in range(5)]
    assert sum(h["kwhSum"] for h in hours) == pytest.approx(session["kwhSum"], abs=1e-3)
    # Two full hours at 11 kW (the first less the charger's 30 s), then the taper, then nothing.
    assert hours[0]["kwhSum"] == pytest.approx(TESLA_KW * (3600 - INIT_SECONDS) / 3600, rel=1e-4)
    assert hours[1]["kwhSum"] == pytest.approx(TESLA_KW, rel=1e-4)
    assert hours[1]["kw"] == {"min": TESLA_KW, "max": TESLA_KW, "mean": TESLA_KW}
    assert hours[2]["kw"]["max"] == pytest.approx(TESLA_KW)
    assert hours[3]["kw"]["max"] < TESLA_KW
    assert hours[3]["kwhSum"] < hours[2]["kwhSum"]
    assert hours[4]["kwhSum"] == 0
    assert hours[4]["kw"] == {"min": 0, "max": 0, "mean": 0}
    assert hours[4]["estimatedSavings"] is None
    quarters = get_list(
        enode,
        STATS,
        startDate=isoformat(START),
        endDate=isoformat(START + 3600),
        resolution="QUARTER_HOUR",
        id=vw,
    )
    assert len(quarters) == 4
    assert sum(q["kwhSum"] for q in quarters) == pytest.approx(hours[0]["kwhSum"], abs=1e-3)
    halves = get_list(
        enode,
        STATS,
        startDate=isoformat(START + 1800),
        endDate=isoformat(START + 3600),
        resolution="HALF_HOUR",
        id=vw,
    )
    assert [epoch(h["date"]) for h in halves] == [START + 1800]
    assert halves[0]["kwhSum"] == pytest.approx(TESLA_KW / 2, rel=1e-4)


def test_a_running_session_counts_up_to_now(sim: Sim, enode: EnodeClient) -> None:
    tesla = sim.vehicle_ids()[0]
    plug_in_at(sim, tesla, 40)
    sim.advance(3600)
    [running] = get_list(enode, SESSIONS, startDate=isoformat(START), id=tesla)
    assert epoch(running["to"]) == now(sim)
    assert running["kwhSum"] == pytest.approx(TESLA_KW * (3600 - INIT_SECONDS) / 3600, rel=1e-4)
    truth = sim.live(tesla)["batteryLevel"]
    assert running["kwhSum"] == pytest.approx((truth - 40) / 100 * capacity(sim, tesla), rel=1e-4)
    sim.advance(1800)
    enode.token(fresh=True)
    [later] = get_list(enode, SESSIONS, startDate=isoformat(START), id=tesla)
    assert later["from"] == running["from"]
    assert later["kwhSum"] == pytest.approx(running["kwhSum"] + TESLA_KW / 2, rel=1e-4)
    [day] = get_list(enode, STATS, startDate=isoformat(START), id=tesla)
    assert day["kwhSum"] == pytest.approx(later["kwhSum"], abs=1e-3)


def test_unplugging_and_stopping_end_sessions(sim: Sim, enode: EnodeClient) -> None:
    tesla = sim.vehicle_ids()[0]
    plug_in_at(sim, tesla, 40)
    sim.advance(3600)
    unplugged_at = now(sim)
    assert sim.admin_call("POST", f"/enode/vehicles/{tesla}/unplug").is_success
    sim.advance(600)
    plug_in_at(sim, tesla, 50)  # the battery level is set while unplugged: no energy
    sim.advance(1800)
    sim.refresh(tesla)
    stop = enode.post(f"/vehicles/{tesla}/charging", {"action": "STOP"})
    assert stop.status_code == 200, stop.text
    sim.advance(120)
    enode.token(fresh=True)
    action = enode.get(f"/vehicles/actions/{stop.json()['id']}").json()
    assert action["state"] == "CONFIRMED"
    first, second = get_list(enode, SESSIONS, startDate=isoformat(START), id=tesla)
    assert epoch(first["to"]) == unplugged_at
    assert epoch(second["from"]) == pytest.approx(unplugged_at + 600 + INIT_SECONDS, abs=0.01)
    # The vendor carried the STOP out 15 to 45 s after it was sent.
    stopped_after = epoch(second["to"]) - epoch(second["from"])
    assert 1800 - INIT_SECONDS + 15 <= stopped_after <= 1800 - INIT_SECONDS + 45
    assert second["kwhSum"] == pytest.approx(TESLA_KW * stopped_after / 3600, rel=1e-4)
    assert sim.live(tesla)["batteryLevel"] == pytest.approx(
        50 + second["kwhSum"] / capacity(sim, tesla) * 100, abs=1e-3
    )
    [day] = get_list(enode, STATS, startDate=isoformat(START), id=tesla)
    assert day["kwhSum"] == pytest.approx(first["kwhSum"] + second["kwhSum"], abs=1e-3)


def test_filters_by_vehicle_date_and_type(sim: Sim, enode: EnodeClient, vw: str) -> None:
    tesla = sim.vehicle_ids()[0]
    plug_in_at(sim, tesla, 40)
    sim.advance(3600)
    both = get_list(enode, SESSIONS, startDate=isoformat(START))
    assert [s["id"] for s in both] == [vw, tesla]  # oldest first
    assert [s["id"] for s in get_list(enode, SESSIONS, startDate=isoformat(START), id=tesla)] == [
        tesla
    ]
    vw_session = both[0]
    # Sessions meeting [startDate, endDate]: one touching the window's end still counts.
    touching = get_list(enode, SESSIONS, startDate=isoformat(START), endDate=vw_session["from"])
    assert [s["id"] for s in touching] == [vw]
    assert (
        get_list(enode, SESSIONS, startDate=isoformat(START), endDate=isoformat(START + 10)) == []
    )
    after_vw = get_list(enode, SESSIONS, startDate=isoformat(epoch(vw_session["to"]) + 1))
    assert [s["id"] for s in after_vw] == [tesla]
    days = get_list(enode, STATS, startDate=isoformat(START))
    assert days[0]["kwhSum"] == pytest.approx(sum(s["kwhSum"] for s in both), abs=1e-3)
    # The simulator has no chargers nor HVACs: nothing to report, but every bucket is there.
    assert get_list(enode, SESSIONS, startDate=isoformat(START), type="charger") == []
    [empty] = get_list(enode, STATS, startDate=isoformat(START), type="hvac")
    assert empty["kwhSum"] == 0
    assert empty["date"] == isoformat(START)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (SESSIONS, {"id": "no-such-vehicle"}),
        (STATS, {"id": "no-such-vehicle"}),
        (SESSIONS, {"type": "charger", "id": "no-such-charger"}),
        (STATS, {"locationId": "4eaeb363-296d-4ccc-a973-7805e6f400bd"}),
        ("/users/nobody/statistics/charging/sessions", {}),
        ("/users/nobody/statistics/charging", {}),
    ],
)
def test_unknown_assets_are_404(enode: EnodeClient, path: str, params: dict[str, str]) -> None:
    r = enode.get(path, params={"type": "vehicle", "startDate": isoformat(START), **params})
    assert r.status_code == 404, r.text
    assert r.json()["type"].endswith("/not-found")


def test_another_users_vehicle_is_404(sim: Sim, enode: EnodeClient) -> None:
    r = sim.admin_call("POST", "/enode/vehicles", {"userId": "someone-else"})
    assert r.status_code == 201, r.text
    other = r.json()["id"]
    r = enode.get(SESSIONS, params={"type": "vehicle", "startDate": isoformat(START), "id": other})
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("path", "params", "where"),
    [
        (SESSIONS, {"type": "vehicle"}, "startDate"),
        (STATS, {"startDate": "2026-01-01T00:00:00Z"}, "type"),
        (STATS, {"startDate": "2026-01-01T00:00:00Z", "type": "car"}, "type"),
        (SESSIONS, {"startDate": "yesterday", "type": "vehicle"}, "startDate"),
        (SESSIONS, {"startDate": "2026-01-01T00:00:00", "type": "vehicle"}, "startDate"),
        (SESSIONS, {"startDate": "2026-01-01", "type": "vehicle"}, "startDate"),
        (SESSIONS, {"startDate": "2026-02-30T00:00:00Z", "type": "vehicle"}, "startDate"),
        (SESSIONS, {"startDate": "1969-12-31T23:59:59Z", "type": "vehicle"}, "startDate"),
        (
            SESSIONS,
            {"startDate": "2026-01-01T00:00:00Z", "endDate": "2026-13-01T00:00:00Z"},
            "endDate",
        ),
        (
            STATS,
            {"startDate": "2026-01-02T00:00:00Z", "endDate": "2026-01-01T00:00:00Z"},
            "endDate",
        ),
        (STATS, {"startDate": "2026-01-01T00:00:00Z", "resolution": "MINUTE"}, "resolution"),
        (STATS, {"startDate": "2026-01-01T00:00:00Z", "resolution": "day"}, "resolution"),
        (STATS, {"startDate": "2026-01-01T00:00:00Z", "utcOffset": "two"}, "utcOffset"),
        (STATS, {"startDate": "2026-01-01T00:00:00Z", "utcOffset": "nan"}, "utcOffset"),
        (STATS, {"startDate": "2026-01-01T00:00:00Z", "utcOffset": "24"}, "utcOffset"),
        (SESSIONS, {"startDate": "2026-01-01T00:00:00Z", "locationId": "home"}, "locationId"),
        (
            STATS,
            {
                "startDate": "2000-01-01T00:00:00Z",
                "endDate": "2026-01-01T00:00:00Z",
                "resolution": "HOUR",
            },
            "endDate",
        ),
    ],
)
def test_bad_parameters_get_a_400_problem(
    enode: EnodeClient, path: str, params: dict[str, str], where: str
) -> None:
    query = params if where == "type" else {"type": "vehicle", **params}
    r = enode.get(path, params=query)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["type"] == "https://developers.enode.com/api/problems/bad-request"
    assert problem["title"] == "Bad Request"
    assert where in problem["detail"]
    assert [i["path"] for i in problem["issues"]] == [[where]]


def test_several_bad_parameters_are_reported_together(enode: EnodeClient) -> None:
    r = enode.get(STATS, params={"resolution": "SECOND"})
    assert r.status_code == 400
    paths = [i["path"] for i in r.json()["issues"]]
    assert paths == [["startDate"], ["type"], ["resolution"]]


def test_calendar_buckets_and_the_utc_offset(sim: Sim, enode: EnodeClient, vw: str) -> None:
    start = isoformat(START - 40 * DAY_S)  # 2025-11-22, a Saturday
    days = get_list(enode, STATS, startDate=start, endDate=isoformat(START + 1), id=vw)
    assert len(days) == 41
    assert days[-1]["date"] == isoformat(START)
    assert sum(d["kwhSum"] for d in days) == days[-1]["kwhSum"] > 0
    weeks = get_list(enode, STATS, startDate=start, resolution="WEEK", id=vw)
    assert [w["date"][:10] for w in weeks][:2] == ["2025-11-17", "2025-11-24"]  # Mondays
    assert weeks[-1]["date"][:10] == "2025-12-29"
    assert weeks[-1]["kwhSum"] > 0
    months = get_list(enode, STATS, startDate=start, resolution="MONTH", id=vw)
    assert [m["date"][:10] for m in months] == ["2025-11-01", "2025-12-01", "2026-01-01"]
    years = get_list(enode, STATS, startDate=start, resolution="YEAR", id=vw)
    assert [y["date"][:10] for y in years] == ["2025-01-01", "2026-01-01"]
    assert years[1]["kwhSum"] == pytest.approx(days[-1]["kwhSum"])
    # Two hours ahead of UTC, the day began at 22:00 UTC, before the charge.
    ahead = get_list(enode, STATS, startDate=isoformat(START), id=vw, utcOffset="2")
    assert [a["date"] for a in ahead] == [isoformat(START - 2 * 3600)]
    assert ahead[0]["kwhSum"] == pytest.approx(days[-1]["kwhSum"], abs=1e-3)
    # An hour and a half behind, the next day began at 01:30 UTC, in the middle of it.
    behind = get_list(enode, STATS, startDate=isoformat(START), id=vw, utcOffset="-1.5")
    assert [b["date"] for b in behind] == [
        isoformat(START - DAY_S + 1.5 * 3600),
        isoformat(START + 1.5 * 3600),
    ]
    expected = TESLA_KW * (1.5 * 3600 - INIT_SECONDS) / 3600
    assert behind[0]["kwhSum"] == pytest.approx(expected, rel=1e-4)
    assert sum(b["kwhSum"] for b in behind) == pytest.approx(days[-1]["kwhSum"], abs=1e-3)
    # utcOffset does not move hours (the spec says so).
    [hour] = get_list(
        enode,
        STATS,
        startDate=isoformat(START),
        endDate=isoformat(START + 1),
        resolution="HOUR",
        id=vw,
        utcOffset="5.5",
    )
    assert hour["date"] == isoformat(START)


def test_a_charge_the_plan_moved_reports_its_savings(sim: Sim, enode: EnodeClient) -> None:
    tesla = sim.vehicle_ids()[0]
    plug_in_at(sim, tesla, 40)
    sim.refresh(tesla)
    r = enode.request(
        "PUT",
        f"/vehicles/{tesla}/smart-charging-policy",
        json_body={"isEnabled": True, "deadline": "12:00"},
    )
    assert r.status_code == 200, r.text
    assert sim.live(tesla)["chargeMode"] == "STOPPED"  # stopped while the charger settled
    sim.advance(12 * 3600)
    enode.token(fresh=True)
    assert sim.live(tesla)["chargeMode"] == "COMPLETE"
    [session] = get_list(enode, SESSIONS, startDate=isoformat(START), id=tesla)
    assert epoch(session["from"]) > START + 3600  # the plan started it later
    limit = sim.live(tesla)["chargeLimit"]
    assert session["kwhSum"] == pytest.approx((limit - 40) / 100 * capacity(sim, tesla), rel=0.01)
    assert session["price"] == {"min": 0.22, "max": 0.22, "mean": 0.22}
    assert session["nonSmartPrice"] == {"min": 0.30, "max": 0.30, "mean": 0.30}
    assert session["estimatedSavings"] == pytest.approx(session["kwhSum"] * 0.08, abs=1e-3)
    [day] = get_list(enode, STATS, startDate=isoformat(START), id=tesla)
    assert day["estimatedSavings"] == pytest.approx(session["estimatedSavings"], abs=1e-3)
    assert day["nonSmartPrice"] == {"min": 0.30, "max": 0.30, "mean": 0.30}
    assert day["price"]["mean"] == pytest.approx(0.22)


def test_statistics_are_reads_for_fault_injection(sim: Sim, enode: EnodeClient) -> None:
    token = enode.token()
    r = sim.admin_call("PUT", "/faults", {"classes": {"write": {"unavailable": 1.0}}})
    assert r.status_code == 200, r.text
    params = {"type": "vehicle", "startDate": isoformat(START)}
    assert enode.get(STATS, params=params, token=token).status_code == 200
    r = sim.admin_call("PUT", "/faults", {"classes": {"read": {"unavailable": 1.0}}})
    assert r.status_code == 200, r.text
    for path in (STATS, SESSIONS):
        r = enode.get(path, params=params, token=token)
        assert r.status_code == 503
        assert r.headers["content-type"].startswith("application/problem+json")


def test_a_car_remembers_its_last_sessions_with_their_levels() -> None:
    car = SimCar(CATALOG[0], 0.0, 20.0, 1000.0, 59.9, 10.7, (59.9, 10.7), charge_limit=80.0)
    car.plug_in(start_charging=True)
    car.advance(3600)
    car.stop_charging()
    [first] = car.charge_sessions()
    assert (first.started_at, first.ended_at, first.end) == (30.0, 3600.0, SessionEnd.STOPPED)
    assert first.soc_from == 20.0
    assert first.soc_to == pytest.approx(car.soc)
    assert first.energy_kwh == pytest.approx((car.soc - 20) / 100 * 57.5)
    assert car.charged_kwh == pytest.approx(first.energy_kwh)
    t = 3600.0
    for _ in range(MAX_SESSIONS + 5):
        car.set_soc(20.0)
        car.start_charging()
        t += 60
        car.advance(t)
        car.stop_charging()
    sessions = car.charge_sessions()
    assert len(sessions) == MAX_SESSIONS
    assert sessions[0].started_at > first.started_at
    assert all(s.end is SessionEnd.STOPPED for s in sessions)
    assert car.charged_kwh == pytest.approx(
        first.energy_kwh + (MAX_SESSIONS + 5) * TESLA_KW * (60 - INIT_SECONDS) / 3600
    )


def test_sessions_are_the_same_however_often_the_car_is_read() -> None:
    def charge(step: float) -> SimCar:
        car = SimCar(CATALOG[0], 0.0, 40.0, 1000.0, 59.9, 10.7, (59.9, 10.7), charge_limit=80.0)
        car.plug_in(start_charging=True)
        t = 0.0
        while t < 5 * 3600:
            t += step
            car.advance(t)
        return car

    once, often = charge(5 * 3600), charge(7.0)
    [a], [b] = once.charge_sessions(), often.charge_sessions()
    assert (a.end, b.end) == (SessionEnd.FULL, SessionEnd.FULL)
    assert len(b.pieces) == 1  # one curve, however many reads
    assert b.ended_at == pytest.approx(a.ended_at, abs=1e-6)
    assert b.energy_kwh == pytest.approx(a.energy_kwh) == pytest.approx(0.40 * 57.5)
    assert b.energy_between(0, 3600) == pytest.approx(a.energy_between(0, 3600))
    assert once.soc == often.soc == 80.0
    assert once.charge_power_kw() == 0.0


def test_a_limit_lowered_under_the_battery_ends_the_session() -> None:
    car = SimCar(CATALOG[0], 0.0, 40.0, 1000.0, 59.9, 10.7, (59.9, 10.7), charge_limit=80.0)
    car.plug_in(start_charging=True)
    car.advance(3600)
    car.charge_limit = 45.0
    car.advance(7200)
    [session] = car.charge_sessions()
    assert (session.ended_at, session.end) == (3600.0, SessionEnd.FULL)
