"""`car2mqtt link xee`: consent at Xee in a browser, from the command line."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from car2mqtt.commandline import AccountName, ConfigOption, LinkTimeout, stdin_reader
from car2mqtt.models import VehicleState
from car2mqtt.providers.plugin import LinkRunner, Wiring
from car2mqtt.providers.xee import XeeProvider
from car2mqtt.providers.xee.config import XeeAccount

__all__ = ["add_link_command"]


def add_link_command(link_app: typer.Typer, runner: LinkRunner) -> None:
    """Add `xee` to the `car2mqtt link` commands."""

    @link_app.command("xee")
    def link_xee_cmd(
        account: AccountName,
        config: ConfigOption = None,
        timeout: LinkTimeout = 15,
    ) -> None:
        """Authorize car2mqtt at Xee in a browser; receive or paste back the redirect."""

        async def flow(acct: XeeAccount, wiring: Wiring) -> list[VehicleState]:
            # The receiver (uvicorn) is loaded only to link.
            from car2mqtt.providers.xee.link import link_xee  # noqa: PLC0415

            provider = XeeProvider.from_account(acct, wiring)
            try:
                return await link_xee(
                    provider,
                    authorize_url=acct.authorize_url,
                    redirect_uri=acct.redirect_uri,
                    scopes=acct.scopes,
                    show_url=lambda url, listening: _show_consent(
                        url, acct.redirect_uri, listening
                    ),
                    read_paste=stdin_reader(),
                    timeout_s=timeout * 60,
                )
            finally:
                await provider.aclose()

        runner.link(
            config,
            account,
            XeeAccount,
            flow,
            title=f"Vehicles of {account}",
            done="[bold green]Linked.[/] A running bridge picks the new tokens up by itself; "
            "no restart needed.",
        )


def _show_consent(url: str, redirect_uri: str, listening: bool) -> None:
    out = Console(soft_wrap=True)
    out.print("Open this address in a browser, log in to Xee and approve car2mqtt:")
    print(url, flush=True)
    if listening:
        out.print(
            f"Waiting for Xee to send the browser back to {redirect_uri} ... If that page "
            "cannot reach this machine, paste its full address (or just the code) here:",
            markup=False,
        )
    else:
        out.print(
            f"After you approve, the browser goes to {redirect_uri}, which may show an error "
            "page. Copy the full address from the address bar and paste it here:",
            markup=False,
        )
    sys.stdout.flush()
