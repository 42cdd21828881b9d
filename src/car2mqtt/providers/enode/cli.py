"""`car2mqtt link enode`: Enode's Link UI in a browser, from the command line."""

from __future__ import annotations

from typing import Annotated

import typer

from car2mqtt.commandline import AccountName, ConfigOption, LinkTimeout, public_url, show_link
from car2mqtt.models import VehicleState
from car2mqtt.providers.enode import EnodeProvider
from car2mqtt.providers.enode.config import EnodeAccount
from car2mqtt.providers.plugin import LinkRunner, Wiring

__all__ = ["add_link_command"]


def add_link_command(link_app: typer.Typer, runner: LinkRunner) -> None:
    """Add `enode` to the `car2mqtt link` commands."""

    @link_app.command("enode")
    def link_enode_cmd(
        account: AccountName,
        config: ConfigOption = None,
        vendor: Annotated[
            str | None,
            typer.Option(metavar="VENDOR", help="Skip the brand page: TESLA, XPENG, ..."),
        ] = None,
        host: Annotated[
            str,
            typer.Option(
                metavar="HOST",
                help="Where the redirect receiver listens (the browser must reach it; 0.0.0.0 "
                "for a browser on another device).",
            ),
        ] = "127.0.0.1",
        port: Annotated[
            int,
            typer.Option(min=0, max=65535, metavar="PORT", help="Receiver port (0: any free one)."),
        ] = 0,
        public: Annotated[
            str | None,
            typer.Option(
                "--public-url",
                callback=public_url,
                metavar="URL",
                help="The address the browser reaches the receiver at, when it is not this "
                "machine's own (a proxy, a forwarded port); /callback is added.",
            ),
        ] = None,
        timeout: LinkTimeout = 15,
    ) -> None:
        """Create an Enode Link session, show its URL and QR code, and wait until it is done."""

        async def flow(acct: EnodeAccount, wiring: Wiring) -> list[VehicleState]:
            # The receiver (uvicorn) is loaded only to link.
            from car2mqtt.providers.enode.link import link_enode  # noqa: PLC0415

            provider = EnodeProvider.from_account(acct, wiring)
            try:
                return await link_enode(
                    provider,
                    host=host,
                    port=port,
                    vendor=vendor,
                    show_url=show_link,
                    timeout_s=timeout * 60,
                    public_url=public,
                )
            finally:
                await provider.aclose()

        runner.link(config, account, EnodeAccount, flow, title=f"Vehicles linked to {account}")
