"""Every fault the simulator can inject, switched at runtime through the admin API."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.enode_spec import EnodeSpec
from tests.support import EnodeClient, Sim, running_sim


def set_faults(sim: Sim, body: dict[str, Any]) -> dict[str, Any]:
    r = sim.admin_call("PUT", "/faults", body)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def test_rate_limit_with_retry_after(sim: Sim, enode: EnodeClient) -> None:
    token = enode.token()  # the token endpoint is its own class, untouched by read faults
    set_faults(sim, {"classes": {"read": {"rateLimit": 1.0, "retryAfter": 7}}})
    r = enode.get("/vehicles", token=token)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "7"
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("/rate-limited")
    assert enode.token(fresh=True)
    set_faults(sim, {"profile": "none"})
    assert enode.get("/vehicles").status_code == 200


def test_vendor_temporarily_unavailable(sim: Sim, enode: EnodeClient) -> None:
    set_faults(sim, {"classes": {"write": {"unavailable": 1.0}}})
    vid = sim.vehicle_ids()[1]
    r = enode.post(f"/vehicles/{vid}/charging", {"action": "STOP"})
    assert r.status_code == 503
    assert (
        r.json()["type"]
        == "https://developers.enode.com/api/problems/vendor-temporarily-unavailable"
    )
    assert enode.get(f"/vehicles/{vid}").status_code == 200  # reads are another class


def test_slow_responses(sim: Sim, spec: EnodeSpec) -> None:
    set_faults(sim, {"classes": {"read": {"slow": 1.0, "slowSeconds": 1.0}}})
    impatient = EnodeClient(sim, spec, timeout=0.3)
    try:
        token = impatient.token()
        with pytest.raises(httpx.ReadTimeout):
            impatient.get("/vehicles", token=token)
    finally:
        impatient.close()


def test_dropped_connections(sim: Sim, enode: EnodeClient) -> None:
    token = enode.token()
    set_faults(sim, {"classes": {"read": {"drop": 1.0}}})
    with pytest.raises(httpx.TransportError):
        enode.get("/vehicles", token=token)
    set_faults(sim, {"profile": "none"})
    assert enode.get("/vehicles", token=token).status_code == 200


def test_malformed_bodies(sim: Sim, enode: EnodeClient) -> None:
    token = enode.token()
    set_faults(sim, {"classes": {"read": {"malformed": 1.0}}})
    r = enode.get("/vehicles", token=token, check=False)
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)


def test_token_revocation(sim: Sim, enode: EnodeClient) -> None:
    old = enode.token()
    r = sim.admin_call("POST", "/faults/revoke-tokens")
    assert r.json() == {"revoked": 1}
    assert enode.get("/vehicles", token=old).status_code == 401
    assert enode.get("/vehicles", token=enode.token(fresh=True)).status_code == 200


def test_vendor_outage(sim: Sim, enode: EnodeClient) -> None:
    tesla, vw = sim.vehicle_ids()[:2]
    before = enode.get(f"/vehicles/{tesla}").json()
    set_faults(sim, {"vendorOutage": ["TESLA"]})
    sim.advance(10 * 60)
    stale = enode.get(f"/vehicles/{tesla}").json()
    assert stale["isReachable"] is False
    assert stale["lastSeen"] == before["lastSeen"]
    assert enode.get(f"/vehicles/{vw}").json()["isReachable"] is True
    health = {h["vendor"]: h for h in enode.get("/health/vehicles").json()}
    assert health["TESLA"]["status"] == "OUTAGE"
    assert health["TESLA"]["linkingStatus"] == "OUTAGE"
    assert health["VOLKSWAGEN"]["status"] == "READY"
    r = enode.post(f"/vehicles/{tesla}/charging", {"action": "START"})
    assert r.status_code == 503
    set_faults(sim, {"vendorOutage": []})
    sim.advance(10 * 60)
    assert enode.get(f"/vehicles/{tesla}").json()["isReachable"] is True


def test_outage_profile_takes_every_vendor_down(sim: Sim, enode: EnodeClient) -> None:
    token = enode.token()
    faults = set_faults(sim, {"profile": "outage"})
    assert faults["vendorOutage"] == ["*"]
    statuses = {enode.get("/health/vehicles", token=token).status_code for _ in range(20)}
    assert statuses == {200, 503}  # reads fail half the time, seeded


def test_credentials_invalidated(sim: Sim, enode: EnodeClient) -> None:
    tesla = sim.vehicle_ids()[0]
    r = sim.admin_call("POST", "/enode/users/demo/invalidate-credentials", {"vendor": "TESLA"})
    assert r.status_code == 200
    vendors = {v["vendor"]: v["isValid"] for v in enode.get("/users/demo").json()["linkedVendors"]}
    assert vendors == {"TESLA": False, "VOLKSWAGEN": True, "XPENG": True}
    vehicle = enode.get(f"/vehicles/{tesla}").json()
    assert vehicle["isReachable"] is False
    (intervention,) = {i for c in vehicle["capabilities"].values() for i in c["interventionIds"]}
    assert all(not c["isCapable"] for c in vehicle["capabilities"].values())
    assert len(intervention) == 36
    r = sim.admin_call("POST", "/enode/users/demo/invalidate-credentials", {"vendor": "BMW"})
    assert r.status_code == 409
    assert "has not linked BMW" in r.json()["error"]


def _outcomes(spec: EnodeSpec, requests: int, **sim_options: Any) -> Counter[str]:
    """Fire `requests` reads at a fresh simulator and tally what came back."""
    faults = sim_options.pop("rules", None)
    with running_sim(**sim_options) as sim:
        if faults is not None:
            set_faults(sim, faults)
        client = EnodeClient(sim, spec, timeout=5)
        outcomes: Counter[str] = Counter()
        try:
            token = client.token()
            for _ in range(requests):
                try:
                    r = client.get("/users/demo/vehicles", token=token, check=False)
                    json.loads(r.content)
                    outcomes[str(r.status_code)] += 1
                except httpx.TransportError:
                    outcomes["dropped"] += 1
                except json.JSONDecodeError:
                    outcomes["malformed"] += 1
        finally:
            client.close()
        return outcomes


def test_faults_are_seeded(spec: EnodeSpec) -> None:
    rules = {
        "classes": {"read": {"rateLimit": 0.2, "unavailable": 0.1, "drop": 0.05, "malformed": 0.1}}
    }
    first = _outcomes(spec, 100, seed=3, rules=rules)
    assert first == _outcomes(spec, 100, seed=3, rules=rules), "same seed, same faults"
    assert set(first) == {"200", "429", "503", "dropped", "malformed"}
    assert first != _outcomes(spec, 100, seed=4, rules=rules)


def test_flaky_profile_is_mostly_fine(spec: EnodeSpec) -> None:
    outcomes = _outcomes(spec, 40, seed=3, faults="flaky")
    assert outcomes["200"] >= 25
    assert set(outcomes) - {"200"}, outcomes


def test_none_profile_has_no_faults(sim: Sim, enode: EnodeClient) -> None:
    assert sim.admin_call("GET", "/faults").json() == {
        "profile": "none",
        "classes": {},
        "vendorOutage": [],
    }
    assert all(enode.get("/vehicles").status_code == 200 for _ in range(30))


def test_link_ui_is_never_faulted(sim: Sim, enode: EnodeClient) -> None:
    body = {
        "scopes": ["vehicle:read:data"],
        "language": "en-GB",
        "redirectUri": "https://app.example/done",
    }
    link = enode.post("/users/bob/link", body).json()
    set_faults(sim, {"classes": {"read": {"unavailable": 1.0}}})
    assert httpx.get(link["linkUrl"]).status_code == 200


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"profile": "chaos"}, "unknown fault profile 'chaos'"),
        ({"classes": {"everything": {"drop": 1}}}, "unknown endpoint class 'everything'"),
        ({"classes": {"read": {"drop": 2}}}, "classes.read.drop"),
        ({"classes": {"read": {"explode": 1}}}, "explode"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_bad_fault_requests(sim: Sim, body: dict[str, Any], needle: str) -> None:
    r = sim.admin_call("PUT", "/faults", body)
    assert r.status_code == 400
    assert needle in r.json()["error"]
    assert sim.admin_call("GET", "/faults").json()["profile"] == "none"


# ---- the admin API reports its own bad input clearly ------------------------------------------


def test_admin_errors_are_specific(sim: Sim) -> None:
    r = sim.admin_call("POST", "/enode/vehicles/nope/plug-in")
    assert r.status_code == 404
    assert "nope" in r.json()["error"]
    xpeng = sim.vehicle_ids()[2]  # driving
    r = sim.admin_call("POST", f"/enode/vehicles/{xpeng}/plug-in")
    assert r.status_code == 409
    assert "driving" in r.json()["error"]
    r = sim.admin_call("PUT", f"/enode/vehicles/{xpeng}/battery", {"level": 140})
    assert r.status_code == 400
    assert "level" in r.json()["error"]
    r = httpx.post(f"{sim.admin}/clock/advance", content=b"{oops")
    assert r.status_code == 400
    assert "not valid JSON" in r.json()["error"]
    r = sim.admin_call("POST", "/clock/advance", {"seconds": -5})
    assert r.status_code == 400
    r = sim.admin_call("POST", "/enode/vehicles", {"userId": "x", "vendor": "TRABANT"})
    assert r.status_code == 400
    assert "TRABANT" in r.json()["error"]


def test_admin_clock_speed(sim: Sim) -> None:
    r = sim.admin_call("PUT", "/clock", {"timeFactor": 0})
    assert r.json()["timeFactor"] == 0
    now = sim.admin_call("GET", "/").json()["now"]
    assert sim.admin_call("GET", "/").json()["now"] == now
    sim.advance(60)
    assert sim.admin_call("GET", "/").json()["now"] > now


def test_a_late_answer_has_already_taken_effect(sim: Sim) -> None:
    xee = sim.info["xee"]
    rule = {"classes": {"auth": {"late": 1.0, "slowSeconds": 0.5}}}
    assert sim.admin_call("PUT", "/xee/faults", rule).status_code == 200
    form = {"grant_type": "password", "username": xee["username"], "password": xee["password"]}
    auth = (xee["clientId"], xee["clientSecret"])
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(xee["tokenUrl"], data=form, auth=auth, timeout=0.2)
    # The client gave up, but the cloud had counted (and answered) the grant before holding it.
    assert sim.admin_call("GET", "/").json()["apiCalls"]["xee"] == 1
    slow = httpx.post(xee["tokenUrl"], data=form, auth=auth, timeout=5)
    assert slow.status_code == 200
    assert slow.elapsed.total_seconds() >= 0.45  # held back 0.5 s (timer granularity aside)
