"""What every cloud client does with HTTP: send, translate failures to our errors, parse."""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from car2mqtt.auth.oauth2 import retry_after
from car2mqtt.errors import AuthError, BadCloudResponse, ProviderUnavailable, RateLimited

M = TypeVar("M", bound=BaseModel)


async def send(
    http: httpx.AsyncClient, cloud: str, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    """Send a request; a transport failure becomes ProviderUnavailable."""
    try:
        return await http.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        msg = f"{cloud} unreachable ({type(exc).__name__}) on {method} {path}"
        raise ProviderUnavailable(msg) from None


def raise_for_transient(
    response: httpx.Response, cloud: str, path: str, detail: str, *, now: float
) -> None:
    """Raise for a 401 (after the auth flow's retry), 429 or 5xx; return for anything else.

    `now` is the injected clock's time, against which a Retry-After date is measured.
    """
    status = response.status_code
    if status == 401:
        msg = f"{cloud} rejected a fresh access token on {path}: {detail}"
        raise AuthError(msg)
    if status == 429:
        raise RateLimited(f"{cloud} rate limited {path}: {detail}", retry_after(response, now))
    if status >= 500:
        msg = f"{cloud} answered {status} on {path}: {detail}"
        raise ProviderUnavailable(msg, retry_after(response, now))


def parse(response: httpx.Response, model: type[M], cloud: str) -> M:
    """Parse a JSON body into `model`; an unreadable one becomes BadCloudResponse."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        msg = f"{cloud} sent an unreadable {model.__name__} ({where}: {first['msg']})"
        raise BadCloudResponse(msg) from None
