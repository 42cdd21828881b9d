"""Enode's link flow: a Link UI session in the browser, and its redirect received here."""

from __future__ import annotations

from collections.abc import Callable

from car2mqtt.linking import LinkFailed, wait_for_redirect
from car2mqtt.models import VehicleState
from car2mqtt.providers.enode import EnodeProvider

__all__ = ["link_enode"]


async def link_enode(
    provider: EnodeProvider,
    *,
    host: str,
    port: int,
    vendor: str | None,
    show_url: Callable[[str, str], None],
    timeout_s: float = 900.0,
    public_url: str | None = None,
) -> list[VehicleState]:
    """Run Enode's Link flow, shown by `show_url(link_url, redirect_uri)`; return the cars."""

    async def start(redirect_uri: str) -> None:
        link = await provider.client.create_link(provider.user_id, redirect_uri, vendor=vendor)
        show_url(link.link_url, redirect_uri)

    redirect = await wait_for_redirect(host, port, start, timeout_s, public_url)
    if "error" in redirect.params:
        detail = redirect.params.get("error_message") or redirect.params["error"]
        msg = f"linking stopped: {detail} ({redirect.params['error']})"
        raise LinkFailed(msg)
    return await provider.poll()
