"""EnodeClient on its own, over httpx.MockTransport: what the simulator never answers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from car2mqtt.clock import SimClock
from car2mqtt.errors import RateLimited
from car2mqtt.providers.enode import EnodeClient

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
