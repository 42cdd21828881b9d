"""Compose a simulation: the world, the clouds on it, and the ASGI app that serves them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from car2mqtt import __version__
from car2mqtt.clock import SimClock
from car2mqtt.simulator.admin import admin_routes
from car2mqtt.simulator.enode.api import create_enode_app
from car2mqtt.simulator.enode.cloud import API_VERSION, HEARTBEAT_S, EnodeCloud
from car2mqtt.simulator.enode.webhooks import WebhookDispatcher
from car2mqtt.simulator.faults import load_profile
from car2mqtt.simulator.world import World
from car2mqtt.simulator.xee.admin import xee_admin_routes
from car2mqtt.simulator.xee.api import create_xee_app
from car2mqtt.simulator.xee.cloud import XeeCloud


@dataclass(frozen=True, slots=True)
class SimOptions:
    """Everything that shapes a simulator run."""

    seed: int = 0
    vehicles: int = 3
    user: str = "demo"
    time_factor: float = 1.0
    faults: str = "none"
    start: float | None = None  # epoch seconds; None means now
    client_id: str = "car2mqtt-sim-client"
    client_secret: str = "car2mqtt-sim-secret"  # noqa: S105 (a fake cloud's published test secret)
    heartbeat_s: float = HEARTBEAT_S
    tick_s: float = 0.5
    xee_client_id: str = "car2mqtt-xee-client"
    xee_client_secret: str = "car2mqtt-xee-secret"  # noqa: S105 (a fake cloud's test secret)
    xee_username: str = "demo@xee.example"
    xee_password: str = "demo-password"  # noqa: S105
    xee_vehicles: int = 2
    xee_token_ttl_s: float = 3600.0
    xee_early_expiry_s: float = 0.0
    xee_refresh_grace_s: float = 60.0
    xee_refresh_ttl_s: float = 30 * 86_400.0


@dataclass(slots=True)
class Simulation:
    """A running simulation's parts."""

    options: SimOptions
    world: World
    enode: EnodeCloud
    dispatcher: WebhookDispatcher
    http: httpx.AsyncClient
    xee: XeeCloud
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def describe(self, base_url: str) -> dict[str, Any]:
        """Return the startup line: where everything is, and what credentials work."""
        enode = f"{base_url}/enode"
        return {
            "simulator": "car2mqtt",
            "version": __version__,
            "baseUrl": base_url,
            "adminUrl": f"{base_url}/admin",
            "enode": {
                "apiUrl": enode,
                "tokenUrl": f"{enode}/oauth2/token",
                "linkUiUrl": f"{enode}/link",
                "apiVersion": API_VERSION,
                "clientId": self.enode.client_id,
                "clientSecret": self.enode.client_secret,
            },
            # Oldest first: the order they were linked in.
            "users": {
                uid: [v.id for v in reversed(self.enode.user_vehicles(uid))]
                for uid in self.enode.users
            },
            "seed": self.options.seed,
            "timeFactor": self.world.clock.factor,
            "faults": self.enode.faults.profile,
            "xee": self._describe_xee(base_url),
        }

    def _describe_xee(self, base_url: str) -> dict[str, Any]:
        api = f"{base_url}/xee/v4"
        return {
            "apiUrl": api,
            "authorizeUrl": f"{api}/oauth/authorize",
            "tokenUrl": f"{api}/oauth/token",
            "clientId": self.options.xee_client_id,
            "clientSecret": self.options.xee_client_secret,
            "username": self.options.xee_username,
            "password": self.options.xee_password,
            "users": {uid: list(u.vehicle_ids) for uid, u in self.xee.auth.users.items()},
            "tokenTtlS": self.options.xee_token_ttl_s,
            "faults": self.xee.faults.profile,
        }


def build_simulation(options: SimOptions, http: httpx.AsyncClient | None = None) -> Simulation:
    """Create the world and clouds for `options`, with the demo user's vehicles linked."""
    world = World(SimClock(options.start, options.time_factor), options.seed)
    enode = EnodeCloud(
        world,
        client_id=options.client_id,
        client_secret=options.client_secret,
        faults=load_profile(options.faults),
        heartbeat_s=options.heartbeat_s,
    )
    if options.vehicles:
        enode.add_demo_vehicles(options.user, options.vehicles)
    client = http or httpx.AsyncClient(timeout=httpx.Timeout(5.0))
    dispatcher = WebhookDispatcher(enode, client)
    return Simulation(options, world, enode, dispatcher, client, build_xee(world, options))


def build_xee(world: World, options: SimOptions) -> XeeCloud:
    """Create the Xee cloud with its demo account and cars."""
    xee = XeeCloud(world, options, load_profile(options.faults))
    demo = xee.auth.add_user(options.xee_username, options.xee_password, "Demo", "Driver")
    xee.demo_user_id = demo.id
    xee.add_demo_vehicles(demo.id, options.xee_vehicles)
    return xee


async def _tick(sim: Simulation) -> None:
    while True:
        await asyncio.sleep(sim.options.tick_s)
        sim.world.sync()


def create_app(sim: Simulation) -> Starlette:
    """Build the ASGI app serving every cloud of `sim` plus the admin API."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sim.tasks = [
            asyncio.create_task(_tick(sim), name="sim-tick"),
            asyncio.create_task(sim.dispatcher.run(), name="sim-webhooks"),
        ]
        try:
            yield
        finally:
            for task in sim.tasks:
                task.cancel()
            for task in sim.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await sim.http.aclose()

    async def root(request: Any) -> Response:
        base = str(request.base_url).rstrip("/")
        return JSONResponse(sim.describe(base))

    return Starlette(
        routes=[
            Route("/", root, methods=["GET"]),
            Mount("/enode", app=create_enode_app(sim.enode, sim.dispatcher)),
            Mount("/xee", app=create_xee_app(sim.xee)),
            *admin_routes(sim),
            *xee_admin_routes(sim),
        ],
        lifespan=lifespan,
    )
