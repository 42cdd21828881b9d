"""Xee's link flow: an authorization-code consent at Xee, then the tokens saved first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from car2mqtt.linking import authorize
from car2mqtt.models import VehicleState
from car2mqtt.providers.xee import XeeProvider

__all__ = ["link_xee"]


async def link_xee(
    provider: XeeProvider,
    *,
    authorize_url: str,
    redirect_uri: str,
    scopes: Sequence[str],
    show_url: Callable[[str, bool], None],
    read_paste: Callable[[], Awaitable[str]] | None = None,
    say: Callable[[str], None] = print,
    timeout_s: float = 900.0,
) -> list[VehicleState]:
    """Run Xee's authorization-code flow, save the tokens and return the account's cars.

    The redirect is received on this machine when `redirect_uri` points here; either way the
    user may paste the redirect URL (or just the code) instead, via `read_paste`.
    """
    code = await authorize(
        lambda state: provider.authorization_url(authorize_url, redirect_uri, scopes, state),
        redirect_uri,
        cloud="Xee",
        show_url=show_url,
        read_paste=read_paste,
        say=say,
        timeout_s=timeout_s,
    )
    await provider.exchange_code(code, redirect_uri)
    return await provider.poll()
