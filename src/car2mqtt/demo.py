"""The demo: the simulated clouds, an embedded MQTT broker and the bridge, in one process.

Its state lives in a named folder (not a temporary one), beside a ready configuration file with
the simulator's URLs and test credentials, so `car2mqtt status`, `vehicles` and `link` work
against the running demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from iotcore import Broker
from iotcore.broker import port_in_use
from rich.console import Console

from car2mqtt.bridge.timing import Timing
from car2mqtt.config import Config
from car2mqtt.errors import ConfigError
from car2mqtt.files import write_private
from car2mqtt.logs import REDACTOR
from car2mqtt.mqtt.link import BrokerSettings
from car2mqtt.mqtt.topics import Topics
from car2mqtt.net import base_url, bind, connect_host, http_url, is_wildcard, reachable_host
from car2mqtt.providers.registry import load_config
from car2mqtt.runtime import (
    HistoryOptions,
    WebOptions,
    broker_settings,
    budgets_of,
    history_options,
    providers_of,
    secrets_of,
    serve,
)
from car2mqtt.serving import serve_http
from car2mqtt.simulator.app import SimOptions, build_simulation
from car2mqtt.simulator.server import server_for
from car2mqtt.store import Store

ENODE_ACCOUNT = "demo"
XEE_ACCOUNT = "demo-xee"
CONFIG_NAME = "car2mqtt.yaml"
STORE_NAME = "car2mqtt.db"


@dataclass(frozen=True, slots=True)
class DemoInfo:
    """Where everything in the demo is."""

    simulator_url: str
    admin_url: str
    broker_host: str
    broker_port: int
    embedded_broker: bool
    vehicle_ids: list[str]
    xee_vehicle_ids: list[str]
    time_factor: float
    state_dir: Path = Path()
    config_path: Path = Path()
    xee_username: str = ""
    xee_password: str = ""
    # mosquitto_sub -h/-p reach the broker only without a login or TLS.
    broker_plain: bool = True
    # Where HA on another machine finds the broker (the embedded one on a wildcard address).
    broker_public: str = ""
    base_topic: str = "car2mqtt"
    discovery_prefix: str = "homeassistant"
    web_url: str = ""


def default_state_dir() -> Path:
    """Where the demo keeps its state unless told: `$XDG_CACHE_HOME/car2mqtt/demo`."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "car2mqtt" / "demo"


@contextlib.contextmanager
def state_folder(path: Path) -> Iterator[Path]:
    """Own the demo's state folder for the block: one demo at a time, a fresh state file."""
    path = path.expanduser().absolute()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = os.open(path / "demo.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        msg = f"cannot use {path} for the demo's state: {exc.strerror or exc} (see --state-dir)"
        raise ConfigError(msg) from None
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            msg = (
                f"another car2mqtt demo is running with {path}; stop it, or give this one "
                "its own --state-dir"
            )
            raise ConfigError(msg) from None
        # The simulator starts anew each time, so tokens and cars from a last run mean nothing.
        for stale in (STORE_NAME, f"{STORE_NAME}-journal"):
            with contextlib.suppress(FileNotFoundError):
                (path / stale).unlink()
        yield path
    finally:
        os.close(lock)


DEMO_CLIENT_ID = "car2mqtt-demo"


def demo_config(
    info: dict[str, Any], broker: BrokerSettings, *, embedded: bool, web_port: int = 8780
) -> str:
    """Return the YAML of a configuration for the demo's clouds, accounts and broker."""
    host = broker.host
    mqtt: dict[str, Any] = {
        "url": f"{'mqtts' if broker.tls else 'mqtt'}://{f'[{host}]' if ':' in host else host}"
        f":{broker.port}"
    }
    if broker.username:
        mqtt["username"] = broker.username
    if broker.password:
        mqtt["password"] = broker.password
    if embedded:
        mqtt["protocol"] = "3.1.1"  # what the embedded broker speaks
    # Its own id: a `car2mqtt run` beside the demo with the default id would take turns with
    # it on the broker, each dropping the other.
    mqtt["client_id"] = DEMO_CLIENT_ID
    enode, xee = info["enode"], info["xee"]
    document = {
        "mqtt": mqtt,
        "store": STORE_NAME,
        # This machine only: the UI can control the cars, and the demo sets no password.
        "web": {"host": "127.0.0.1", "port": web_port},
        "accounts": [
            {
                "name": ENODE_ACCOUNT,
                "provider": "enode",
                "api_url": enode["apiUrl"],
                "token_url": enode["tokenUrl"],
                "client_id": enode["clientId"],
                "client_secret": enode["clientSecret"],
                "user_id": "demo",
                # Enode pushes every change to the demo's own web server: no public address
                # is needed on loopback (a real Enode needs one it can reach, see docs).
                "webhook": {"public_url": f"http://127.0.0.1:{web_port}"},
            },
            {
                "name": XEE_ACCOUNT,
                "provider": "xee",
                "api_url": xee["apiUrl"],
                "client_id": xee["clientId"],
                "client_secret": xee["clientSecret"],
                # The password grant: the demo needs no browser. `car2mqtt link xee` works too.
                "username": xee["username"],
                "password": xee["password"],
            },
        ],
    }
    header = (
        "# Written by `car2mqtt demo` each time it starts, for the clouds and broker it runs;\n"
        "# valid while it runs. The secrets in it are the simulator's public test values\n"
        "# (and your broker's login, if you gave one). The state file is beside this one.\n"
        "# Use it with: car2mqtt status | vehicles | link enode | link xee --config <this file>\n"
        "# A bridge of your own beside the demo needs another mqtt.client_id and base_topic.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False)


@contextlib.contextmanager
def embedded_broker(host: str, port: int) -> Iterator[None]:
    """Run iotcore's broker (rumqttd) for the duration of the block."""
    if port_in_use(port, connect_host(host)):
        msg = (
            f"port {port} is taken (another MQTT broker?); use it with "
            f"--broker mqtt://127.0.0.1:{port}, or pick another --mqtt-port"
        )
        raise ConfigError(msg)
    broker = Broker(port=port, listen=host).start()
    try:
        yield
    finally:
        broker.stop()


async def run_demo(
    *,
    host: str,
    port: int,
    mqtt_host: str,
    mqtt_port: int,
    broker_url: str | None,
    vehicles: int,
    time_factor: float,
    seed: int,
    announce: Callable[[DemoInfo], None],
    state_dir: Path | None = None,
    web_port: int = 8780,
) -> None:
    """Run the demo until cancelled."""
    sock = bind(host, port)
    sim = build_simulation(SimOptions(seed=seed, vehicles=vehicles, time_factor=time_factor))
    # The bridge, the config file and the printed commands run on this machine.
    url = (
        http_url(connect_host(host), sock.getsockname()[1]) if is_wildcard(host) else base_url(sock)
    )
    info = sim.describe(url)
    if broker_url is None:
        given = BrokerSettings(connect_host(mqtt_host), mqtt_port, protocol="3.1.1")
    else:
        given = BrokerSettings.from_url(broker_url)
    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(state_folder(state_dir or default_state_dir()))
        config_path = folder / CONFIG_NAME
        # Bound first: the Enode account's webhooks come to this very port.
        web_sock = bind("127.0.0.1", web_port, "choose another --web-port")
        stack.callback(web_sock.close)
        write_private(
            config_path,
            demo_config(
                info, given, embedded=broker_url is None, web_port=web_sock.getsockname()[1]
            ),
        )
        # The demo runs from the file it wrote, so what it prints is what it runs.
        config = load_config(config_path, env={})
        for secret in secrets_of(config):
            REDACTOR.add(secret)  # a --broker password, above all
        settings = broker_settings(config)
        if broker_url is None:
            stack.enter_context(embedded_broker(mqtt_host, mqtt_port))
        store = stack.enter_context(Store.open(config.store))
        server = server_for(sim, sock, embedded=True)
        # The bridge lives on the simulator's clock, so token lifetimes and polling agree.
        # Enode's cadence in simulated minutes becomes seconds here: poll to match.
        scale = max(time_factor, 1.0)
        budgets = budgets_of(config, sim.world.clock, rate=scale)
        providers = providers_of(config, sim.world.clock, store, budgets)
        timing = Timing(
            poll_interval_s=max(2.0, 300.0 / scale),
            active_poll_interval_s=max(1.0, 120.0 / scale),
            command_poll_s=max(0.5, 15.0 / scale),
            after_command_poll_s=max(1.0, 45.0 / scale),
            heartbeat_s=60.0,
            # The watchdog reads the simulator's clock (Enode's heartbeats are 5 simulated
            # minutes apart); the safety listing is a real wait, scaled like the polls.
            push_watchdog_s=900.0,
            safety_poll_s=max(10.0, 3600.0 / scale),
        )
        xee = info["xee"]
        plain = broker_url is None or not (settings.tls or settings.username)
        public = (
            f"{reachable_host(mqtt_host)}:{mqtt_port}"
            if broker_url is None
            else settings.describe()
        )
        async with asyncio.TaskGroup() as tg:
            tg.create_task(serve_http(server, sock))
            tg.create_task(
                serve(
                    providers,
                    store=store,
                    broker=settings,
                    topics=Topics(config.mqtt.base_topic, config.mqtt.discovery_prefix),
                    clock=sim.world.clock,
                    timing=timing,
                    web=WebOptions(config, sock=web_sock),
                    history=demo_history(config, scale),
                    budgets=budgets,
                )
            )
            announce(
                DemoInfo(
                    simulator_url=url,
                    admin_url=info["adminUrl"],
                    broker_host=settings.host,
                    broker_port=settings.port,
                    embedded_broker=broker_url is None,
                    vehicle_ids=info["users"].get("demo", []),
                    xee_vehicle_ids=[v for vs in xee["users"].values() for v in vs],
                    time_factor=time_factor,
                    state_dir=folder,
                    config_path=config_path,
                    xee_username=xee["username"],
                    xee_password=xee["password"],
                    broker_plain=plain,
                    broker_public=public,
                    base_topic=config.mqtt.base_topic,
                    discovery_prefix=config.mqtt.discovery_prefix,
                    web_url=f"{base_url(web_sock)}/",
                )
            )


# --- the printed instructions -------------------------------------------------------------------


def self_command() -> list[str]:
    """How to run this very car2mqtt again, by absolute path, whatever PATH holds."""
    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name.startswith("car2mqtt") and not argv0.endswith(".py"):
        found = argv0 if os.sep in argv0 else shutil.which(argv0)
        if found:
            return [str(Path(found).absolute())]
    return [sys.executable, "-m", "car2mqtt"]


@dataclass(frozen=True, slots=True)
class Instructions:
    """What the demo tells the user: titled commands, then notes."""

    steps: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _on_path(executable: str, which: Callable[[str], str | None]) -> bool:
    found = which(Path(executable).name)
    return found is not None and Path(found).absolute() == Path(executable).absolute()


def instructions(
    info: DemoInfo,
    *,
    car2mqtt: list[str] | None = None,
    which: Callable[[str], str | None] = shutil.which,
) -> Instructions:
    """Return the commands to try against the running demo, each runnable as printed."""
    me = car2mqtt or self_command()
    config = str(info.config_path)

    def mine(*args: str) -> str:
        return shlex.join([*me, *args])

    first = info.vehicle_ids[0] if info.vehicle_ids else "<vehicle id>"
    xee_first = info.xee_vehicle_ids[0] if info.xee_vehicle_ids else "<vehicle id>"
    mosquitto = info.broker_plain and bool(which("mosquitto_sub")) and bool(which("mosquitto_pub"))
    curl = bool(which("curl"))
    at = ["-h", info.broker_host, "-p", str(info.broker_port)]

    def watch(pattern: str) -> str:
        if mosquitto:
            return shlex.join(["mosquitto_sub", *at, "-t", pattern, "-v"])
        return mine("mqtt", "watch", "--config", config, pattern)

    def send(topic: str, payload: str) -> str:
        if mosquitto:
            return shlex.join(["mosquitto_pub", *at, "-t", topic, "-m", payload])
        return mine("mqtt", "publish", "--config", config, topic, payload)

    def admin(path: str, body: str) -> str:
        url = f"{info.admin_url}{path}"
        if curl:
            return shlex.join(["curl", "-s", "-X", "POST", "-d", body, url])
        return mine("sim-admin", url, body)

    login = f"{info.xee_username} / {info.xee_password}"
    steps = [
        (
            "See each account's link, token and API calls, as the running bridge reports them",
            mine("status", "--config", config),
        ),
        ("Ask the simulated clouds for the cars now", mine("vehicles", "--config", config)),
        (
            "See the Enode cars' webhook: their changes are pushed, polling is the safety net",
            mine("webhook", "status", "--config", config),
        ),
        (
            "See the charging sessions recorded so far (the Volkswagen's is open)",
            mine("history", "sessions", "--config", config),
        ),
        ("Watch the cars' state", watch(f"{info.base_topic}/#")),
        ("See what Home Assistant would discover", watch(f"{info.discovery_prefix}/#")),
        (
            "Plug the Tesla in (admin API); Enode's cache shows it within 7 simulated minutes",
            admin(f"/enode/vehicles/{first}/plug-in", '{"startCharging":false}'),
        ),
        (
            "Once its state says plugged_in ON, start charging it, as Home Assistant's switch "
            "would",
            send(f"{info.base_topic}/enode/{first}/charging/set", "ON"),
        ),
        (
            "Set its maximum charging current to 10 A, as Home Assistant's number would",
            send(f"{info.base_topic}/enode/{first}/max_current/set", "10"),
        ),
        (
            "Send the first Xee car (petrol) on a drive",
            admin(f"/xee/vehicles/{xee_first}/drive", '{"speedKmh":50}'),
        ),
        ("Jump an hour ahead", admin("/clock/advance", '{"seconds":3600}')),
        (
            "Link more cars through the simulated Enode Link UI (any login works there)",
            mine("link", "enode", "--account", ENODE_ACCOUNT, "--config", config),
        ),
        (
            f"Authorize car2mqtt at the simulated Xee in a browser (test login: {login})",
            mine("link", "xee", "--account", XEE_ACCOUNT, "--config", config),
        ),
    ]
    notes: list[str] = []
    if not mosquitto:
        if not info.broker_plain:
            notes.append(
                "The MQTT lines use car2mqtt mqtt, which reads the broker's login from the "
                "file: mosquitto_sub would need your password on the command line."
            )
        else:
            notes.append(
                "mosquitto_sub and mosquitto_pub are not installed, so the MQTT lines use "
                f"car2mqtt mqtt instead. {install_hint(which)}"
            )
    if not curl:
        notes.append("curl is not installed, so the admin API lines use car2mqtt sim-admin.")
    if len(me) == 1 and not _on_path(me[0], which):
        folder = str(Path(me[0]).parent)
        notes.append(
            "car2mqtt is not on your PATH, so these lines name it in full. To type plain "
            f'car2mqtt: export PATH={shlex.quote(folder)}:"$PATH" (or install it for good '
            "with pipx install <this repository>)."
        )
    return Instructions(steps, notes)


def install_hint(which: Callable[[str], str | None] = shutil.which) -> str:
    """How to install mosquitto's command-line clients on this machine."""
    if which("brew") or sys.platform == "darwin":
        return "To install them: brew install mosquitto"
    if which("apt-get"):
        sudo = "" if os.geteuid() == 0 else "sudo "
        return f"To install them: {sudo}apt-get install mosquitto-clients"
    return "Your system's package manager has them, usually as mosquitto-clients."


def print_banner(info: DemoInfo) -> None:
    """Print what the demo runs, where, and the commands to try on it."""
    out = Console(soft_wrap=True)
    out.print(f"[bold green]car2mqtt demo[/] is running. Time runs {info.time_factor:g}x faster.")
    if info.web_url:
        out.print(
            f"Open the web UI: {info.web_url} (the cars, their commands, and linking accounts)",
            markup=False,
            highlight=False,
        )
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


def demo_history(config: Config, scale: float) -> HistoryOptions | None:
    """History as `run` keeps it, with the cloud's figures asked for on the demo's clock."""
    options = history_options(config)
    if options is None:
        return None
    return dataclasses.replace(options, cloud_delay_s=max(5.0, options.cloud_delay_s / scale))
