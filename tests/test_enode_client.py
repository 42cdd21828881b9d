"""EnodeClient on its own, over httpx.MockTransport: what the simulator never answers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from car2mqtt.clock import SimClock
from car2mqtt.errors import BadCloudResponse, RateLimited
from car2mqtt.providers import enode
from car2mqtt.providers.enode import EnodeClient, EnodeProvider

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()

Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler) -> EnodeClient:
    http = httpx.AsyncClient(
        base_url="https://enode.example", transport=httpx.MockTransport(handler)
    )
    return EnodeClient(http, SimClock(start=NOW, factor=0))


async def test_a_retry_after_date_is_measured_on_the_clients_clock() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        # No Date header: only the injected clock can tell how far away the date is.
        until = format_datetime(datetime.fromtimestamp(NOW + 300, UTC), usegmt=True)
        return httpx.Response(429, headers={"Retry-After": until}, json={"title": "slow down"})

    with pytest.raises(RateLimited) as raised:
        await client(handler).user_vehicles("demo")
    assert raised.value.retry_after == 300.0


def pages(cursors: Callable[[str | None], str | None]) -> tuple[Handler, list[str | None]]:
    """A vehicle list whose next cursor after `after` is `cursors(after)`; records each ask."""
    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("after")
        asked.append(after)
        vehicle = {"id": f"v{len(asked)}", "vendor": "TESLA"}
        return httpx.Response(
            200, json={"data": [vehicle], "pagination": {"after": cursors(after)}}
        )

    return handler, asked


async def test_pages_are_followed_until_the_cursor_is_empty() -> None:
    handler, asked = pages(lambda after: {None: "a", "a": "b", "b": None}[after])
    vehicles = await client(handler).user_vehicles("demo")
    assert [v.id for v in vehicles] == ["v1", "v2", "v3"]
    assert asked == [None, "a", "b"]


async def test_a_repeated_cursor_stops_the_listing() -> None:
    # a -> b -> a -> b ...: without the check this lists for ever.
    handler, asked = pages(lambda after: "b" if after == "a" else "a")
    with pytest.raises(BadCloudResponse, match="Enode repeated a page cursor"):
        await client(handler).user_vehicles("demo")
    assert asked == [None, "a", "b"]


async def test_an_endless_list_of_new_cursors_stops_at_the_page_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(enode, "MAX_PAGES", 5)
    handler, asked = pages(lambda after: f"{after}+")
    with pytest.raises(BadCloudResponse, match="more than 5 pages"):
        await client(handler).user_vehicles("demo")
    assert len(asked) == 5


async def test_every_request_carries_the_enode_version() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "a", "expires_in": 3599})
        return httpx.Response(200, json={"data": [], "pagination": {"after": None}})

    provider = EnodeProvider.create(
        account="home",
        user_id="demo",
        api_url="https://enode.example/",
        token_url="https://oauth.enode.example/token",
        client_id="id",
        client_secret="secret",
        clock=SimClock(start=NOW, factor=0),
        transport=httpx.MockTransport(handler),
    )
    try:
        assert await provider.poll() == []
    finally:
        await provider.aclose()
    api = [r for r in seen if r.url.host == "enode.example"]
    assert [r.url.path for r in api] == ["/users/demo/vehicles"]
    assert api[0].headers["Enode-Version"] == "2024-10-01"
    assert api[0].headers["Authorization"] == "Bearer a"
    assert all(r.headers["User-Agent"].startswith("car2mqtt/") for r in seen)
