"""The `car2mqtt` command line: wiring only, no logic."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console

from car2mqtt import __version__
from car2mqtt.errors import Car2MqttError
from car2mqtt.simulator.app import SimOptions, build_simulation
from car2mqtt.simulator.faults import PROFILES
from car2mqtt.simulator.server import base_url, bind, serve, server_for

app = typer.Typer(
    name="car2mqtt",
    help="Connected cars in Home Assistant over MQTT, with offline simulators of their clouds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True)

Host = Annotated[str, typer.Option(help="Address to listen on.")]
Port = Annotated[
    int, typer.Option(min=0, max=65535, help="Port to listen on (0 picks a free one).")
]
Seed = Annotated[int, typer.Option(help="Seed for every random choice: same seed, same cars.")]
Vehicles = Annotated[
    int, typer.Option(min=0, max=100_000, help="Vehicles pre-linked to the --user.")
]
User = Annotated[str, typer.Option(help="Enode user id that owns the pre-linked vehicles.")]
TimeFactor = Annotated[
    float,
    typer.Option(
        min=0, help="Simulated seconds per real second (0 freezes time; /admin/clock moves it)."
    ),
]


def _profile(value: str) -> str:
    if value not in PROFILES:
        msg = f"unknown profile {value!r}; choose one of: {', '.join(PROFILES)}"
        raise typer.BadParameter(msg)
    return value


Faults = Annotated[
    str,
    typer.Option(
        callback=_profile, help=f"Fault profile: {', '.join(PROFILES)}.", show_default=True
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
        help="Simulated start time (ISO 8601, UTC by default); default now. With "
        "--time-factor 0 and a --seed, runs are identical.",
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"car2mqtt {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Bring connected cars into Home Assistant over MQTT."""


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
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
) -> None:
    """Serve the offline Enode cloud; its first stdout line is JSON describing it."""
    options = SimOptions(
        seed=seed,
        vehicles=vehicles,
        user=user,
        time_factor=time_factor,
        faults=faults,
        start=datetime.fromisoformat(start).timestamp() if start else None,
    )
    _guard(lambda: serve(options, host, port, access_log=access_log))


@app.command()
def demo(
    host: Host = "127.0.0.1",
    port: Port = 8700,
    seed: Seed = 0,
    vehicles: Vehicles = 3,
    time_factor: TimeFactor = 60.0,
) -> None:
    """Run the simulated clouds with demo cars and print how to explore them."""

    def run() -> None:
        sock = bind(host, port)
        options = SimOptions(seed=seed, vehicles=vehicles, time_factor=time_factor)
        sim = build_simulation(options)
        info = sim.describe(base_url(sock))
        _print_demo(info)
        server_for(sim, sock).run(sockets=[sock])

    _guard(run)


def _print_demo(info: dict[str, object]) -> None:
    out = Console()
    enode = info["enode"]
    assert isinstance(enode, dict)
    users = info["users"]
    assert isinstance(users, dict)
    vehicle_ids = [v for ids in users.values() for v in ids]
    first = vehicle_ids[0] if vehicle_ids else "<vehicle id>"
    admin = info["adminUrl"]
    out.print(f"[bold green]car2mqtt demo[/] — simulated clouds at {info['baseUrl']}")
    out.print(
        f"Time runs {info['timeFactor']}x faster; {len(vehicle_ids)} virtual cars are linked to "
        "user [bold]demo[/]. The MQTT bridge arrives in the next release; meanwhile, explore "
        "the simulated Enode API with curl:\n"
    )
    token_cmd = (
        f"TOKEN=$(curl -s -u {enode['clientId']}:{enode['clientSecret']} "
        f"-d grant_type=client_credentials {enode['tokenUrl']} | "
        "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')"
    )
    hdr = '-H "Authorization: Bearer $TOKEN" -H "Enode-Version: 2024-10-01"'
    lines = [
        ("Get a token", token_cmd),
        ("List the demo user's cars", f"curl -s {hdr} {enode['apiUrl']}/users/demo/vehicles"),
        ("Read one car", f"curl -s {hdr} {enode['apiUrl']}/vehicles/{first}"),
        (
            "Start charging it",
            f"curl -s {hdr} -H 'Content-Type: application/json' "
            f'-d \'{{"action":"START"}}\' {enode["apiUrl"]}/vehicles/{first}/charging',
        ),
        (
            "Plug it in (admin API)",
            f"curl -s -X POST {admin}/enode/vehicles/{first}/plug-in",
        ),
        (
            "Jump an hour ahead",
            f"curl -s -d '{{\"seconds\":3600}}' {admin}/clock/advance",
        ),
        ("Switch on flaky faults", f'curl -s -X PUT -d \'{{"profile":"flaky"}}\' {admin}/faults'),
    ]
    for title, cmd in lines:
        out.print(f"[bold]# {title}[/]")
        out.print(cmd, markup=False, highlight=False, soft_wrap=True)
    out.print(
        "\nThe admin API and every endpoint are described in docs/simulator.md. Ctrl-C stops."
    )
    sys.stdout.flush()


def _guard(action: Callable[[], None]) -> None:
    """Run `action`, turning car2mqtt's own errors into one clear line and exit code 2."""
    try:
        action()
    except Car2MqttError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def main() -> None:
    """Run the command line."""
    app()


if __name__ == "__main__":
    main()
