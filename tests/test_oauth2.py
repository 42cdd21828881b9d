"""Retry-After as seconds or as an HTTP-date, read by the OAuth2 module."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from car2mqtt.auth.oauth2 import TokenEndpoint, request_token, retry_after
from car2mqtt.clock import SimClock
from car2mqtt.errors import RateLimited

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()


def answer(headers: dict[str, str], status: int = 429) -> httpx.Response:
    return httpx.Response(status, headers=headers)


def http_date(timestamp: float) -> str:
    return format_datetime(datetime.fromtimestamp(timestamp, UTC), usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), ("0", 0.0), ("1.5", 1.5), ("-3", 0.0)],
)
def test_seconds_are_read_as_they_are(value: str, expected: float) -> None:
    assert retry_after(answer({"Retry-After": value}), now=NOW) == expected


@pytest.mark.parametrize("value", ["", "soon", "inf", "nan", "Fri, 99 Foo 2025 25:61:00 GMT"])
def test_unusable_values_give_none(value: str) -> None:
    assert retry_after(answer({"Retry-After": value}), now=NOW) is None


def test_no_header_gives_none() -> None:
    assert retry_after(answer({}), now=NOW) is None


def test_an_http_date_is_measured_against_the_given_now() -> None:
    response = answer({"Retry-After": http_date(NOW + 90), "Date": http_date(NOW - 1000)})
    assert retry_after(response, now=NOW) == 90.0


def test_an_http_date_in_the_past_means_at_once() -> None:
    assert retry_after(answer({"Retry-After": http_date(NOW - 5)}), now=NOW) == 0.0


def test_without_now_the_responses_own_date_is_the_reference() -> None:
    # The server's Date and Retry-After share its clock, so ours may be off by any amount.
    response = answer({"Retry-After": http_date(NOW + 30), "Date": http_date(NOW)})
    assert retry_after(response) == 30.0


def test_a_date_in_the_obsolete_asctime_format_is_read_too() -> None:
    # RFC 9110 asks recipients to accept the obsolete formats; this one has no zone: GMT.
    response = answer({"Retry-After": "Sat Mar  1 12:01:00 2025"})
    assert retry_after(response, now=NOW) == 60.0


async def test_a_rate_limited_token_request_waits_until_the_date_on_the_injected_clock() -> None:
    clock = SimClock(start=NOW, factor=0)

    def handler(request: httpx.Request) -> httpx.Response:
        # No Date header: only the injected clock can tell how far away the date is.
        return httpx.Response(429, headers={"Retry-After": http_date(NOW + 600)})

    endpoint = TokenEndpoint("https://auth.example/token", "id", "secret")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(RateLimited) as raised:
            await request_token(http, endpoint, clock, "client_credentials")
    assert raised.value.retry_after == 600.0
