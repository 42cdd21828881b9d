"""Enode's link flow: a Link UI session in the browser, and its redirect received here."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from car2mqtt.config import AccountBase
from car2mqtt.linking import LinkFailed, wait_for_redirect
from car2mqtt.models import VehicleState
from car2mqtt.net import with_query
from car2mqtt.providers.base import Provider
from car2mqtt.providers.enode import EnodeProvider
from car2mqtt.providers.plugin import LinkField, LinkStart, WebLink

__all__ = ["WEB_LINK", "link_enode"]


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


# ---- from the web UI ---------------------------------------------------------------------------

_VENDOR = re.compile(r"[A-Z][A-Z0-9_]{0,39}")


async def _web_start(
    provider: Provider, account: AccountBase, callback_url: str, state: str, form: Mapping[str, str]
) -> LinkStart:
    """Start a Link UI session that comes back to the web UI's callback, carrying `state`."""
    if not isinstance(provider, EnodeProvider):
        msg = f"account {account.name} is not an Enode account"
        raise LinkFailed(msg)
    vendor = form.get("vendor", "").strip().upper() or None
    if vendor is not None and not _VENDOR.fullmatch(vendor):
        msg = (
            "a vendor is Enode's name for a brand, such as TESLA or VOLKSWAGEN (letters, "
            "digits and _); leave it empty to pick the brand in Enode's page"
        )
        raise LinkFailed(msg)
    # Enode sends the browser back to exactly this address: the state rides in it.
    redirect_uri = with_query(callback_url, {"state": state})
    link = await provider.client.create_link(provider.user_id, redirect_uri, vendor=vendor)
    return LinkStart(link.link_url, redirect_uri, comes_back=True)


async def _web_finish(
    provider: Provider, account: AccountBase, params: Mapping[str, str], redirect_uri: str
) -> None:
    """Accept Enode's redirect back: nothing to keep but its verdict (the cars are Enode's)."""
    if "error" in params:
        detail = params.get("error_message") or params["error"]
        msg = f"linking stopped: {detail} ({params['error']})"
        raise LinkFailed(msg)


WEB_LINK = WebLink(
    start=_web_start,
    finish=_web_finish,
    fields=(
        LinkField(
            "vendor",
            "Brand (optional)",
            "Enode's vendor name, such as TESLA; leave empty to choose in Enode's page.",
        ),
    ),
    explain="Enode's Link page opens. Pick your car's brand, log in with that brand's app "
    "account and approve; you come back here and the cars appear.",
)
