"""Webhooks: management API, signed deliveries of every event kind, retries and deactivation."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import EnodeClient, Receiver, Sim

SECRET = "a-webhook-secret-of-reasonable-length"


def subscribe(enode: EnodeClient, receiver: Receiver, **extra: Any) -> dict[str, Any]:
    r = enode.post("/webhooks", {"url": receiver.url, "secret": SECRET, **extra})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def check_events(enode: EnodeClient, receiver: Receiver) -> None:
    """Every delivery is signed, identified, and every event matches the spec."""
    ids = set()
    for delivery in receiver.deliveries:
        assert delivery.signature_ok(SECRET)
        assert delivery.headers["content-type"] == "application/json"
        ids.add(delivery.headers["x-enode-delivery"])
        for event in delivery.events:
            enode.spec.validate_webhook_event(event)
    assert len(ids) == len(receiver.deliveries)


def test_webhook_management(enode: EnodeClient, receiver: Receiver) -> None:
    created = subscribe(
        enode,
        receiver,
        events=["user:vehicle:updated"],
        apiVersion="2024-10-01",
        authentication={"headerName": "x-api-key", "headerValue": "hunter2"},
    )
    assert created["isActive"] is True
    assert created["events"] == ["user:vehicle:updated"]
    assert created["authentication"] == {"headerName": "x-api-key"}
    assert "hunter2" not in str(created)
    assert "secret" not in created
    wid = created["id"]
    listed = enode.get("/webhooks").json()
    assert [w["id"] for w in listed["data"]] == [wid]
    assert enode.get(f"/webhooks/{wid}").json() == created
    patched = enode.request("PATCH", f"/webhooks/{wid}", json_body={"events": ["*"]}).json()
    assert patched["events"] == ["*"]
    r = enode.post("/webhooks", {"url": receiver.url, "secret": SECRET})
    assert r.status_code == 400
    assert r.json()["title"] == "Webhook already exists"
    assert enode.request("DELETE", f"/webhooks/{wid}").status_code == 204
    assert enode.get(f"/webhooks/{wid}").status_code == 404
    assert enode.request("DELETE", f"/webhooks/{wid}").status_code == 404


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"url": "http://x.example/h", "secret": "short"}, "secret"),
        ({"url": "ftp://x.example/h", "secret": SECRET}, "url"),
        ({"url": "http://x.example/h", "secret": SECRET, "events": ["car:exploded"]}, "events"),
        ({"url": "http://x.example/h", "secret": SECRET, "apiVersion": "2020-01-01"}, "2020"),
        (
            {
                "url": "http://x.example/h",
                "secret": SECRET,
                "authentication": {"headerName": "Bad Name", "headerValue": "v"},
            },
            "headerName",
        ),
        ({"secret": SECRET}, "url"),
    ],
)
def test_webhook_validation(enode: EnodeClient, body: dict[str, Any], needle: str) -> None:
    r = enode.post("/webhooks", body, check=False)
    assert r.status_code == 400
    enode.spec.validate_response("POST", "/webhooks", 400, r.json(), r.headers["content-type"])
    assert needle in r.text


def test_vehicle_lifecycle_events(sim: Sim, enode: EnodeClient, receiver: Receiver) -> None:
    subscribe(enode, receiver)
    r = sim.admin_call("POST", "/enode/vehicles", {"userId": "demo", "vendor": "POLESTAR"})
    assert r.status_code == 201
    vid = r.json()["id"]
    discovered = receiver.wait_for(lambda e: e["event"] == "user:vehicle:discovered")
    assert discovered[0]["vehicle"]["id"] == vid
    assert discovered[0]["user"] == {"id": "demo"}
    assert discovered[0]["version"] == "2024-10-01"

    sim.admin_call("PUT", f"/enode/vehicles/{vid}/battery", {"level": 33})
    sim.advance(8 * 60)
    updated = receiver.wait_for(
        lambda e: e["event"] == "user:vehicle:updated" and e["vehicle"]["id"] == vid
    )
    assert "chargeState.batteryLevel" in updated[0]["updatedFields"]
    assert "lastSeen" not in updated[0]["updatedFields"]  # timestamps alone are not news
    assert updated[0]["vehicle"]["chargeState"]["batteryLevel"] == 33

    assert sim.admin_call("DELETE", f"/enode/vehicles/{vid}").status_code == 204
    deleted = receiver.wait_for(lambda e: e["event"] == "user:vehicle:deleted")
    assert deleted[0]["vehicle"]["id"] == vid
    check_events(enode, receiver)


def test_action_and_credential_events(sim: Sim, enode: EnodeClient, receiver: Receiver) -> None:
    subscribe(enode, receiver)
    tesla = sim.vehicle_ids()[0]
    sim.admin_call("POST", f"/enode/vehicles/{tesla}/plug-in", {"startCharging": False})
    sim.refresh(tesla)
    action = enode.post(f"/vehicles/{tesla}/charging", {"action": "START"}).json()
    sim.advance(130)
    states = [
        e["vendorAction"]["state"]
        for e in receiver.wait_for(
            lambda e: (
                e["event"] == "user:vendor-action:updated"
                and e["vendorAction"]["state"] == "CONFIRMED"
            )
        )
    ]
    assert states == ["CONFIRMED"]
    trail = [
        e["vendorAction"]["state"]
        for e in receiver.events()
        if e["event"] == "user:vendor-action:updated" and e["vendorAction"]["id"] == action["id"]
    ]
    assert trail == ["PENDING", "CONFIRMED"]

    r = sim.admin_call("POST", "/enode/users/demo/invalidate-credentials", {"vendor": "TESLA"})
    assert r.json() == {"invalidated": ["TESLA"]}
    invalid = receiver.wait_for(lambda e: e["event"] == "user:credentials:invalidated")
    assert invalid[0]["vendor"] == "TESLA"
    assert invalid[0]["user"]["id"] == "demo"
    check_events(enode, receiver)


def test_heartbeat(sim: Sim, enode: EnodeClient, receiver: Receiver) -> None:
    subscribe(enode, receiver)
    sim.advance(5 * 60)
    beats = receiver.wait_for(lambda e: e["event"] == "system:heartbeat")
    assert beats[0]["pendingEvents"] >= 0
    check_events(enode, receiver)


def test_events_filter(sim: Sim, enode: EnodeClient, receiver: Receiver) -> None:
    subscribe(enode, receiver, events=["user:vehicle:deleted"])
    vid = sim.vehicle_ids()[0]
    sim.admin_call("PUT", f"/enode/vehicles/{vid}/battery", {"level": 11})
    sim.advance(10 * 60)
    sim.admin_call("DELETE", f"/enode/vehicles/{vid}")
    receiver.wait_for(lambda e: e["event"] == "user:vehicle:deleted")
    # Heartbeats are system events: every active webhook gets them, whatever its filter.
    assert {e["event"] for e in receiver.events()} == {"user:vehicle:deleted", "system:heartbeat"}


def test_auth_header_is_sent(sim: Sim, enode: EnodeClient, receiver: Receiver) -> None:
    subscribe(enode, receiver, authentication={"headerName": "x-api-key", "headerValue": "k-1"})
    sim.admin_call("DELETE", f"/enode/vehicles/{sim.vehicle_ids()[0]}")
    receiver.wait_deliveries(1)
    assert receiver.deliveries[0].headers["x-api-key"] == "k-1"


def test_failed_delivery_is_retried_with_backoff(
    sim: Sim, enode: EnodeClient, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503]
    webhook = subscribe(enode, receiver)
    sim.admin_call("DELETE", f"/enode/vehicles/{sim.vehicle_ids()[0]}")
    receiver.wait_deliveries(1)
    sim.advance(5)
    assert len(receiver.deliveries) == 1  # first retry waits 10 s
    sim.advance(5)
    receiver.wait_deliveries(2)
    sim.advance(29)
    assert len(receiver.deliveries) == 2  # second retry waits 30 s more
    sim.advance(1)
    receiver.wait_deliveries(3)
    bodies = {d.body for d in receiver.deliveries}
    assert len(bodies) == 1, "each retry carries the same events"
    assert receiver.deliveries[0].events[0]["event"] == "user:vehicle:deleted"
    state = enode.get(f"/webhooks/{webhook['id']}").json()
    assert state["isActive"] is True
    assert state["lastSuccess"] > webhook["lastSuccess"]
    log = sim.admin_call("GET", "/enode/webhook-deliveries").json()
    assert [entry["status"] for entry in log] == [500, 503, 200]


def test_repeated_failures_deactivate_and_test_reactivates(
    sim: Sim, enode: EnodeClient, receiver: Receiver
) -> None:
    receiver.statuses = [500] * 5
    webhook = subscribe(enode, receiver)
    sim.admin_call("DELETE", f"/enode/vehicles/{sim.vehicle_ids()[0]}")
    receiver.wait_deliveries(1)
    for wait in (10, 30, 90, 270):
        sim.advance(wait)
    receiver.wait_deliveries(5)
    assert enode.get(f"/webhooks/{webhook['id']}").json()["isActive"] is False

    # An inactive webhook gets nothing.
    sim.admin_call("DELETE", f"/enode/vehicles/{sim.vehicle_ids()[1]}")
    sim.advance(900)
    assert len(receiver.deliveries) == 5

    result = enode.post(f"/webhooks/{webhook['id']}/test").json()
    assert result["status"] == "SUCCESS"
    assert result["response"]["code"] == 200
    assert receiver.deliveries[-1].events[0]["event"] == "enode:webhook:test"
    assert receiver.deliveries[-1].signature_ok(SECRET)
    assert enode.get(f"/webhooks/{webhook['id']}").json()["isActive"] is True

    sim.admin_call("DELETE", f"/enode/vehicles/{sim.vehicle_ids()[2]}")
    receiver.wait_for(
        lambda e: (
            e["event"] == "user:vehicle:deleted" and e["vehicle"]["id"] == sim.vehicle_ids()[2]
        )
    )


def test_test_endpoint_reports_failure(sim: Sim, enode: EnodeClient, receiver: Receiver) -> None:
    receiver.statuses = [418]
    webhook = subscribe(enode, receiver)
    result = enode.post(f"/webhooks/{webhook['id']}/test").json()
    assert result["status"] == "FAILURE"
    assert result["response"]["code"] == 418
    gone = enode.post("/webhooks", {"url": "http://127.0.0.1:9/nothing", "secret": SECRET}).json()
    result = enode.post(f"/webhooks/{gone['id']}/test").json()
    assert result["status"] == "FAILURE"
    assert result["response"] is None


def test_no_events_for_deauthorized_user(sim: Sim, enode: EnodeClient, receiver: Receiver) -> None:
    subscribe(enode, receiver, events=["user:vehicle:updated", "user:vehicle:deleted"])
    assert enode.request("DELETE", "/users/demo/authorization").status_code == 204
    sim.admin_call("DELETE", f"/enode/vehicles/{sim.vehicle_ids()[0]}")
    sim.advance(20 * 60)
    receiver.wait_for(lambda e: e["event"] == "system:heartbeat")
    assert [e for e in receiver.events() if e["event"] != "system:heartbeat"] == []


def test_unknown_webhook_is_404_everywhere(enode: EnodeClient) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    assert enode.get(f"/webhooks/{missing}").status_code == 404
    r = enode.request("PATCH", f"/webhooks/{missing}", json_body={"events": ["*"]})
    assert r.status_code == 404
    assert enode.post(f"/webhooks/{missing}/test").status_code == 404
    assert enode.request("DELETE", f"/webhooks/{missing}").status_code == 404


def test_a_failing_event_does_not_hold_up_later_ones(
    sim: Sim, enode: EnodeClient, receiver: Receiver
) -> None:
    receiver.statuses = [500]
    subscribe(enode, receiver, events=["user:vehicle:deleted"])
    first, second = sim.vehicle_ids()[:2]
    sim.admin_call("DELETE", f"/enode/vehicles/{first}")
    receiver.wait_deliveries(1)
    # Within the first event's 10 s backoff: the second goes out at once, on its own.
    sim.admin_call("DELETE", f"/enode/vehicles/{second}")
    receiver.wait_deliveries(2)
    assert [e["vehicle"]["id"] for e in receiver.deliveries[1].events] == [second]
    sim.advance(10)
    receiver.wait_deliveries(3)
    assert [e["vehicle"]["id"] for e in receiver.deliveries[2].events] == [first]
    check_events(enode, receiver)


def test_paused_deliveries_queue_up_and_send_no_heartbeat(
    sim: Sim, enode: EnodeClient, receiver: Receiver
) -> None:
    subscribe(enode, receiver, events=["user:vehicle:deleted"])
    assert sim.admin_call("PUT", "/enode/webhook-delivery", {"paused": True}).json() == {
        "paused": True
    }
    gone = sim.vehicle_ids()[0]
    sim.admin_call("DELETE", f"/enode/vehicles/{gone}")
    sim.advance(20 * 60)  # four heartbeats' worth
    sim.admin_call("GET", "/enode/webhook-deliveries")  # a request: the dispatcher had its turn
    assert receiver.deliveries == []
    sim.admin_call("PUT", "/enode/webhook-delivery", {"paused": False})
    receiver.wait_for(lambda e: e["event"] == "user:vehicle:deleted")
    assert [e["event"] for e in receiver.events()] == ["user:vehicle:deleted"]
    sim.advance(5 * 60)
    receiver.wait_for(lambda e: e["event"] == "system:heartbeat")  # and they come back
    check_events(enode, receiver)


def test_no_heartbeat_is_queued_for_a_failing_webhook(
    sim: Sim, enode: EnodeClient, receiver: Receiver
) -> None:
    receiver.statuses = [500, 500]
    subscribe(enode, receiver, events=["user:vehicle:deleted"])
    sim.admin_call("DELETE", f"/enode/vehicles/{sim.vehicle_ids()[0]}")
    receiver.wait_deliveries(1)
    sim.advance(10)
    receiver.wait_deliveries(2)  # the retry failed too: 30 s to the next
    sim.advance(5 * 60 - 10)  # a heartbeat falls due while the webhook is failing
    receiver.wait_deliveries(3)  # the retry, which gets through
    assert [e["event"] for e in receiver.events()] == ["user:vehicle:deleted"] * 3
