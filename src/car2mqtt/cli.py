"""The `car2mqtt` command line: wiring only, no logic.

The generic commands (`run`, `status`, `vehicles`, `config check`, `mqtt ...`) name no
provider: the registry (`providers/registry.py`) says which exist, and each plug-in adds its own
`car2mqtt link <name>` command; the simulator adds `simulate` (`simulator/cli.py`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from car2mqtt import __version__
from car2mqtt.clock import SystemClock
from car2mqtt.commandline import (
    ConfigOption,
    Host,
    Port,
    Seed,
    TimeFactor,
    Vehicles,
    err,
    guard,
    run_async,
)
from car2mqtt.config import AccountBase, Config, config_path, describe
from car2mqtt.errors import Car2MqttError, ConfigError, ReauthRequired
from car2mqtt.history.cli import add_history_commands
from car2mqtt.logs import setup_logging
from car2mqtt.models import ChargeState, VehicleState
from car2mqtt.mqtt.link import BrokerSettings
from car2mqtt.mqtt.topics import Topics
from car2mqtt.providers.base import gather_pages
from car2mqtt.providers.plugin import Wiring
from car2mqtt.providers.registry import PLUGINS, create_provider, linkable, load_config
from car2mqtt.simulator.cli import PROFILES, add_simulate_command

if TYPE_CHECKING:
    from car2mqtt.store import Store

# Each command imports what it alone needs: `car2mqtt run` on a Raspberry Pi should not carry
# the simulator, the demo's broker or the QR encoder in memory.
__all__ = ["PROFILES", "app", "main"]

A = TypeVar("A", bound=AccountBase)
app = typer.Typer(
    name="car2mqtt",
    help="Connected cars in Home Assistant over MQTT, with offline simulators of their clouds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


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


add_simulate_command(app)
add_history_commands(app)


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
        run_async(run_config(cfg))

    guard(go)


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
    web_port: Annotated[
        int,
        typer.Option(min=1, max=65535, metavar="PORT", help="Port of the web UI (on 127.0.0.1)."),
    ] = 8780,
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
    from car2mqtt.demo import print_banner, run_demo

    def go() -> None:
        setup_logging("info", "text")
        run_async(
            run_demo(
                host=host,
                port=port,
                mqtt_host=mqtt_host,
                mqtt_port=mqtt_port,
                broker_url=broker,
                vehicles=vehicles,
                time_factor=time_factor,
                seed=seed,
                announce=print_banner,
                state_dir=state_dir,
                web_port=web_port,
            )
        )

    guard(go)


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

    guard(go)


webhook_app = typer.Typer(
    help="Webhooks: how the clouds push changes to the bridge.", no_args_is_help=True
)
app.add_typer(webhook_app, name="webhook")


@webhook_app.command("status")
def webhook_status(config: ConfigOption = None) -> None:
    """Show each account's webhook: where it points, whether the cloud has it active, deliveries."""
    from car2mqtt.store import Store

    def go() -> None:
        cfg = _load(config)
        with Store.open(cfg.store) as store:
            rows = run_async(_webhook_rows(cfg, store))
        table = Table(title=f"car2mqtt webhooks ({cfg.store})")
        for column in ("account", "webhook", "active", "last success", "received", "url"):
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        Console().print(table)

    guard(go)


@webhook_app.command("rotate")
def webhook_rotate(
    account: Annotated[str, typer.Option(help="The account whose webhook gets a new secret.")],
    config: ConfigOption = None,
) -> None:
    """Give an account's webhook a new secret (a running bridge takes it up by itself)."""
    from car2mqtt.store import Store

    def go() -> None:
        cfg = _load(config)
        with Store.open(cfg.store) as store:
            run_async(_rotate(cfg, store, account))
        Console().print(f"account {account}: the webhook has a new secret.")

    guard(go)


async def _webhook_rows(cfg: Config, store: Store) -> list[list[str]]:
    from car2mqtt.bridge.push import Registration, deliveries_key
    from car2mqtt.providers.push import push_channel
    from car2mqtt.web.views import ago

    rows = []
    for acct in cfg.accounts:
        provider = create_provider(acct, clock=SystemClock(), persistence=store)
        try:
            channel = push_channel(provider)
            if channel is None:
                rows.append([acct.name, "off (polled)", "", "", "", ""])
                continue
            saved = Registration.load(store, acct.name)
            if saved is None or saved.subscription_id is None:
                rows.append([acct.name, "not yet subscribed", "", "", "", ""])
                continue
            found = await channel.describe(saved.subscription_id)
            log = json.loads(store.get_meta(deliveries_key(acct.name)) or "[]")
            received = ", ".join(
                f"{ago(time.time() - entry['at'])} ({entry['events']} events, {entry['outcome']})"
                for entry in log[:3]
            )
            if found is None:
                rows.append([acct.name, "gone at the cloud", "", "", received, saved.url or ""])
                continue
            last = found.last_success.isoformat(timespec="seconds") if found.last_success else ""
            active = "yes" if found.active else "NO (the bridge tests it to revive it)"
            rows.append([acct.name, found.id, active, last, received or "none yet", found.url])
        finally:
            await provider.aclose()
    return rows


async def _rotate(cfg: Config, store: Store, name: str) -> None:
    from car2mqtt.bridge.push import receiver_path, rotate
    from car2mqtt.providers.push import push_channel

    acct = _named(cfg, name)
    provider = create_provider(acct, clock=SystemClock(), persistence=store)
    try:
        channel = push_channel(provider)
        if channel is None:
            msg = f"account {name} receives no webhooks (it has no webhook.public_url)"
            raise ConfigError(msg)
        path = receiver_path(provider.spec.name, name, cfg.web.base_path)
        await rotate(channel, store, name, channel.public_url + path, SystemClock())
    finally:
        await provider.aclose()


link_app = typer.Typer(help="Link cars to an account, without curl.", no_args_is_help=True)
app.add_typer(link_app, name="link")


def _named(cfg: Config, name: str) -> AccountBase:
    """Return the account called `name`, or say which accounts there are."""
    try:
        return cfg.account(name)
    except KeyError:
        names = ", ".join(a.name for a in cfg.accounts)
        msg = f"no account named {name!r} in the configuration; it has: {names}"
        raise ConfigError(msg) from None


def _account_for(cfg: Config, name: str, model: type[A]) -> A:
    """Return the account called `name`, which a `model`'s link command is run for."""
    acct = _named(cfg, name)
    if isinstance(acct, model):
        return acct
    plugin = PLUGINS.get(acct.provider)
    label = plugin.title if plugin is not None else acct.provider
    article = "an" if label[:1].lower() in "aeiou" else "a"
    if plugin is not None and plugin.link_command is not None:
        fix = f"use car2mqtt link {acct.provider} --account {name}"
    else:
        fix = "it needs no linking"
    msg = f"account {name!r} is {article} {label} account: {fix}"
    raise ConfigError(msg)


class _Linker:
    """The `LinkRunner` every plug-in's link command runs its flow with."""

    def link(
        self,
        config: Path | None,
        account: str,
        model: type[A],
        flow: Callable[[A, Wiring], Awaitable[Sequence[VehicleState]]],
        *,
        title: str,
        done: str | None = None,
    ) -> None:
        def go() -> None:
            cfg = _load(config)
            acct = _account_for(cfg, account, model)
            vehicles = run_async(_linked(cfg, acct, flow))
            if done is not None:
                Console().print(done)
            _vehicle_table(vehicles, title=title, providers=[acct.provider])

        guard(go)


async def _linked(
    cfg: Config, acct: A, flow: Callable[[A, Wiring], Awaitable[Sequence[VehicleState]]]
) -> list[VehicleState]:
    from car2mqtt.store import Store

    with Store.open(cfg.store) as store:
        vehicles = list(await flow(acct, Wiring(SystemClock(), persistence=store)))
        store.save_account_status(acct.name, "ok", None)
        # What `car2mqtt status` counts: the cars the link just listed.
        store.save_vehicles(acct.name, [v.ref for v in vehicles])
        return vehicles


for _plugin in PLUGINS.values():
    if _plugin.link_command is not None:
        _plugin.link_command(link_app, _Linker())


@app.command()
def vehicles(config: ConfigOption = None) -> None:
    """Ask each configured cloud for its vehicles and show them in a table."""

    def go() -> None:
        cfg = _load(config)
        states = run_async(_poll_all(cfg))
        _vehicle_table(states, title="Vehicles", providers=[a.provider for a in cfg.accounts])

    guard(go)


async def _poll_all(cfg: Config) -> list[VehicleState]:
    from car2mqtt.store import Store

    found: list[VehicleState] = []
    with Store.open(cfg.store) as store:
        for account in cfg.accounts:
            provider = create_provider(account, clock=SystemClock(), persistence=store)
            try:
                found.extend(await gather_pages(provider.pages()))
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


def _vehicle_table(
    states: list[VehicleState], *, title: str, providers: Iterable[str] = ()
) -> None:
    """Show `states`; with none, say how to link cars (first for one of `providers`)."""
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
        can_link = linkable(list(providers))
        hint = (
            f" Link some with: car2mqtt link {can_link[0].name} --account NAME" if can_link else ""
        )
        out.print(f"No vehicles.{hint}")


@app.command()
def health(config: ConfigOption = None) -> None:
    """Ask the running bridge whether it is healthy: exit 0 if so, 1 if not (for HEALTHCHECK)."""
    import httpx

    def go() -> None:
        web = load_config(config).web
        if not web.enabled:
            msg = "the web UI is off (web.enabled: false), and the health probe is part of it"
            raise ConfigError(msg)
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(web.host, web.host)  # noqa: S104
        url = (
            f"http://{'[' + host + ']' if ':' in host else host}:{web.port}{web.base_path}/healthz"
        )
        try:
            answer = httpx.get(url, timeout=4)
        except httpx.HTTPError as exc:
            typer.echo(f"unhealthy: no answer from {url} ({exc})")
            raise typer.Exit(1) from None
        if answer.status_code == 200:
            typer.echo("healthy: connected to the MQTT broker")
            return
        typer.echo(f"unhealthy: {url} answered {answer.status_code} (not connected to MQTT?)")
        raise typer.Exit(1)

    guard(go)


@app.command()
def status(config: ConfigOption = None) -> None:
    """Show each account's link, token and vehicles: as the running bridge sees them, if any.

    The running bridge's state and health are read from the broker (a couple of seconds at
    most); without a running bridge or a broker, the state file says what it last saw.
    """
    from car2mqtt.store import Store

    def go() -> None:
        cfg = load_config(config)
        out = Console()
        live, note = _running_bridge(cfg)
        with Store.open(cfg.store) as store:
            statuses = store.account_statuses()
            if live is not None:
                bridge_state, health = live
                for name, seen in _live_accounts(bridge_state, health).items():
                    statuses[name] = seen
            source = "the running bridge" if live is not None else str(cfg.store)
            table = Table(title=f"car2mqtt status ({source})")
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
            if live is not None:
                out.print(_health_line(live[1]), markup=False, highlight=False)
                for line in _budget_lines(live[1]):
                    out.print(line, markup=False, highlight=False)
            else:
                out.print(note, markup=False, highlight=False)
            for account in cfg.accounts:
                if statuses.get(account.name, ("", None))[0] == "relink_required":
                    out.print(
                        f"[bold red]{account.name} needs re-linking:[/] "
                        f"car2mqtt link {account.provider} --account {account.name}"
                    )

    guard(go)


def _running_bridge(cfg: Config) -> tuple[tuple[dict[str, Any], dict[str, Any]] | None, str]:
    """Return the running bridge's (state, health) from the broker, or None and why not."""
    from car2mqtt.runtime import broker_settings
    from car2mqtt.tools import retained

    topics = Topics(cfg.mqtt.base_topic)
    wanted = [topics.bridge_availability, topics.bridge_state, topics.bridge_health]
    fallback = "showing what the state file last saw"
    try:
        found = run_async(retained(broker_settings(cfg), wanted, timeout_s=2.0))
    except Car2MqttError as exc:
        return None, f"The MQTT broker cannot be reached ({exc}): {fallback}."
    if found.get(topics.bridge_availability) != b"online":
        return (
            None,
            f"No bridge is running ({topics.bridge_availability} is not online): {fallback}.",
        )
    try:
        state = json.loads(found.get(topics.bridge_state) or b"{}")
        health = json.loads(found.get(topics.bridge_health) or b"{}")
    except ValueError:
        return None, f"The running bridge's topics are unreadable: {fallback}."
    if not isinstance(state, dict) or not isinstance(health, dict):
        return None, f"The running bridge's topics are unreadable: {fallback}."
    return (state, health), ""


def _live_accounts(state: dict[str, Any], health: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """Each account's (link, problem) as the running bridge says: health first, then state."""
    seen: dict[str, tuple[str, Any]] = {}
    for source in (state.get("accounts"), health.get("accounts")):
        for name, account in (source or {}).items():
            if isinstance(account, dict) and isinstance(account.get("link"), str):
                problem = account.get("problem", seen.get(name, ("", None))[1])
                seen[name] = (account["link"], problem)
    return seen


def _health_line(health: dict[str, Any]) -> str:
    """One line of the running bridge's health: uptime, memory and MQTT counters."""
    if not health:
        return "The bridge is running; its health is not published yet."
    mqtt = health.get("mqtt") or {}
    minutes = int(health.get("uptime_s") or 0) // 60
    return (
        f"The bridge is running: up {minutes // 60} h {minutes % 60} min, "
        f"{health.get('rss_mb')} MB, CPU {health.get('cpu_pct')} %, MQTT {mqtt.get('sent')} "
        f"sent, {mqtt.get('received')} received, {mqtt.get('reconnects')} reconnects."
    )


def _budget_lines(health: dict[str, Any]) -> list[str]:
    """One line per account: its API calls, the budget left and the poll interval now."""
    lines = []
    accounts = health.get("accounts")
    for name, account in (accounts if isinstance(accounts, dict) else {}).items():
        budget = account.get("budget") if isinstance(account, dict) else None
        if not isinstance(budget, dict):
            continue
        cap = budget.get("calls_per_vehicle_month") or budget.get("calls_per_month")
        left = f"; {budget.get('left')} of {cap} left" if cap is not None else ", no cap"
        interval = budget.get("poll_interval_s")
        every = (
            f"; polling every {_duration(interval)}" if isinstance(interval, int | float) else ""
        )
        lines.append(
            f"{name}: API calls {budget.get('calls_hour')} in the last hour, "
            f"{budget.get('calls_today')} today, {budget.get('calls_month')} this month"
            f"{left}{every}"
        )
    return lines


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


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
        patterns = topics or [Topics(cfg.mqtt.base_topic).everything]
        run_async(watch(settings, patterns, lambda line: print(line, flush=True), count))

    guard(go)


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
        run_async(publish(settings, topic, payload, retain=retain))

    guard(go)


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

    guard(lambda: print(admin_call(url, body), flush=True))


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
