"""The `car2mqtt` command line: wiring only, no logic."""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from car2mqtt import __version__
from car2mqtt.clock import SystemClock
from car2mqtt.config import Account, Config, config_path, describe, load_config
from car2mqtt.errors import Car2MqttError, ConfigError, ReauthRequired
from car2mqtt.logs import setup_logging
from car2mqtt.models import ChargeState, VehicleState
from car2mqtt.mqtt.link import BrokerSettings

# Each command imports what it alone needs: `car2mqtt run` on a Raspberry Pi should not carry
# the simulator, the demo's broker or the QR encoder in memory.
if TYPE_CHECKING:
    from car2mqtt.demo import DemoInfo

PROFILES = ("none", "flaky", "rate-limited", "outage")  # kept in step with simulator.faults
T = TypeVar("T")
app = typer.Typer(
    name="car2mqtt",
    help="Connected cars in Home Assistant over MQTT, with offline simulators of their clouds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True, soft_wrap=True)

Host = Annotated[str, typer.Option(metavar="HOST", help="Address to listen on.")]
Port = Annotated[
    int,
    typer.Option(min=0, max=65535, metavar="PORT", help="Port to listen on (0 picks a free one)."),
]
Seed = Annotated[
    int, typer.Option(metavar="N", help="Seed for every random choice: same seed, same cars.")
]
Vehicles = Annotated[
    int, typer.Option(min=0, max=100_000, metavar="N", help="Vehicles pre-linked to the --user.")
]
User = Annotated[
    str, typer.Option(metavar="ID", help="Enode user id that owns the pre-linked vehicles.")
]
TimeFactor = Annotated[
    float,
    typer.Option(
        min=0,
        metavar="FACTOR",
        help="Simulated seconds per real second (0 freezes time; /admin/clock moves it).",
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
    xee_vehicles: Annotated[
        int,
        typer.Option(min=0, max=100_000, metavar="N", help="Cars on the Xee demo user's dongles."),
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
    from car2mqtt.simulator.app import SimOptions
    from car2mqtt.simulator.server import serve

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
    _guard(lambda: serve(options, host, port, access_log=access_log))


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help="Configuration file (default: $CAR2MQTT_CONFIG, else ./car2mqtt.yaml).",
    ),
]


def _load(path: Path | None) -> Config:
    from car2mqtt.runtime import secrets_of

    config = load_config(path)
    setup_logging(config.log.level, config.log.format, secrets_of(config))
    return config


@app.command()
def run(config: ConfigOption = None) -> None:
    """Run the bridge: cars from the configured clouds into MQTT and Home Assistant."""
    from car2mqtt.runtime import run_config

    def go() -> None:
        cfg = _load(config)
        _run_async(run_config(cfg))

    _guard(go)


@app.command()
def demo(
    host: Host = "127.0.0.1",
    port: Port = 8700,
    mqtt_host: Annotated[
        str,
        typer.Option(
            metavar="HOST", help="Address the embedded broker listens on (0.0.0.0 for a remote HA)."
        ),
    ] = "127.0.0.1",
    mqtt_port: Annotated[
        int, typer.Option(min=1, max=65535, metavar="PORT", help="Embedded broker port.")
    ] = 1883,
    broker: Annotated[
        str | None,
        typer.Option(metavar="URL", help="Use this broker instead, e.g. mqtt://127.0.0.1:1883."),
    ] = None,
    seed: Seed = 0,
    vehicles: Vehicles = 3,
    time_factor: TimeFactor = 60.0,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Folder for the demo's state file and configuration, started afresh each time "
            "(default: ~/.cache/car2mqtt/demo).",
        ),
    ] = None,
) -> None:
    """Run simulated clouds, an MQTT broker and the bridge, with no credentials at all."""
    from car2mqtt.demo import run_demo

    def go() -> None:
        setup_logging("info", "text")
        _run_async(
            run_demo(
                host=host,
                port=port,
                mqtt_host=mqtt_host,
                mqtt_port=mqtt_port,
                broker_url=broker,
                vehicles=vehicles,
                time_factor=time_factor,
                seed=seed,
                announce=_print_demo,
                state_dir=state_dir,
            )
        )

    _guard(go)


def _print_demo(info: DemoInfo) -> None:
    from car2mqtt.demo import instructions

    out = Console(soft_wrap=True)
    out.print(f"[bold green]car2mqtt demo[/] is running. Time runs {info.time_factor:g}x faster.")
    out.print(
        f"  simulated Enode cloud: {info.simulator_url}/enode (admin API: {info.admin_url})\n"
        f"  simulated Xee cloud: {info.simulator_url}/xee/v4 (test login: {info.xee_username}"
        f" / {info.xee_password})\n"
        f"  MQTT broker: mqtt://{info.broker_host}:{info.broker_port}"
        f"{' (embedded)' if info.embedded_broker else ''}\n"
        f"  {len(info.vehicle_ids)} Enode cars: a parked Tesla, a charging Volkswagen, an XPENG "
        f"on a trip;\n  {len(info.xee_vehicle_ids)} cars with Xee dongles, petrol and electric "
        "in turn.\n"
        f"  state folder: {info.state_dir} (started afresh each time)\n"
        f"  configuration: {info.config_path} (the demo's accounts, broker and state file)\n",
        markup=False,
        highlight=False,
    )
    told = instructions(info)
    for title, cmd in told.steps:
        out.print(f"# {title}", style="bold", markup=False, highlight=False)
        out.print(cmd, markup=False, highlight=False)
    out.print()
    for note in told.notes:
        out.print(note, markup=False, highlight=False)
    where = info.broker_public or f"{info.broker_host}:{info.broker_port}"
    out.print(
        f"To see the cars in a real Home Assistant, add its MQTT integration with the broker at "
        f"{where} (start the demo with --mqtt-host 0.0.0.0 if HA runs on another machine); the "
        "cars appear as devices by themselves. Ctrl-C stops everything.",
        markup=False,
        highlight=False,
    )
    sys.stdout.flush()


config_app = typer.Typer(help="Work with the configuration file.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("check")
def config_check(
    path: Annotated[Path | None, typer.Argument(help="The file to check.")] = None,
) -> None:
    """Validate a configuration file without starting anything."""

    def go() -> None:
        config = load_config(path)
        out = Console()
        out.print(f"[bold green]{config_path(path)} is valid.[/]")
        for line in describe(config):
            out.print(line, markup=False, highlight=False)

    _guard(go)


link_app = typer.Typer(help="Link cars to an account, without curl.", no_args_is_help=True)
app.add_typer(link_app, name="link")


AccountName = Annotated[
    str, typer.Option(metavar="NAME", help="The account name in the configuration.")
]
LinkTimeout = Annotated[
    float, typer.Option(min=1, metavar="MINUTES", help="Minutes to wait for the user.")
]


_PROVIDER_LABELS = {"enode": "Enode", "xee": "Xee"}


def _account_for(cfg: Config, name: str, provider: str) -> Account:
    try:
        acct = cfg.account(name)
    except KeyError:
        names = ", ".join(a.name for a in cfg.accounts)
        msg = f"no account named {name!r} in the configuration; it has: {names}"
        raise ConfigError(msg) from None
    if acct.provider != provider:
        label = _PROVIDER_LABELS.get(acct.provider, acct.provider)
        article = "an" if label[:1].lower() in "aeiou" else "a"
        msg = (
            f"account {name!r} is {article} {label} account: "
            f"use car2mqtt link {acct.provider} --account {name}"
        )
        raise ConfigError(msg)
    return acct


def _public_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        msg = f"{value!r} is not an http:// or https:// URL, e.g. http://192.168.1.20:8765"
        raise typer.BadParameter(msg)
    return value.strip()


@link_app.command("enode")
def link_enode_cmd(
    account: AccountName,
    config: ConfigOption = None,
    vendor: Annotated[
        str | None, typer.Option(metavar="VENDOR", help="Skip the brand page: TESLA, XPENG, ...")
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            metavar="HOST",
            help="Where the redirect receiver listens (the browser must reach it; 0.0.0.0 for "
            "a browser on another device).",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, metavar="PORT", help="Receiver port (0: any free one).")
    ] = 0,
    public_url: Annotated[
        str | None,
        typer.Option(
            callback=_public_url,
            metavar="URL",
            help="The address the browser reaches the receiver at, when it is not this "
            "machine's own (a proxy, a forwarded port); /callback is added.",
        ),
    ] = None,
    timeout: LinkTimeout = 15,
) -> None:
    """Create an Enode Link session, show its URL and QR code, and wait until it is done."""

    def go() -> None:
        cfg = _load(config)
        acct = _account_for(cfg, account, "enode")
        vehicles = _run_async(_link(cfg, acct, vendor, host, port, public_url, timeout * 60))
        _vehicle_table(vehicles, title=f"Vehicles linked to {account}")

    _guard(go)


async def _link(
    cfg: Config,
    acct: Account,
    vendor: str | None,
    host: str,
    port: int,
    public_url: str | None,
    timeout_s: float,
) -> list[VehicleState]:
    from car2mqtt.linking import link_enode
    from car2mqtt.providers import create_provider
    from car2mqtt.providers.enode import EnodeProvider
    from car2mqtt.store import Store

    with Store.open(cfg.store) as store:
        provider = create_provider(acct, clock=SystemClock(), persistence=store)
        assert isinstance(provider, EnodeProvider)
        try:
            vehicles = await link_enode(
                provider,
                host=host,
                port=port,
                vendor=vendor,
                show_url=_show_link,
                timeout_s=timeout_s,
                public_url=public_url,
            )
        finally:
            await provider.aclose()
        store.save_account_status(acct.name, "ok", None)
        # What `car2mqtt status` counts: the cars the link just listed.
        store.save_vehicles(acct.name, [v.ref for v in vehicles])
        return vehicles


@link_app.command("xee")
def link_xee_cmd(
    account: AccountName,
    config: ConfigOption = None,
    timeout: LinkTimeout = 15,
) -> None:
    """Authorize car2mqtt at Xee in a browser; receive or paste back the redirect."""

    def go() -> None:
        cfg = _load(config)
        acct = _account_for(cfg, account, "xee")
        vehicles = _run_async(_link_xee(cfg, acct, timeout * 60))
        Console().print(
            "[bold green]Linked.[/] A running bridge picks the new tokens up by itself; "
            "no restart needed."
        )
        _vehicle_table(vehicles, title=f"Vehicles of {account}")

    _guard(go)


async def _link_xee(cfg: Config, acct: Account, timeout_s: float) -> list[VehicleState]:
    from car2mqtt.config import XeeAccount
    from car2mqtt.linking import link_xee
    from car2mqtt.providers import create_provider
    from car2mqtt.providers.xee import XeeProvider
    from car2mqtt.store import Store

    assert isinstance(acct, XeeAccount)
    with Store.open(cfg.store) as store:
        provider = create_provider(acct, clock=SystemClock(), persistence=store)
        assert isinstance(provider, XeeProvider)
        try:
            vehicles = await link_xee(
                provider,
                authorize_url=acct.authorize_url,
                redirect_uri=acct.redirect_uri,
                scopes=acct.scopes,
                show_url=lambda url, listening: _show_consent(url, acct.redirect_uri, listening),
                read_paste=_stdin_reader(),
                timeout_s=timeout_s,
            )
        finally:
            await provider.aclose()
        store.save_account_status(acct.name, "ok", None)
        # What `car2mqtt status` counts: the cars the link just listed.
        store.save_vehicles(acct.name, [v.ref for v in vehicles])
        return vehicles


def _stdin_reader() -> Callable[[], Coroutine[Any, Any, str]]:
    """Lines typed on stdin, read by a daemon thread so waiting never blocks the loop or exit."""
    import threading

    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def pump() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=pump, name="stdin", daemon=True).start()

    async def read() -> str:
        line = await lines.get()
        if line is None:  # stdin closed: only the redirect can finish the link now
            await asyncio.Event().wait()
        return line or ""

    return read


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


def _show_link(url: str, redirect_uri: str) -> None:
    import segno

    out = Console(soft_wrap=True)
    out.print("Open this link in a browser (or scan the QR code) and log in to your car's account:")
    print(url, flush=True)
    qr = io.StringIO()
    segno.make(url, error="l").terminal(out=qr, compact=True)
    out.print(qr.getvalue(), markup=False, highlight=False)
    out.print(
        f"When you are done, the browser comes back to {redirect_uri} . If that address does "
        "not open where your browser is, stop (Ctrl-C) and use --host 0.0.0.0 or --public-url.",
        markup=False,
        highlight=False,
    )
    out.print("Waiting for you to finish linking ...")


@app.command()
def vehicles(config: ConfigOption = None) -> None:
    """Ask each configured cloud for its vehicles and show them in a table."""

    def go() -> None:
        cfg = _load(config)
        states = _run_async(_poll_all(cfg))
        _vehicle_table(states, title="Vehicles")

    _guard(go)


async def _poll_all(cfg: Config) -> list[VehicleState]:
    from car2mqtt.providers import create_provider
    from car2mqtt.store import Store

    found: list[VehicleState] = []
    with Store.open(cfg.store) as store:
        for account in cfg.accounts:
            provider = create_provider(account, clock=SystemClock(), persistence=store)
            try:
                found.extend(await provider.poll())
            except ReauthRequired as exc:
                fix = f"; run: car2mqtt link {account.provider} --account {account.name}"
                err.print(Text.assemble((f"{account.name}: ", "yellow"), str(exc), fix))
            except Car2MqttError as exc:
                err.print(Text.assemble((f"{account.name}: ", "yellow"), str(exc)))
            finally:
                await provider.aclose()
    return found


def _charging_text(state: VehicleState) -> str | None:
    # A car that reports no charging data at all (a petrol car) never has any: no cell.
    if state.charge_state is not ChargeState.UNKNOWN:
        return state.charge_state.value
    if state.charging is not None:
        return "charging" if state.charging else "not charging"
    return None if state.plugged_in is None else ("plugged in" if state.plugged_in else "unplugged")


_VEHICLE_COLUMNS: tuple[tuple[str, Callable[[VehicleState], str | None]], ...] = (
    ("account", lambda s: s.ref.account),
    ("vehicle", lambda s: s.ref.vehicle_id),
    ("name", lambda s: s.info.name),
    ("battery", lambda s: None if s.battery_pct is None else f"{s.battery_pct:.0f} %"),
    ("range", lambda s: None if s.range_km is None else f"{s.range_km:.0f} km"),
    ("charging", _charging_text),
    ("fuel", lambda s: None if s.fuel_level_l is None else f"{s.fuel_level_l:.0f} l"),
    (
        "last seen",
        lambda s: s.last_seen.astimezone().strftime("%Y-%m-%d %H:%M") if s.last_seen else None,
    ),
)


def _vehicle_table(states: list[VehicleState], *, title: str) -> None:
    out = Console()
    rows = [[cell(s) for _, cell in _VEHICLE_COLUMNS] for s in states]
    # Only columns some car has; a car without a thing gets an empty cell, never "unknown".
    shown = [i for i in range(len(_VEHICLE_COLUMNS)) if not rows or any(r[i] for r in rows)]
    names = [_VEHICLE_COLUMNS[i][0] for i in shown]
    # No box: ids copy out clean, and a table of long ids fits 120 columns.
    table = Table(title=title, box=None, header_style="bold", title_style="bold")
    for name in names:
        table.add_column(name, no_wrap=True, overflow="fold")
    for row in rows:
        table.add_row(*(row[i] or "" for i in shown))
    if out.measure(table, options=out.options.update_width(1_000_000)).maximum <= out.width:
        out.print(table)
    else:
        # Too narrow for the table: one car per two lines, so ids are never folded or cut.
        listing = Console(soft_wrap=True)
        listing.print(title, style="bold", markup=False)
        for row in rows:
            listing.print("  ".join(c for c in row[:3] if c), markup=False, highlight=False)
            rest = ", ".join(
                f"{name} {row[i]}" for name, i in zip(names, shown, strict=True) if i > 2 and row[i]
            )
            listing.print(f"    {rest}", markup=False, highlight=False)
    if not states:
        out.print("No vehicles. Link some with: car2mqtt link enode --account NAME")


@app.command()
def status(config: ConfigOption = None) -> None:
    """Show each account's link, token and vehicles, from the bridge's state file."""
    from car2mqtt.store import Store

    def go() -> None:
        cfg = load_config(config)
        out = Console()
        with Store.open(cfg.store) as store:
            statuses = store.account_statuses()
            table = Table(title=f"car2mqtt status ({cfg.store})")
            for column in ("account", "provider", "link", "token", "vehicles", "problem"):
                table.add_column(column)
            for account in cfg.accounts:
                link, problem = statuses.get(account.name, ("unknown", None))
                table.add_row(
                    account.name,
                    account.provider,
                    link,
                    _token_age(store.load_token(account.name)),
                    str(len(store.known_vehicles(account.name))),
                    problem or "",
                )
            out.print(table)
            for account in cfg.accounts:
                if statuses.get(account.name, ("", None))[0] == "relink_required":
                    out.print(
                        f"[bold red]{account.name} needs re-linking:[/] "
                        f"car2mqtt link {account.provider} --account {account.name}"
                    )

    _guard(go)


def _token_age(token: dict[str, object] | None) -> str:
    if not token:
        return "none yet"
    expires = token.get("expires_at")
    if not isinstance(expires, (int, float)):
        return "unreadable"
    left = expires - time.time()
    return f"valid {left / 60:.0f} more min" if left > 0 else "expired (renewed on next use)"


mqtt_app = typer.Typer(
    help="Watch and publish on the configured MQTT broker, without mosquitto's clients.",
    no_args_is_help=True,
)
app.add_typer(mqtt_app, name="mqtt")


def _broker(config: Path | None) -> tuple[Config, BrokerSettings]:
    from car2mqtt.runtime import broker_settings

    cfg = load_config(config)
    return cfg, broker_settings(cfg)


@mqtt_app.command("watch")
def mqtt_watch(
    topics: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="TOPIC", help="Topics or filters to watch (default: <base_topic>/#)."
        ),
    ] = None,
    config: ConfigOption = None,
    count: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="Stop after N messages.")
    ] = None,
) -> None:
    """Print every message on the broker's TOPICs as `topic payload`, like mosquitto_sub -v."""
    from car2mqtt.tools import watch

    def go() -> None:
        cfg, settings = _broker(config)
        patterns = topics or [f"{cfg.mqtt.base_topic}/#"]
        _run_async(watch(settings, patterns, lambda line: print(line, flush=True), count))

    _guard(go)


@mqtt_app.command("publish")
def mqtt_publish(
    topic: Annotated[str, typer.Argument(metavar="TOPIC", help="Where to publish.")],
    payload: Annotated[str, typer.Argument(metavar="PAYLOAD", help="What to publish.")],
    config: ConfigOption = None,
    retain: Annotated[bool, typer.Option(help="Ask the broker to keep the message.")] = False,
) -> None:
    """Publish one message on the configured broker, like mosquitto_pub."""
    from car2mqtt.tools import publish

    def go() -> None:
        _, settings = _broker(config)
        _run_async(publish(settings, topic, payload, retain=retain))

    _guard(go)


@app.command("sim-admin")
def sim_admin(
    url: Annotated[
        str,
        typer.Argument(
            metavar="URL",
            help="An admin API address, e.g. http://127.0.0.1:8700/admin/clock/advance.",
        ),
    ],
    body: Annotated[
        str | None, typer.Argument(metavar="JSON", help="POST this JSON body (else GET).")
    ] = None,
) -> None:
    """Call the simulator's admin API, as the demo's curl lines do."""
    from car2mqtt.tools import admin_call

    _guard(lambda: print(admin_call(url, body), flush=True))


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro`; SIGTERM and Ctrl-C stop it cleanly (the bridge says offline on its way out)."""

    async def main() -> T:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            # Ctrl-C too: asyncio's own SIGINT handling cancels the main task and then every
            # task still alive, so uvicorn's lifespan could be cut off with a traceback.
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, task.cancel)
        return await task

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        raise typer.Exit(0) from None


def _guard(action: Callable[[], None]) -> None:
    """Run `action`, turning car2mqtt's own errors into one clear line and exit code 2."""
    try:
        action()
    except Car2MqttError as exc:
        # Text, not markup: messages quote user input such as accounts[home].
        err.print(Text.assemble(("error: ", "bold red"), str(exc)))
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    except BaseExceptionGroup as group:
        # Task groups wrap what a task raised; a user's own mistake still gets one line.
        mine = group.subgroup(lambda e: isinstance(e, (Car2MqttError, OSError)))
        if mine is None or mine.exceptions != group.exceptions:
            raise
        first = mine.exceptions[0]
        err.print(Text.assemble(("error: ", "bold red"), str(first)))
        raise typer.Exit(2) from None
    except OSError as exc:
        err.print(Text.assemble(("error: ", "bold red"), str(exc.strerror or exc)))
        raise typer.Exit(2) from None


def _no_type(ctx: object) -> None:
    return None


def _plain_metavars(command: Any) -> None:
    """Give every parameter a plain metavar, so help shows no `<bool>` or `<str>` type noise."""
    help_option = command.get_help_option(command.context_class(command))
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if param.param_type_name == "argument":
            # An argument's name column already shows its metavar; the type column repeats it.
            param.display_type_rich = _no_type
        if param.metavar is None:
            flag = getattr(param, "is_flag", False) or getattr(param, "count", False)
            param.metavar = "" if flag else str(param.name or "value").upper()
    for sub in getattr(command, "commands", {}).values():
        _plain_metavars(sub)


def main() -> None:
    """Run the command line."""
    import typer.main

    command = typer.main.get_command(app)
    _plain_metavars(command)
    command()


if __name__ == "__main__":
    main()
