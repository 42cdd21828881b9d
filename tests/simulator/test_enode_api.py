"""The simulated Enode API: auth, version header, users, vehicles, pagination and health.

Every response here is also validated against the official 2024-10-01 spec by `EnodeClient`.
"""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.enode_spec import EnodeSpec
from tests.support import EnodeClient, Sim, running_sim

# ---- OAuth2 client credentials -------------------------------------------------------------


def test_token_with_basic_auth(sim: Sim) -> None:
    creds = sim.info["enode"]
    r = httpx.post(
        creds["tokenUrl"],
        data={"grant_type": "client_credentials"},
        auth=(creds["clientId"], creds["clientSecret"]),
    )
    assert r.status_code == 200
    body = r.json()
    assert body["expires_in"] == 3599
    assert body["token_type"] == "bearer"
    assert body["scope"] == ""
    assert len(body["access_token"]) >= 32


def test_token_with_credentials_in_form(sim: Sim) -> None:
    creds = sim.info["enode"]
    r = httpx.post(
        creds["tokenUrl"],
        data={
            "grant_type": "client_credentials",
            "client_id": creds["clientId"],
            "client_secret": creds["clientSecret"],
        },
    )
    assert r.status_code == 200
    assert r.json()["expires_in"] == 3599


@pytest.mark.parametrize(
    ("auth", "form"),
    [
        (("car2mqtt-sim-client", "wrong"), {}),
        (("someone-else", "car2mqtt-sim-secret"), {}),
        (None, {"client_id": "car2mqtt-sim-client"}),
        (None, {}),
    ],
)
def test_token_rejects_bad_client(
    sim: Sim, auth: tuple[str, str] | None, form: dict[str, str]
) -> None:
    r = httpx.post(
        sim.info["enode"]["tokenUrl"], data={"grant_type": "client_credentials", **form}, auth=auth
    )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert "car2mqtt-sim-secret" not in r.text


def test_token_rejects_malformed_basic_header(sim: Sim) -> None:
    r = httpx.post(
        sim.info["enode"]["tokenUrl"],
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic !!!not-base64"},
    )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


def test_token_needs_client_credentials_grant(sim: Sim) -> None:
    creds = sim.info["enode"]
    auth = (creds["clientId"], creds["clientSecret"])
    r = httpx.post(creds["tokenUrl"], data={"grant_type": "password"}, auth=auth)
    assert r.status_code == 400
    assert r.json()["error"] == "unsupported_grant_type"
    r = httpx.post(creds["tokenUrl"], data={}, auth=auth)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


def test_api_needs_a_bearer_token(enode: EnodeClient) -> None:
    for token in ("x", "not-a-token"):
        r = enode.get("/vehicles", token=token)
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["title"] == "Unauthorized"
    assert enode.http.get("/vehicles").status_code == 401
    basic = base64.b64encode(b"car2mqtt-sim-client:car2mqtt-sim-secret").decode()
    r = enode.http.get("/vehicles", headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 401


def test_token_expires_after_3599_simulated_seconds(sim: Sim, enode: EnodeClient) -> None:
    token = enode.token()
    sim.advance(3598)
    assert enode.get("/vehicles", token=token).status_code == 200
    sim.advance(2)
    r = enode.get("/vehicles", token=token)
    assert r.status_code == 401
    assert "expired" in r.json()["detail"]
    assert enode.get("/vehicles", token=enode.token(fresh=True)).status_code == 200


def test_enode_version_header(enode: EnodeClient) -> None:
    assert enode.get("/vehicles").status_code == 200
    r = enode.get("/vehicles", headers={"Enode-Version": "2023-08-01"})
    assert r.status_code == 400
    assert "2023-08-01" in r.json()["detail"]
    r = enode.get("/vehicles", headers={"Enode-Version": "banana"})
    assert r.status_code == 400
    # Without the header, the client's default version applies.
    headers = {"Authorization": f"Bearer {enode.token()}"}
    assert enode.http.get("/vehicles", headers=headers).status_code == 200


def test_unknown_endpoint_is_a_problem(enode: EnodeClient) -> None:
    r = enode.http.get("/nope", headers={"Authorization": f"Bearer {enode.token()}"})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("/not-found")


# ---- vehicles --------------------------------------------------------------------------------


def test_demo_vehicles_cover_vendor_quirks(sim: Sim, enode: EnodeClient) -> None:
    vehicles = {v["vendor"]: v for v in enode.get("/users/demo/vehicles").json()["data"]}
    assert set(vehicles) == {"TESLA", "VOLKSWAGEN", "XPENG"}
    xpeng = vehicles["XPENG"]
    assert xpeng["odometer"] == {"distance": None, "lastUpdated": None}
    assert xpeng["capabilities"]["odometer"]["isCapable"] is False
    tesla = vehicles["TESLA"]
    assert tesla["odometer"]["distance"] > 0
    assert tesla["capabilities"]["startCharging"]["isCapable"] is True
    assert tesla["information"]["brand"] == "Tesla"
    assert len(tesla["information"]["vin"]) == 17
    # The second demo car is plugged in and charging.
    vw = vehicles["VOLKSWAGEN"]
    assert vw["chargeState"]["isPluggedIn"] is True
    assert vw["chargeState"]["powerDeliveryState"] == "PLUGGED_IN:INITIALIZING"
    assert vw["chargeState"]["chargeRate"] is None  # only while energy flows


def test_uncontrollable_vendor_has_no_charge_capability() -> None:
    with running_sim(vehicles=4) as sim:
        client = EnodeClient(sim, EnodeSpec.load())
        try:
            kia = next(
                v for v in client.get("/users/demo/vehicles").json()["data"] if v["vendor"] == "KIA"
            )
            assert kia["capabilities"]["startCharging"]["isCapable"] is False
            assert kia["capabilities"]["stopCharging"]["isCapable"] is False
            r = client.post(f"/vehicles/{kia['id']}/charging", {"action": "START"})
            assert r.status_code == 400
            assert "not capable" in r.json()["detail"]
        finally:
            client.close()


def test_get_vehicle_and_unknown_vehicle(sim: Sim, enode: EnodeClient) -> None:
    vid = sim.vehicle_ids()[0]
    r = enode.get(f"/vehicles/{vid}")
    assert r.status_code == 200
    assert r.json()["id"] == vid
    r = enode.get("/vehicles/does-not-exist")
    assert r.status_code == 404
    assert r.json()["type"] == "https://developers.enode.com/api/problems/not-found"
    assert "does-not-exist" in r.json()["detail"]


def test_pagination_walks_more_than_fifty_vehicles(spec: EnodeSpec) -> None:
    with running_sim(vehicles=123) as sim:
        client = EnodeClient(sim, spec)
        try:
            first = client.get("/vehicles").json()
            assert len(first["data"]) == 50  # the default page size
            assert first["pagination"]["before"] is None
            assert first["pagination"]["after"] is not None
            every = client.all_vehicles(page_size=50)
            ids = [v["id"] for v in every]
            assert len(ids) == 123
            assert len(set(ids)) == 123
            # Newest first: the pre-linked ids were listed oldest first.
            assert ids == list(reversed(sim.vehicle_ids()))
            assert client.all_vehicles("/users/demo/vehicles", page_size=7) == every

            # `before` walks back towards the newest.
            second = client.get(
                "/vehicles", params={"pageSize": 50, "after": first["pagination"]["after"]}
            ).json()
            assert [v["id"] for v in second["data"]] == ids[50:100]
            back = client.get(
                "/vehicles", params={"pageSize": 50, "before": second["pagination"]["before"]}
            ).json()
            assert [v["id"] for v in back["data"]] == ids[:50]
            assert back["pagination"]["before"] is None
            last = client.get(
                "/vehicles", params={"pageSize": 50, "after": second["pagination"]["after"]}
            ).json()
            assert [v["id"] for v in last["data"]] == ids[100:]
            assert last["pagination"]["after"] is None
        finally:
            client.close()


def test_pagination_errors(enode: EnodeClient) -> None:
    first = enode.get("/vehicles", params={"pageSize": 1}).json()
    cursor = first["pagination"]["after"]
    r = enode.get("/vehicles", params={"after": cursor, "before": cursor})
    assert r.status_code == 400
    assert "not both" in r.json()["detail"]
    for size in ("0", "-3", "ten", "1.5"):
        r = enode.get("/vehicles", params={"pageSize": size})
        assert r.status_code == 400, size
        assert r.json()["issues"][0]["path"] == ["pageSize"]
    r = enode.get("/vehicles", params={"after": "garbage"})
    assert r.status_code == 400
    assert "cursor" in r.json()["detail"]


def test_refresh_hint(sim: Sim, enode: EnodeClient) -> None:
    vid = sim.vehicle_ids()[0]
    r = enode.post(f"/vehicles/{vid}/refresh-hint")
    assert r.status_code == 204
    assert r.content == b""
    assert enode.post("/vehicles/nope/refresh-hint").status_code == 404


# ---- users -----------------------------------------------------------------------------------


def test_users_endpoints(sim: Sim, enode: EnodeClient) -> None:
    users = enode.get("/users").json()
    assert [u["id"] for u in users["data"]] == ["demo"]
    user = enode.get("/users/demo").json()
    assert {v["vendor"] for v in user["linkedVendors"]} == {"TESLA", "VOLKSWAGEN", "XPENG"}
    assert all(v["isValid"] and v["vendorType"] == "vehicle" for v in user["linkedVendors"])
    assert enode.get("/users/nobody").status_code == 404


def test_deauthorize_keeps_data_but_stops_updates(sim: Sim, enode: EnodeClient) -> None:
    vid = sim.vehicle_ids()[0]
    before = enode.get(f"/vehicles/{vid}").json()
    r = enode.request("DELETE", "/users/demo/authorization")
    assert r.status_code == 204
    assert enode.get("/users/demo").json()["linkedVendors"] == []
    sim.advance(1800)  # several refresh cycles, within the token's lifetime
    after = enode.get(f"/vehicles/{vid}").json()
    assert after["isReachable"] is False
    assert after["lastSeen"] == before["lastSeen"]


def test_delete_user_removes_everything(sim: Sim, enode: EnodeClient) -> None:
    assert enode.request("DELETE", "/users/demo").status_code == 204
    assert enode.get("/users/demo").status_code == 404
    assert enode.get("/vehicles").json()["data"] == []
    assert enode.get(f"/vehicles/{sim.vehicle_ids()[0]}").status_code == 404


# ---- health ----------------------------------------------------------------------------------


def test_vehicle_health(enode: EnodeClient) -> None:
    health = enode.get("/health/vehicles").json()
    by_vendor = {h["vendor"]: h for h in health}
    assert {"TESLA", "VOLKSWAGEN", "XPENG"} <= set(by_vendor)
    assert all(h["status"] == "READY" for h in health)
