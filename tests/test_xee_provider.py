"""The Xee provider alone, against a scripted cloud (httpx.MockTransport): per-car failures."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from car2mqtt.clock import SimClock
from car2mqtt.errors import ProviderUnavailable, ReauthRequired
from car2mqtt.providers.xee import XeeProvider

CARS = [
    {"id": "v1", "name": "One", "device": {"id": "D1"}},
    {"id": "v2", "name": "Two", "device": {"id": "D2"}},
]
STATUS = {"signals": [{"name": "Odometer", "value": 100.0, "date": "2026-11-22T08:00:00Z"}]}


class Cloud:
    """Answers the provider's calls from a script; counts them."""

    def __init__(self) -> None:
        self.status: dict[str, Any] = {"v1": STATUS, "v2": STATUS}
        self.api_status = 200
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode().split("?")[0]  # as sent, still escaped
        self.calls.append(path)
        if path.endswith("/oauth/token"):
            body = {"access_token": "a", "refresh_token": "r", "expires_in": 3600}
            return httpx.Response(200, json=body)
        if self.api_status != 200:
            error = {"error": "invalid_token", "error_description": "Token has been revoked"}
            return httpx.Response(self.api_status, json=error)
        if path.endswith("/users/me/vehicles"):
            return httpx.Response(200, json=CARS)
        vehicle = path.split("/")[-2]
        answer = self.status[vehicle]
        if isinstance(answer, int):
            return httpx.Response(answer, json={"error": "not_found", "error_description": "x"})
        if isinstance(answer, bytes):
            return httpx.Response(200, content=answer)
        return httpx.Response(200, json=answer)


def provider(cloud: Cloud) -> XeeProvider:
    return XeeProvider.create(
        account="car",
        api_url="https://xee.test/v4",
        token_url="https://xee.test/v4/oauth/token",
        client_id="id",
        client_secret="secret",
        username="me",
        password="pw",
        clock=SimClock(0.0, 0.0),
        transport=httpx.MockTransport(cloud),
    )


async def test_one_unreadable_status_keeps_that_cars_last_state_and_the_others_go_on() -> None:
    cloud = Cloud()
    xee = provider(cloud)
    try:
        first = {s.ref.vehicle_id: s for s in await xee.poll()}
        cloud.status["v2"] = b"<html>oops</html>"
        second = {s.ref.vehicle_id: s for s in await xee.poll()}
        cloud.status["v1"] = {**STATUS, "signals": [{"name": "Odometer", "value": 101.0}]}
        third = {s.ref.vehicle_id: s for s in await xee.poll()}
    finally:
        await xee.aclose()
    assert set(first) == set(second) == set(third) == {"D1", "D2"}
    assert second["D2"] == first["D2"]  # the last good state, not a gap
    assert third["D1"].odometer_km == 101.0


async def test_a_car_never_read_and_unreadable_is_left_out_for_now() -> None:
    cloud = Cloud()
    cloud.status["v2"] = {"signals": "not a list", "location": 3}  # tolerated: empty
    cloud.status["v1"] = json.dumps([1, 2]).encode()  # not an object at all
    xee = provider(cloud)
    try:
        states = await xee.poll()
    finally:
        await xee.aclose()
    assert [s.ref.vehicle_id for s in states] == ["D2"]
    # Listed but unreadable: left out of this poll, and said so, so it is not taken for gone.
    assert xee.unreadable == frozenset({"D1"})


async def test_a_car_read_once_is_not_marked_unreadable_later() -> None:
    cloud = Cloud()
    xee = provider(cloud)
    try:
        await xee.poll()
        cloud.status["v1"] = b"<html>oops</html>"
        states = await xee.poll()
    finally:
        await xee.aclose()
    assert {s.ref.vehicle_id for s in states} == {"D1", "D2"}
    assert xee.unreadable == frozenset()


async def test_a_listed_car_whose_status_404s_twice_is_unread_not_gone() -> None:
    cloud = Cloud()
    cloud.status["v2"] = 404
    xee = provider(cloud)
    try:
        states = await xee.poll()
    finally:
        await xee.aclose()
    assert [s.ref.vehicle_id for s in states] == ["D1"]
    # Both vehicle lists still had it: only the list may say a car is gone.
    assert xee.unreadable == frozenset({"D2"})
    assert cloud.calls.count("/v4/users/me/vehicles") == 2


async def test_tokens_refused_even_when_fresh_mean_the_grant_is_gone() -> None:
    cloud = Cloud()
    cloud.api_status = 401
    xee = provider(cloud)
    try:
        with pytest.raises(ReauthRequired, match="revoked"):
            await xee.poll()
    finally:
        await xee.aclose()
    # One retry with a renewed token, not a storm.
    assert cloud.calls.count("/v4/users/me/vehicles") == 2


async def test_vehicle_ids_are_escaped_in_paths() -> None:
    cloud = Cloud()
    CARS.append({"id": "../../users/me", "device": {"id": "D3"}})
    cloud.status["..%2F..%2Fusers%2Fme"] = STATUS
    xee = provider(cloud)
    try:
        await xee.poll()
    finally:
        await xee.aclose()
        CARS.pop()
    assert "/v4/vehicles/..%2F..%2Fusers%2Fme/status" in cloud.calls


async def test_one_cars_outage_fails_the_poll_with_that_error_itself() -> None:
    cloud = Cloud()
    cloud.status["v2"] = 503
    xee = provider(cloud)
    try:
        # As the list call failing would: the bridge backs off on ProviderUnavailable, so it
        # must not arrive wrapped in an exception group.
        with pytest.raises(ProviderUnavailable, match="503"):
            await xee.poll()
        cloud.status["v2"] = STATUS
        states = await xee.poll()
    finally:
        await xee.aclose()
    assert {s.ref.vehicle_id for s in states} == {"D1", "D2"}


async def test_a_car_the_list_no_longer_has_is_forgotten() -> None:
    cloud = Cloud()
    xee = provider(cloud)
    removed = CARS.pop()
    try:
        await xee.poll()  # D1 only
        CARS.append(removed)
        await xee.poll()  # D2 read once
        CARS.pop()
        await xee.poll()  # D2 gone from the list
        CARS.append(removed)
        cloud.status["v2"] = b"<html>oops</html>"
        states = await xee.poll()
    finally:
        await xee.aclose()
        if CARS[-1] is not removed:
            CARS.append(removed)
    # Its state from before it went away is not served again: it is unread for now.
    assert [s.ref.vehicle_id for s in states] == ["D1"]
    assert xee.unreadable == frozenset({"D2"})
