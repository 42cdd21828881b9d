"""Xee's link flow: an authorization-code consent at Xee, then the tokens saved first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from car2mqtt.config import AccountBase
from car2mqtt.linking import LinkFailed, authorize, check_redirect, same_address
from car2mqtt.models import VehicleState
from car2mqtt.providers.base import Provider
from car2mqtt.providers.plugin import LinkStart, WebLink
from car2mqtt.providers.xee import XeeProvider
from car2mqtt.providers.xee.config import XeeAccount

__all__ = ["WEB_LINK", "link_xee"]


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


# ---- from the web UI ---------------------------------------------------------------------------


def _xee(provider: Provider, account: AccountBase) -> tuple[XeeProvider, XeeAccount]:
    if not isinstance(provider, XeeProvider) or not isinstance(account, XeeAccount):
        msg = f"account {account.name} is not a Xee account"
        raise LinkFailed(msg)
    return provider, account


async def _web_start(
    provider: Provider, account: AccountBase, callback_url: str, state: str, form: Mapping[str, str]
) -> LinkStart:
    """Send the browser to Xee's consent page; it comes back where Xee has it registered."""
    xee, acct = _xee(provider, account)
    url = xee.authorization_url(acct.authorize_url, acct.redirect_uri, acct.scopes, state)
    return LinkStart(
        url, acct.redirect_uri, comes_back=same_address(acct.redirect_uri, callback_url)
    )


async def _web_finish(
    provider: Provider, account: AccountBase, params: Mapping[str, str], redirect_uri: str
) -> None:
    """Trade the code Xee granted for tokens, saved before anything else."""
    xee, _ = _xee(provider, account)
    # The UI checked the state (or the user pasted a bare code): only the verdict is left.
    code = check_redirect(dict(params), None, cloud="Xee")
    await xee.exchange_code(code, redirect_uri)


WEB_LINK = WebLink(
    start=_web_start,
    finish=_web_finish,
    paste=True,
    explain="Xee's consent page opens. Log in with your Xee account and approve car2mqtt.",
)
