"""The demo: the simulated clouds, an embedded MQTT broker and the bridge, in one process."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from iotcore import Broker
from iotcore.broker import port_in_use

from car2mqtt.bridge import Timing
from car2mqtt.errors import ConfigError
from car2mqtt.mqtt.link import BrokerSettings
from car2mqtt.mqtt.topics import Topics
from car2mqtt.net import base_url, bind
from car2mqtt.providers.enode import EnodeProvider
from car2mqtt.providers.xee import XeeProvider
from car2mqtt.runtime import serve
from car2mqtt.simulator.app import SimOptions, build_simulation
from car2mqtt.simulator.server import server_for
from car2mqtt.store import Store


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


def _connect_host(listen: str) -> str:
    return "127.0.0.1" if listen in ("0.0.0.0", "::", "") else listen  # noqa: S104


@contextlib.contextmanager
def embedded_broker(host: str, port: int) -> Iterator[None]:
    """Run iotcore's broker (rumqttd) for the duration of the block."""
    if port_in_use(port, _connect_host(host)):
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
) -> None:
    """Run the demo until cancelled."""
    sock = bind(host, port)
    sim = build_simulation(SimOptions(seed=seed, vehicles=vehicles, time_factor=time_factor))
    url = base_url(sock)
    info = sim.describe(url)
    if broker_url is None:
        # The embedded broker speaks MQTT 3.1.1 on its default listener.
        settings = BrokerSettings(_connect_host(mqtt_host), mqtt_port, protocol="3.1.1")
    else:
        settings = BrokerSettings.from_url(broker_url)
    with contextlib.ExitStack() as stack:
        if broker_url is None:
            stack.enter_context(embedded_broker(mqtt_host, mqtt_port))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="car2mqtt-demo-")))
        store = stack.enter_context(Store.open(workdir / "car2mqtt.db"))
        server = server_for(sim, sock)
        provider = EnodeProvider.create(
            account="demo",
            user_id="demo",
            api_url=info["enode"]["apiUrl"],
            token_url=info["enode"]["tokenUrl"],
            client_id=info["enode"]["clientId"],
            client_secret=info["enode"]["clientSecret"],
            # The bridge lives on the simulator's clock, so token lifetimes and polling agree.
            clock=sim.world.clock,
            persistence=store,
        )
        xee = info["xee"]
        dongles = XeeProvider.create(
            account="demo-xee",
            api_url=xee["apiUrl"],
            token_url=xee["tokenUrl"],
            client_id=xee["clientId"],
            client_secret=xee["clientSecret"],
            # The password grant: no browser needed for a demo.
            username=xee["username"],
            password=xee["password"],
            clock=sim.world.clock,
            persistence=store,
        )
        # Enode's cadence in simulated minutes becomes seconds here: poll to match.
        scale = max(time_factor, 1.0)
        timing = Timing(
            poll_interval_s=max(2.0, 300.0 / scale),
            active_poll_interval_s=max(1.0, 120.0 / scale),
            command_poll_s=max(0.5, 15.0 / scale),
            after_command_poll_s=max(1.0, 45.0 / scale),
            heartbeat_s=60.0,
        )
        async with asyncio.TaskGroup() as tg:
            tg.create_task(server.serve(sockets=[sock]))
            tg.create_task(
                serve(
                    [provider, dongles],
                    store=store,
                    broker=settings,
                    topics=Topics(),
                    clock=sim.world.clock,
                    timing=timing,
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
                )
            )
