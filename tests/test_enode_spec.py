"""Tests for ``enode_spec``, the validator that checks bodies against the Enode OpenAPI spec.

Sample bodies are written by hand from the field list in ``shared/reference/enode.md`` (§5);
nothing is copied from the (commercially licensed) spec file.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from jsonschema import Draft202012Validator

from tests.enode_spec import ENV_VAR, SPEC_PATH, EnodeSpec, SpecError
from tests.support import EnodeClient, running_receiver, running_sim

VEHICLE_ID = "veh-0001"
ACTION_ID = "4c6d1a8e-3f2b-4d5e-9a7b-0c1d2e3f4a5b"
LOCATION_ID = "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


@pytest.fixture(scope="module")
def spec() -> EnodeSpec:
    return EnodeSpec.load()


def capability(*, capable: bool = True) -> dict[str, Any]:
    return {"isCapable": capable, "interventionIds": []}


def make_vehicle() -> dict[str, Any]:
    """Return a complete 2024-10-01 vehicle, as GET /vehicles/{vehicleId} returns it."""
    return {
        "id": VEHICLE_ID,
        "userId": "user-42",
        "vendor": "TESLA",
        "lastSeen": "2024-11-02T08:15:00.000Z",
        "isReachable": True,
        "information": {
            "vin": "5YJ3E7EB2KF000001",
            "brand": "Tesla",
            "model": "Model 3",
            "year": 2019,
            "displayName": None,
        },
        "chargeState": {
            "batteryLevel": 64,
            "range": 290.5,
            "isPluggedIn": True,
            "isCharging": True,
            "isFullyCharged": False,
            "batteryCapacity": 57.5,
            "chargeLimit": None,
            "chargeRate": 7.2,
            "chargeTimeRemaining": 95,
            "lastUpdated": "2024-11-02T08:14:30Z",
            "maxCurrent": 16,
            "powerDeliveryState": "PLUGGED_IN:CHARGING",
            "pluggedInChargerId": None,
        },
        "smartChargingPolicy": {"isEnabled": False, "deadline": None, "minimumChargeLimit": 0},
        "location": {
            "id": LOCATION_ID,
            "longitude": 10.75,
            "latitude": 59.91,
            "lastUpdated": "2024-11-02T08:10:00+01:00",
        },
        "odometer": {"distance": 48213.4, "lastUpdated": "2024-11-02T08:10:00Z"},
        "capabilities": {
            name: capability()
            for name in (
                "information",
                "chargeState",
                "location",
                "odometer",
                "setMaxCurrent",
                "startCharging",
                "stopCharging",
                "smartCharging",
            )
        },
        "scopes": ["vehicle:read:data", "vehicle:read:location", "vehicle:control:charging"],
    }


def make_charge_action(**changes: Any) -> dict[str, Any]:
    action: dict[str, Any] = {
        "id": ACTION_ID,
        "userId": "user-42",
        "createdAt": "2024-11-02T08:00:00Z",
        "updatedAt": "2024-11-02T08:05:00Z",
        "completedAt": "2024-11-02T08:05:00Z",
        "state": "FAILED",
        "targetId": VEHICLE_ID,
        "targetType": "vehicle",
        "kind": "START",
        "failureReason": {"type": "NO_RESPONSE", "detail": "The vehicle did not wake up."},
    }
    action.update(changes)
    return action


def problem(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "https://example.test/problems/unauthorized",
        "title": "Unauthorized",
        "detail": "The access token is missing or expired.",
    }
    body.update(changes)
    return body


def get_vehicle(spec: EnodeSpec, body: Any) -> None:
    spec.validate_response("GET", f"/vehicles/{VEHICLE_ID}", 200, body)


# --------------------------------------------------------------------------- loading


def test_load_is_cached_per_process(spec: EnodeSpec) -> None:
    assert EnodeSpec.load() is spec
    assert EnodeSpec.load(SPEC_PATH) is spec


def test_env_var_overrides_the_spec_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(tiny_spec({"Thing": {"type": "object"}})))
    monkeypatch.setenv(ENV_VAR, str(path))
    loaded = EnodeSpec.load()
    assert loaded.path == path.resolve()
    assert loaded.match_path("GET", "/things/1") == "/things/{id}"


def test_missing_spec_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere" / "enode.json"
    monkeypatch.setenv(ENV_VAR, str(missing))
    with pytest.raises(FileNotFoundError, match="Enode OpenAPI spec not found") as info:
        EnodeSpec.load()
    assert str(missing) in str(info.value)
    assert ENV_VAR in str(info.value)


def test_every_schema_in_the_spec_normalises_to_valid_json_schema(spec: EnodeSpec) -> None:
    """All allOf in the spec merge without conflict and give valid 2020-12 schemas."""
    defs: dict[str, Any] = {}
    checked = 0
    for template, item in spec.raw["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            for status in op["responses"]:
                schema = spec.response_schema(method, template, int(status))
                if schema is not None:
                    defs = schema.pop("$defs")
                    Draft202012Validator.check_schema(schema)
                    checked += 1
            request = spec.request_schema(method, template)
            if request is not None:
                request.pop("$defs")
                Draft202012Validator.check_schema(request)
    for event in spec.raw["webhooks"]:
        webhook = spec.webhook_schema(event)
        webhook.pop("$defs")
        Draft202012Validator.check_schema(webhook)
    Draft202012Validator.check_schema({"$defs": defs})
    assert checked > 100
    assert len(defs) == len(spec.raw["components"]["schemas"])
    assert not any('"allOf"' in json.dumps(schema) for schema in defs.values())


# --------------------------------------------------------------------------- match_path


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("GET", "/vehicles/abc-123", "/vehicles/{vehicleId}"),
        ("get", "/vehicles", "/vehicles"),
        ("GET", "/vehicles?pageSize=50&after=abc", "/vehicles"),
        ("GET", "/vehicles/abc-123?x=1", "/vehicles/{vehicleId}"),
        ("GET", "/vehicles/actions/x", "/vehicles/actions/{actionId}"),
        ("POST", "/vehicles/actions/x/cancel", "/vehicles/actions/{actionId}/cancel"),
        ("POST", "/vehicles/abc/charging", "/vehicles/{vehicleId}/charging"),
        ("GET", "/users/u1/vehicles", "/users/{userId}/vehicles"),
        ("DELETE", "/users/u1/vendors/TESLA", "/users/{userId}/vendors/{vendor}"),
        ("GET", "https://enode-api.sandbox.enode.io/vehicles/v9", "/vehicles/{vehicleId}"),
    ],
)
def test_match_path(spec: EnodeSpec, method: str, path: str, template: str) -> None:
    assert spec.match_path(method, path) == template


def test_match_path_literal_segment_wins_over_template(spec: EnodeSpec) -> None:
    # Both templates serve GET and match; "actions" is literal in the first one.
    path = "/vehicles/actions/smart-charging-status"
    assert spec.match_path("GET", path) == "/vehicles/actions/{actionId}"
    # Only the method decides when just one of the matching templates serves it.
    assert spec.match_path("POST", "/vehicles/actions/charging") == (
        "/vehicles/{vehicleId}/charging"
    )


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("GET", "/cars/abc", "no path in the Enode spec matches"),
        ("GET", "/vehicles/abc/unknown", "no path in the Enode spec matches"),
        ("GET", "/vehicles//charging", "no path in the Enode spec matches"),
        ("DELETE", "/vehicles/abc", "method not in the Enode spec"),
    ],
)
def test_match_path_rejects(spec: EnodeSpec, method: str, path: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec.match_path(method, path)


# --------------------------------------------------------------------------- vehicles


def test_valid_vehicle_passes(spec: EnodeSpec) -> None:
    get_vehicle(spec, make_vehicle())


def test_vehicle_with_extra_property_fails(spec: EnodeSpec) -> None:
    vehicle = make_vehicle()
    vehicle["nickname"] = "Batmobile"
    with pytest.raises(SpecError, match=r"\$: Additional properties are not allowed"):
        get_vehicle(spec, vehicle)


def test_vehicle_with_extra_nested_property_fails(spec: EnodeSpec) -> None:
    vehicle = make_vehicle()
    vehicle["chargeState"]["chargingLocationId"] = LOCATION_ID  # the 1.x field
    with pytest.raises(SpecError, match=r"\$\.chargeState: Additional properties"):
        get_vehicle(spec, vehicle)


def test_vehicle_without_location_fails(spec: EnodeSpec) -> None:
    vehicle = make_vehicle()
    del vehicle["location"]
    with pytest.raises(SpecError, match="'location' is a required property"):
        get_vehicle(spec, vehicle)


def test_vehicle_location_without_id_fails(spec: EnodeSpec) -> None:
    """``location.id`` comes from the second allOf part: merged, it is required too."""
    vehicle = make_vehicle()
    del vehicle["location"]["id"]
    with pytest.raises(SpecError, match=r"\$\.location: 'id' is a required property"):
        get_vehicle(spec, vehicle)


def test_vehicle_location_may_be_all_null(spec: EnodeSpec) -> None:
    vehicle = make_vehicle()
    vehicle["location"] = dict.fromkeys(("id", "longitude", "latitude", "lastUpdated"))
    get_vehicle(spec, vehicle)


def test_wrong_power_delivery_state_fails(spec: EnodeSpec) -> None:
    vehicle = make_vehicle()
    vehicle["chargeState"]["powerDeliveryState"] = "CHARGING"
    with pytest.raises(SpecError) as info:
        get_vehicle(spec, vehicle)
    message = str(info.value)
    assert message.startswith("GET /vehicles/{vehicleId} -> 200:")
    assert "$.chargeState.powerDeliveryState: 'CHARGING' is not one of" in message


def test_every_error_is_listed_with_its_path(spec: EnodeSpec) -> None:
    vehicle = make_vehicle()
    vehicle["chargeState"]["batteryLevel"] = "64"
    vehicle["capabilities"]["startCharging"]["isCapable"] = "yes"
    del vehicle["odometer"]["distance"]
    with pytest.raises(SpecError) as info:
        get_vehicle(spec, vehicle)
    message = str(info.value)
    assert "(3 error(s))" in message
    assert "$.capabilities.startCharging.isCapable: 'yes' is not of type 'boolean'" in message
    assert "$.chargeState.batteryLevel: '64' is not of type 'number', 'null'" in message
    assert "$.odometer: 'distance' is a required property" in message


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2024-11-02",
        "2024-11-02T08:15:00",  # no offset: not RFC 3339
        "2024-11-02T08:15Z",  # no seconds
        "2024-02-30T08:15:00Z",  # no such day
        "2024-11-02T25:15:00Z",
        "2024-11-02T08:15:00+0100",
    ],
)
def test_bad_date_time_fails(spec: EnodeSpec, value: str) -> None:
    vehicle = make_vehicle()
    vehicle["lastSeen"] = value
    with pytest.raises(SpecError, match=r"\$\.lastSeen: .* is not a 'date-time'"):
        get_vehicle(spec, vehicle)


@pytest.mark.parametrize(
    "value",
    [
        "2024-11-02T08:15:00Z",
        "2024-11-02T08:15:00.123Z",
        "2024-11-02T08:15:00.123456789+00:00",
        "2024-11-02T09:15:00+01:00",
        "2024-11-02t08:15:00z",
    ],
)
def test_good_date_time_passes(spec: EnodeSpec, value: str) -> None:
    vehicle = make_vehicle()
    vehicle["lastSeen"] = value
    get_vehicle(spec, vehicle)


@pytest.mark.parametrize(
    "value",
    ["not-a-uuid", "9b8a7c6d5e4f4a3b8c2d1e0f9a8b7c6d", "{9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d}"],
)
def test_bad_uuid_fails(spec: EnodeSpec, value: str) -> None:
    vehicle = make_vehicle()
    vehicle["location"]["id"] = value
    with pytest.raises(SpecError, match=r"\$\.location\.id: .* is not a 'uuid'"):
        get_vehicle(spec, vehicle)


def test_smart_charging_deadline_pattern(spec: EnodeSpec) -> None:
    vehicle = make_vehicle()
    vehicle["smartChargingPolicy"]["deadline"] = "07:30"
    get_vehicle(spec, vehicle)
    vehicle["smartChargingPolicy"]["deadline"] = "7:30"
    with pytest.raises(SpecError, match=r"\$\.smartChargingPolicy\.deadline"):
        get_vehicle(spec, vehicle)


def test_brand_is_nullable_through_the_allof_idiom(spec: EnodeSpec) -> None:
    """``brand`` = allOf[string, [string, null]]: the spec's way of writing a nullable field."""
    vehicle = make_vehicle()
    vehicle["information"]["brand"] = None
    get_vehicle(spec, vehicle)
    vehicle["information"]["brand"] = 7
    with pytest.raises(SpecError, match=r"\$\.information\.brand: 7 is not of type"):
        get_vehicle(spec, vehicle)


@pytest.mark.parametrize(
    "cursors",
    [
        {"after": "MjAyNC0xMS0wMlQwODoxNTowMFo", "before": None},
        {"after": None, "before": None},
        {"after": "bmV4dA", "before": "cHJldg"},
    ],
)
def test_vehicle_list_pagination_cursors(spec: EnodeSpec, cursors: dict[str, Any]) -> None:
    body = {"data": [make_vehicle(), make_vehicle()], "pagination": cursors}
    spec.validate_response("GET", "/vehicles?pageSize=2", 200, body)
    spec.validate_response("GET", "/users/user-42/vehicles", 200, body)


@pytest.mark.parametrize(
    ("cursors", "error"),
    [
        ({"after": None}, r"\$\.pagination: 'before' is a required property"),
        ({"after": 2, "before": None}, r"\$\.pagination\.after: 2 is not of type"),
        ({"after": None, "before": None, "next": None}, r"\$\.pagination: Additional"),
    ],
)
def test_bad_pagination_cursors_fail(spec: EnodeSpec, cursors: dict[str, Any], error: str) -> None:
    with pytest.raises(SpecError, match=error):
        spec.validate_response("GET", "/vehicles", 200, {"data": [], "pagination": cursors})


def test_vehicle_list_items_need_location(spec: EnodeSpec) -> None:
    vehicle = make_vehicle()
    del vehicle["location"]
    body = {"data": [make_vehicle(), vehicle], "pagination": {"after": None, "before": None}}
    with pytest.raises(SpecError, match=r"\$\.data\[1\]: 'location' is a required property"):
        spec.validate_response("GET", "/vehicles", 200, body)


# --------------------------------------------------------------------------- actions


def test_charging_action_response_passes(spec: EnodeSpec) -> None:
    spec.validate_response("POST", f"/vehicles/{VEHICLE_ID}/charging", 200, make_charge_action())
    pending = make_charge_action(failureReason=None, completedAt=None)
    spec.validate_response("POST", f"/vehicles/{VEHICLE_ID}/charging", 200, pending)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"kind": "PAUSE"}, r"\$\.kind: 'PAUSE' is not one of"),
        ({"state": "DONE"}, r"\$\.state: 'DONE' is not one of"),
        ({"id": "action-1"}, r"\$\.id: 'action-1' is not a 'uuid'"),
        ({"completedAt": "soon"}, r"\$\.completedAt: 'soon' is not a 'date-time'"),
        ({"failureReason": "late"}, r"\$\.failureReason: 'late' is not of type"),
    ],
)
def test_bad_charging_action_fails(spec: EnodeSpec, changes: dict[str, Any], error: str) -> None:
    with pytest.raises(SpecError, match=error):
        spec.validate_response("POST", "/vehicles/v1/charging", 200, make_charge_action(**changes))


def test_vehicle_action_is_any_of_two_shapes(spec: EnodeSpec) -> None:
    path = f"/vehicles/actions/{ACTION_ID}"
    charge = make_charge_action()
    spec.validate_response("GET", path, 200, charge)
    max_current = make_charge_action(targetState={"maxCurrent": 10})
    del max_current["kind"]
    spec.validate_response("GET", path, 200, max_current)

    both = make_charge_action(targetState={"maxCurrent": 10})
    with pytest.raises(SpecError) as info:
        spec.validate_response("GET", path, 200, both)
    message = str(info.value)
    assert "$: matches none of the anyOf branches" in message
    assert "anyOf[0] Charge Action" in message
    assert "anyOf[1] Max Current Action" in message
    assert "('targetState' was unexpected)" in message
    assert "('kind' was unexpected)" in message


def test_documented_problem_response(spec: EnodeSpec) -> None:
    path = "/vehicles/v1/charging"
    spec.validate_response("POST", path, 422, problem(title="Unprocessable"), "application/json")
    with pytest.raises(SpecError, match="'detail' is a required property"):
        spec.validate_response("POST", path, 400, {"type": "x", "title": "Bad"})
    with pytest.raises(SpecError, match="is not JSON"):
        spec.validate_response("POST", path, 400, problem(), "text/html; charset=utf-8")


# --------------------------------------------------------------------------- statuses


def test_undocumented_401_with_problem_passes(spec: EnodeSpec) -> None:
    spec.validate_response("GET", "/vehicles/v1", 401, problem())
    spec.validate_response(
        "GET", "/vehicles/v1", 401, problem(), "application/problem+json; charset=utf-8"
    )
    spec.validate_response("GET", "/vehicles", 500, problem(title="Internal Server Error"))


def test_undocumented_401_without_title_fails(spec: EnodeSpec) -> None:
    body = problem()
    del body["title"]
    with pytest.raises(SpecError) as info:
        spec.validate_response("GET", "/vehicles/v1", 401, body)
    assert str(info.value).startswith("GET /vehicles/{vehicleId} -> 401 (Problem):")
    assert "$: 'title' is a required property" in str(info.value)


def test_undocumented_error_must_be_problem_json(spec: EnodeSpec) -> None:
    with pytest.raises(SpecError, match="must be application/problem\\+json"):
        spec.validate_response("GET", "/vehicles/v1", 401, problem(), "application/json")


def test_bare_documented_404_is_a_problem(spec: EnodeSpec) -> None:
    path = f"/vehicles/actions/{ACTION_ID}"
    spec.validate_response("GET", path, 404, problem(title="Not Found"))
    with pytest.raises(SpecError, match="'type' is a required property"):
        spec.validate_response("GET", path, 404, {"title": "Not Found", "detail": "gone"})
    with pytest.raises(SpecError, match="is not of type 'object'"):
        spec.validate_response("GET", path, 404, None)


def test_no_content_204(spec: EnodeSpec) -> None:
    path = f"/vehicles/{VEHICLE_ID}/refresh-hint"
    spec.validate_response("POST", path, 204, None)
    spec.validate_response("POST", path, 204, b"")
    with pytest.raises(SpecError, match="documented without a body"):
        spec.validate_response("POST", path, 204, {})


def test_undocumented_2xx_fails(spec: EnodeSpec) -> None:
    with pytest.raises(SpecError, match=r"-> 201: status not documented \(documented: 200"):
        spec.validate_response("POST", "/vehicles/v1/charging", 201, make_charge_action())
    with pytest.raises(SpecError, match="status not documented"):
        spec.response_schema("GET", "/vehicles/{vehicleId}", 204)


def test_response_schema(spec: EnodeSpec) -> None:
    schema = spec.response_schema("GET", "/vehicles/{vehicleId}", 200)
    assert schema is not None
    assert schema["additionalProperties"] is False
    assert {"location", "chargeState", "id"} <= set(schema["required"])
    assert spec.response_schema("POST", "/vehicles/{vehicleId}/refresh-hint", 204) is None
    with pytest.raises(SpecError, match="no such operation"):
        spec.response_schema("PATCH", "/vehicles/{vehicleId}", 200)


# --------------------------------------------------------------------------- requests


def test_charging_request(spec: EnodeSpec) -> None:
    path = f"/vehicles/{VEHICLE_ID}/charging"
    spec.validate_request("POST", path, {"action": "START"})
    spec.validate_request("POST", path, {"action": "STOP"})
    with pytest.raises(SpecError, match=r"\$\.action: 'PAUSE' is not one of"):
        spec.validate_request("POST", path, {"action": "PAUSE"})
    with pytest.raises(SpecError, match="Additional properties"):
        spec.validate_request("POST", path, {"action": "START", "force": True})
    with pytest.raises(SpecError, match="'action' is a required property"):
        spec.validate_request("POST", path, {})


def test_max_current_request(spec: EnodeSpec) -> None:
    path = f"/vehicles/{VEHICLE_ID}/max-current"
    spec.validate_request("POST", path, {"maxCurrent": 16})
    with pytest.raises(SpecError, match="less than or equal to the minimum of 0"):
        spec.validate_request("POST", path, {"maxCurrent": 0})


def test_request_body_on_an_operation_without_one_fails(spec: EnodeSpec) -> None:
    spec.validate_request("GET", "/vehicles", None)
    with pytest.raises(SpecError, match="takes no body"):
        spec.validate_request("GET", "/vehicles", {"pageSize": 10})


# --------------------------------------------------------------------------- webhooks


def heartbeat(pending: float) -> dict[str, Any]:
    return {
        "event": "system:heartbeat",
        "createdAt": "2024-11-02T08:15:00.000Z",
        "version": "2024-10-01",
        "pendingEvents": pending,
    }


def test_heartbeat_webhook_passes(spec: EnodeSpec) -> None:
    spec.validate_webhook_event(heartbeat(0))
    spec.validate_webhook_event(heartbeat(12))


def test_heartbeat_with_negative_pending_events_fails(spec: EnodeSpec) -> None:
    with pytest.raises(SpecError) as info:
        spec.validate_webhook_event(heartbeat(-1))
    assert str(info.value).startswith("webhook system:heartbeat:")
    assert "$.pendingEvents: -1 is less than the minimum of 0" in str(info.value)


def test_vehicle_updated_webhook(spec: EnodeSpec) -> None:
    event: dict[str, Any] = {
        "event": "user:vehicle:updated",
        "createdAt": "2024-11-02T08:15:01Z",
        "version": "2024-10-01",
        "user": {"id": "user-42"},
        "vehicle": make_vehicle(),
        "updatedFields": ["chargeState.batteryLevel"],
    }
    spec.validate_webhook_event(event)
    broken = copy.deepcopy(event)
    del broken["vehicle"]["location"]
    with pytest.raises(SpecError, match=r"\$\.vehicle: 'location' is a required property"):
        spec.validate_webhook_event(broken)


def test_unknown_or_missing_webhook_event_fails(spec: EnodeSpec) -> None:
    with pytest.raises(SpecError, match="'user:car:updated' is not in the Enode spec"):
        spec.validate_webhook_event({"event": "user:car:updated"})
    with pytest.raises(SpecError, match="no string 'event' field"):
        spec.validate_webhook_event({"createdAt": "2024-11-02T08:15:01Z"})


# --------------------------------------------------------------------------- merge rules


def tiny_spec(schemas: dict[str, Any], response: Any = None) -> dict[str, Any]:
    """Return a minimal hand-written OpenAPI 3.1 document with one operation."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "tiny", "version": "0"},
        "paths": {
            "/things/{id}": {
                "get": {
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {
                                "application/json": {
                                    "schema": response or {"$ref": "#/components/schemas/Thing"}
                                }
                            },
                        }
                    }
                }
            }
        },
        "components": {"schemas": schemas},
        "webhooks": {},
    }


def load_tiny(tmp_path: Path, schemas: dict[str, Any], response: Any = None) -> EnodeSpec:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(tiny_spec(schemas, response)))
    return EnodeSpec.load(path)


def strict_object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def test_merge_unions_properties_and_required_and_keeps_strictness(tmp_path: Path) -> None:
    tiny = load_tiny(
        tmp_path,
        {
            "Base": strict_object({"a": {"type": "string"}}, ["a"]),
            "Thing": {
                "allOf": [
                    {"$ref": "#/components/schemas/Base"},
                    {},
                    {"description": "annotation-only part"},
                    strict_object({"b": {"type": "integer"}}, ["b"]),
                    {"type": "object", "additionalProperties": True},  # false still wins
                ]
            },
        },
    )
    tiny.validate_response("GET", "/things/1", 200, {"a": "x", "b": 1})
    with pytest.raises(SpecError, match="'b' is a required property"):
        tiny.validate_response("GET", "/things/1", 200, {"a": "x"})
    with pytest.raises(SpecError, match="'a' is a required property"):
        tiny.validate_response("GET", "/things/1", 200, {"b": 1})
    with pytest.raises(SpecError, match=r"\('c' was unexpected\)"):
        tiny.validate_response("GET", "/things/1", 200, {"a": "x", "b": 1, "c": 2})


def test_merge_is_recursive_and_intersects_types(tmp_path: Path) -> None:
    tiny = load_tiny(
        tmp_path,
        {
            "Inner": strict_object({"x": {"type": ["number", "null"]}}, ["x"]),
            "Outer": strict_object({"inner": {"$ref": "#/components/schemas/Inner"}}, ["inner"]),
            "Thing": {
                "type": "array",
                "items": {
                    "anyOf": [
                        {
                            "allOf": [
                                {"$ref": "#/components/schemas/Outer"},
                                strict_object(
                                    {
                                        "inner": {
                                            "allOf": [
                                                {"$ref": "#/components/schemas/Inner"},
                                                strict_object({"y": {"type": "string"}}, ["y"]),
                                            ]
                                        },
                                        "n": {"allOf": [{"type": "number"}, {"type": "integer"}]},
                                    },
                                    [],
                                ),
                            ]
                        },
                        {"type": "string"},
                    ]
                },
            },
        },
    )
    tiny.validate_response(
        "GET", "/things/1", 200, ["s", {"inner": {"x": None, "y": "ok"}, "n": 2}]
    )
    with pytest.raises(SpecError, match=r"\$\[0\]\.inner: 'y' is a required property"):
        tiny.validate_response("GET", "/things/1", 200, [{"inner": {"x": 1}}])
    with pytest.raises(SpecError, match=r"\$\[0\]\.n: 2\.5 is not of type 'integer'"):
        tiny.validate_response("GET", "/things/1", 200, [{"inner": {"x": 1, "y": ""}, "n": 2.5}])


def test_recursive_refs_are_fine_outside_allof(tmp_path: Path) -> None:
    node = strict_object(
        {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
        },
        ["name"],
    )
    tiny = load_tiny(
        tmp_path,
        {
            "Node": node,
            "Thing": {"allOf": [{"$ref": "#/components/schemas/Node"}, {"required": ["children"]}]},
        },
    )
    leaf: dict[str, Any] = {"name": "b"}
    tree = {"name": "root", "children": [{"name": "a", "children": [leaf]}]}
    tiny.validate_response("GET", "/things/1", 200, tree)
    leaf["name"] = 3
    with pytest.raises(SpecError, match=r"\$\.children\[0\]\.children\[0\]\.name"):
        tiny.validate_response("GET", "/things/1", 200, tree)


def test_allof_that_inlines_itself_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="inline a schema that contains itself: Thing -> Thing"):
        load_tiny(tmp_path, {"Thing": {"allOf": [{"$ref": "#/components/schemas/Thing"}, {}]}})


def test_allof_with_disjoint_types_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="have no value in common"):
        load_tiny(tmp_path, {"Thing": {"allOf": [{"type": "string"}, {"type": "object"}]}})


def test_uri_format_is_checked(tmp_path: Path) -> None:
    tiny = load_tiny(tmp_path, {"Thing": {"type": "string", "format": "uri"}})
    tiny.validate_response("GET", "/things/1", 200, "https://example.test/hook")
    for bad in ("example.test/hook", "not a uri", "https://exa mple.test"):
        with pytest.raises(SpecError, match="is not a 'uri'"):
            tiny.validate_response("GET", "/things/1", 200, bad)


# --------------------------------------------------------------------------- why allOf is merged


def test_a_strict_reading_of_allof_refuses_a_valid_vehicle(spec: EnodeSpec) -> None:
    """The reason this module merges ``allOf``, and why a stock validator cannot stand in for it.

    ``GET /vehicles/{vehicleId}`` answers ``allOf: [Vehicle, {location}]`` where both parts set
    ``additionalProperties: false``. Read as plain JSON Schema, as openapi-core 0.23 (through
    openapi-schema-validator) reads it, no vehicle with a location can pass; merged, the same
    vehicle is valid.
    """
    raw_schema = spec.raw["paths"]["/vehicles/{vehicleId}"]["get"]["responses"]["200"]
    raw_schema = raw_schema["content"]["application/json"]["schema"]
    strict = Draft202012Validator({**raw_schema, "components": spec.raw["components"]})
    messages = [error.message for error in strict.iter_errors(make_vehicle())]
    assert any("('location' was unexpected)" in m for m in messages), messages
    get_vehicle(spec, make_vehicle())


# --------------------------------------------------------------------------- broken on purpose

DELETE: Final = object()  # as a value in ``Break``: remove the key instead of setting it


@dataclasses.dataclass(frozen=True)
class Answer:
    """One answer the simulator really gave, with what the spec validator is told about it."""

    method: str
    path: str
    status: int
    body: Any
    content_type: str | None


@dataclasses.dataclass(frozen=True)
class Break:
    """A deliberate spec violation: set or delete ``where``, replace the body, or relabel it."""

    answer: str
    error: str  # a regex the SpecError must match
    where: tuple[str | int, ...] = ()
    value: Any = DELETE
    status: int | None = None
    content_type: str | None = None


@pytest.fixture(scope="module")
def real() -> Iterator[dict[str, Any]]:
    """Answers and a webhook event the simulator really sent, each checked on the way in."""
    with running_sim() as sim, running_receiver() as receiver:
        client = EnodeClient(sim, EnodeSpec.load())
        try:
            vid = sim.vehicle_ids()[0]
            answers: dict[str, Any] = {}

            def keep(name: str, method: str, path: str, want: int, body: Any = None) -> None:
                r = client.request(method, path, json_body=body)  # validated by the client
                assert r.status_code == want, r.text
                decoded = r.json() if r.content else None
                answers[name] = Answer(method, path, want, decoded, r.headers.get("content-type"))

            keep("vehicle", "GET", f"/vehicles/{vid}", 200)
            keep("vehicles", "GET", "/vehicles", 200)
            sim.admin_call("POST", f"/enode/vehicles/{vid}/plug-in", {"startCharging": False})
            sim.refresh(vid)
            keep("charging", "POST", f"/vehicles/{vid}/charging", 200, {"action": "START"})
            keep("action", "GET", f"/vehicles/actions/{answers['charging'].body['id']}", 200)
            keep("problem", "GET", "/vehicles/does-not-exist", 404)
            keep("no content", "POST", f"/vehicles/{vid}/refresh-hint", 204)
            hook = {"url": receiver.url, "secret": "a-webhook-secret-of-reasonable-length"}
            assert client.post("/webhooks", hook).status_code == 200
            created = sim.admin_call("POST", "/enode/vehicles", {"userId": "demo", "vendor": "KIA"})
            assert created.status_code == 201, created.text
            found = receiver.wait_for(lambda e: e["event"] == "user:vehicle:discovered")
            answers["webhook"] = found[0]
            yield answers
        finally:
            client.close()


def check(spec: EnodeSpec, item: Any, *, status: int | None = None, ct: str | None = None) -> None:
    """Validate a real answer (an ``Answer``) or webhook event (a dict), optionally relabelled."""
    if isinstance(item, Answer):
        spec.validate_response(
            item.method, item.path, status or item.status, item.body, ct or item.content_type
        )
    else:
        spec.validate_webhook_event(item)


def broken(item: Any, case: Break) -> Any:
    """Deep copy of ``item`` (an ``Answer`` or an event) with ``case.where`` set or deleted.

    With an empty ``where``, ``case.value`` (unless ``DELETE``) replaces an answer's whole body.
    """
    copied = copy.deepcopy(item)
    if not case.where:
        if case.value is DELETE:
            return copied
        assert isinstance(copied, Answer)
        return dataclasses.replace(copied, body=case.value, content_type="application/json")
    node = copied.body if isinstance(copied, Answer) else copied
    for key in case.where[:-1]:
        node = node[key]
    if case.value is DELETE:
        del node[case.where[-1]]
    else:
        node[case.where[-1]] = case.value
    return copied


def test_real_answers_pass(spec: EnodeSpec, real: dict[str, Any]) -> None:
    """The control for the next test: unbroken, every answer and the event are valid."""
    assert set(real) == {
        "vehicle",
        "vehicles",
        "charging",
        "action",
        "problem",
        "no content",
        "webhook",
    }
    for item in real.values():
        check(spec, item)


BREAKS: Final = {
    "wrong type": Break(
        "vehicle",
        r"\$\.chargeState\.batteryLevel: '64' is not of type",
        ("chargeState", "batteryLevel"),
        "64",
    ),
    "missing required field": Break(
        "vehicle", r"\$\.information: 'vin' is a required property", ("information", "vin")
    ),
    "wrong enum value": Break(
        "vehicle", r"\$\.vendor: 'TRABANT' is not one of", ("vendor",), "TRABANT"
    ),
    "null where not nullable": Break(
        "vehicle", r"\$\.id: None is not of type 'string'", ("id",), None
    ),
    "unknown field": Break(
        "vehicle", r"\$: Additional properties .*'nickname' was unexpected", ("nickname",), "x"
    ),
    "bad date-time": Break(
        "vehicle", r"\$\.lastSeen: 'yesterday' is not a 'date-time'", ("lastSeen",), "yesterday"
    ),
    "field of the second allOf part missing": Break(
        "vehicle", r"\$\.location: 'id' is a required property", ("location", "id")
    ),
    "list item broken": Break(
        "vehicles",
        r"\$\.data\[0\]\.odometer: 'distance' is a required property",
        ("data", 0, "odometer", "distance"),
    ),
    "pagination cursor of the wrong type": Break(
        "vehicles", r"\$\.pagination\.after: 3 is not of type", ("pagination", "after"), 3
    ),
    "anyOf: fits neither branch": Break(
        "action",
        r"\$: matches none of the anyOf branches",
        ("targetState",),
        {"maxCurrent": 10},
    ),
    "anyOf: wrong enum in the only fitting branch": Break(
        "action", r"\$\.state: 'DONE' is not one of", ("state",), "DONE"
    ),
    "undocumented success status": Break("vehicle", r"-> 201: status not documented", status=201),
    "JSON answer labelled as HTML": Break(
        "vehicle", r"content type 'text/html' is not JSON", content_type="text/html"
    ),
    "error not problem+json": Break(
        "problem", r"must be application/problem\+json", content_type="application/json"
    ),
    "problem without title": Break("problem", r"\$: 'title' is a required property", ("title",)),
    "204 with a body": Break("no content", r"documented without a body", value={"x": 1}),
    "charge action with a wrong kind": Break(
        "charging", r"\$\.kind: 'PAUSE' is not one of", ("kind",), "PAUSE"
    ),
    "webhook: wrong type": Break(
        "webhook",
        r"\$\.vehicle\.chargeState\.batteryLevel: '64' is not of type",
        ("vehicle", "chargeState", "batteryLevel"),
        "64",
    ),
    "webhook: missing required field": Break(
        "webhook", r"\$: 'user' is a required property", ("user",)
    ),
    "webhook: wrong enum value": Break(
        "webhook", r"\$\.vehicle\.vendor: 'TRABANT' is not one of", ("vehicle", "vendor"), "TRABANT"
    ),
    "webhook: unknown event": Break(
        "webhook", r"'user:car:found' is not in the Enode spec", ("event",), "user:car:found"
    ),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_real_answer_broken_on_purpose_is_refused(
    spec: EnodeSpec, real: dict[str, Any], name: str
) -> None:
    """A spec violation in a real simulator answer or webhook event is refused, and said where."""
    case = BREAKS[name]
    bad = broken(real[case.answer], case)
    with pytest.raises(SpecError, match=case.error):
        check(spec, bad, status=case.status, ct=case.content_type)
