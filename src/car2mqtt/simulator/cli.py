"""`car2mqtt simulate`: the offline clouds on a port, from the command line.

`cli.py` mounts it with `add_simulate_command`; the simulator itself is imported only when the
command runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from car2mqtt.commandline import Host, Port, Seed, TimeFactor, Vehicles, guard

__all__ = ["PROFILES", "add_simulate_command"]

PROFILES = ("none", "flaky", "rate-limited", "outage")  # kept in step with simulator.faults

User = Annotated[
    str, typer.Option(metavar="ID", help="Enode user id that owns the pre-linked vehicles.")
]


def _profile(value: str) -> str:
    if value not in PROFILES:
        msg = f"unknown profile {value!r}; choose one of: {', '.join(PROFILES)}"
        raise typer.BadParameter(msg)
    return value


Faults = Annotated[
    str,
    typer.Option(
        callback=_profile,
        metavar="PROFILE",
        help=f"Fault profile: {', '.join(PROFILES)}.",
        show_default=True,
    ),
]


def _start(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        msg = f"{value!r} is not an ISO 8601 time such as 2026-01-01T00:00:00Z"
        raise typer.BadParameter(msg) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.isoformat()


Start = Annotated[
    str | None,
    typer.Option(
        callback=_start,
        metavar="TIME",
        help="Simulated start time (ISO 8601, UTC by default); default now. With "
        "--time-factor 0 and a --seed, runs are identical.",
    ),
]


def add_simulate_command(app: typer.Typer) -> None:
    """Add `simulate` to `app`."""

    @app.command()
    def simulate(
        host: Host = "127.0.0.1",
        port: Port = 8700,
        seed: Seed = 0,
        vehicles: Vehicles = 3,
        user: User = "demo",
        time_factor: TimeFactor = 1.0,
        faults: Faults = "none",
        start: Start = None,
        xee_vehicles: Annotated[
            int,
            typer.Option(
                min=0, max=100_000, metavar="N", help="Cars on the Xee demo user's dongles."
            ),
        ] = 2,
        xee_token_ttl: Annotated[
            float,
            typer.Option(
                min=1, metavar="SECONDS", help="Xee access token lifetime (expires_in), seconds."
            ),
        ] = 3600.0,
        xee_early_expiry: Annotated[
            float,
            typer.Option(
                min=0,
                metavar="SECONDS",
                help="Xee tokens really die this many seconds before expires_in.",
            ),
        ] = 0.0,
        xee_refresh_grace: Annotated[
            float,
            typer.Option(
                min=0,
                metavar="SECONDS",
                help="Seconds a used Xee refresh token may be replayed (0: single use).",
            ),
        ] = 60.0,
        access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    ) -> None:
        """Serve the offline Enode and Xee clouds; the first stdout line is JSON describing them."""
        from car2mqtt.simulator.app import SimOptions  # noqa: PLC0415 - only when it runs
        from car2mqtt.simulator.server import serve  # noqa: PLC0415

        options = SimOptions(
            seed=seed,
            vehicles=vehicles,
            user=user,
            time_factor=time_factor,
            faults=faults,
            start=datetime.fromisoformat(start).timestamp() if start else None,
            xee_vehicles=xee_vehicles,
            xee_token_ttl_s=xee_token_ttl,
            xee_early_expiry_s=xee_early_expiry,
            xee_refresh_grace_s=xee_refresh_grace,
        )
        guard(lambda: serve(options, host, port, access_log=access_log))
