"""Bridge fixtures: the real simulator over HTTP, a real mosquitto, the bridge in-process."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import pytest

from car2mqtt.bridge.budget import Budget, BudgetLimits, CallLedger
from car2mqtt.bridge.privacy import Privacy
from car2mqtt.bridge.publisher import Publishing
from car2mqtt.bridge.timing import Timing
from car2mqtt.clock import Clock, SystemClock
from car2mqtt.models import VehicleRef
from car2mqtt.mqtt.link import BrokerSettings
from car2mqtt.mqtt.topics import Topics
from car2mqtt.providers.base import Provider
from car2mqtt.providers.enode import EnodeProvider
from car2mqtt.providers.enode.spec import SPEC as ENODE_SPEC
from car2mqtt.providers.plugin import RequestHook
from car2mqtt.providers.xee import XeeProvider
from car2mqtt.runtime import Running, running
from car2mqtt.store import Store
from tests.mqtt_support import Mosquitto, running_mosquitto
from tests.support import Sim

FAST = Timing(
    poll_interval_s=0.4,
    active_poll_interval_s=0.3,
    backoff_base_s=0.2,
    backoff_max_s=1.0,
    relink_retry_s=0.5,
    command_poll_s=0.1,
    after_command_poll_s=0.2,
    heartbeat_s=30.0,
    birth_jitter_s=0.05,
)
TOPICS = Topics("car2mqtt", "homeassistant")


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh mosquitto on a free loopback port."""
    with running_mosquitto(tmp_path) as broker:
        yield broker


def enode_provider(
    sim: Sim,
    store: Store,
    *,
    account: str = "home",
    user: str = "demo",
    secret: str | None = None,
    clock: Clock | None = None,
    public_url: str | None = None,
    meter: RequestHook | None = None,
) -> EnodeProvider:
    """An Enode provider pointed at the simulator (taking its webhooks with `public_url`)."""
    creds = sim.info["enode"]
    return EnodeProvider.create(
        account=account,
        user_id=user,
        api_url=creds["apiUrl"],
        token_url=creds["tokenUrl"],
        client_id=creds["clientId"],
        client_secret=secret or creds["clientSecret"],
        clock=clock or SystemClock(),
        persistence=store,
        public_url=public_url,
        meter=meter,
    )


def budget_of(
    account: str, clock: Clock, limits: BudgetLimits | None = None, *, rate: float = 1.0
) -> Budget:
    """An Enode account's ledger and budget (no cap unless `limits`), days in UTC."""
    ledger = CallLedger(account, clock, UTC, ENODE_SPEC.vehicle_path)
    return Budget(ledger, limits or BudgetLimits(), rate=rate)


def xee_provider(
    sim: Sim,
    store: Store,
    *,
    account: str = "car",
    password: bool = True,
    clock: Clock | None = None,
) -> XeeProvider:
    """A Xee provider pointed at the simulator: password grant, or linked tokens only."""
    xee = sim.info["xee"]
    return XeeProvider.create(
        account=account,
        api_url=xee["apiUrl"],
        token_url=xee["tokenUrl"],
        client_id=xee["clientId"],
        client_secret=xee["clientSecret"],
        username=xee["username"] if password else None,
        password=xee["password"] if password else None,
        clock=clock or SystemClock(),
        persistence=store,
    )


def xee_token_grant(sim: Sim, **form: str) -> httpx.Response:
    """Ask the simulated Xee token endpoint for a grant, as its registered client."""
    xee = sim.info["xee"]
    return httpx.post(
        xee["tokenUrl"], data=form, auth=(xee["clientId"], xee["clientSecret"]), timeout=10
    )


def xee_password_tokens(sim: Sim) -> dict[str, Any]:
    """A fresh token pair for the demo Xee user, by the password grant."""
    xee = sim.info["xee"]
    response = xee_token_grant(
        sim, grant_type="password", username=xee["username"], password=xee["password"]
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def write_xee_config(tmp_path: Path, sim: Sim, **account: Any) -> Path:
    """Write a configuration with one Xee account `car` on the simulator (JSON is YAML)."""
    xee = sim.info["xee"]
    extra = {k: v for k, v in account.items() if k in ("mqtt", "log", "store")}
    config = {
        "store": str(tmp_path / "car2mqtt.db"),
        **{k: str(v) if k == "store" else v for k, v in extra.items()},
        "accounts": [
            {
                "name": "car",
                "provider": "xee",
                "api_url": xee["apiUrl"],
                "client_id": xee["clientId"],
                "client_secret": xee["clientSecret"],
                **{k: v for k, v in account.items() if k not in extra},
            }
        ],
    }
    path = tmp_path / "car2mqtt.yaml"
    path.write_text(json.dumps(config))
    return path


@dataclass
class Harness:
    """A running bridge and what it talks to."""

    sim: Sim
    broker: Mosquitto
    store: Store
    running: Running

    def ref(self, vehicle_id: str) -> VehicleRef:
        return VehicleRef("enode", "home", vehicle_id)

    def state_topic(self, vehicle_id: str) -> str:
        return TOPICS.state(self.ref(vehicle_id))


@contextlib.asynccontextmanager
async def bridge_for(
    sim: Sim,
    broker: Mosquitto,
    tmp_path: Path,
    *,
    accounts: list[dict[str, Any]] | None = None,
    timing: Timing = FAST,
    publishing: Publishing | None = None,
    clock: Clock | None = None,
    protocol: str = "5",
    providers: Callable[[Store], Sequence[Provider]] | None = None,
    privacy: Mapping[str, Privacy] | None = None,
    budgets: Mapping[str, Budget] | None = None,
) -> AsyncIterator[Harness]:
    """Run a bridge against `sim` and `broker`: Enode `accounts`, or the given `providers`.

    Enode accounts get their API calls counted (`budgets`, by default with no cap).
    """
    store = Store.open(tmp_path / "state" / "car2mqtt.db")
    if providers is None:
        specs = accounts or [{}]
        names = [str(spec.get("account", "home")) for spec in specs]
        budgets = budgets or {n: budget_of(n, clock or SystemClock()) for n in names}
        chosen: Sequence[Provider] = [
            enode_provider(sim, store, clock=clock, meter=budgets[n].meter(), **spec)
            for n, spec in zip(names, specs, strict=True)
        ]
    else:
        chosen = providers(store)
    settings = BrokerSettings.from_url(broker.url, protocol=protocol, client_id="car2mqtt-test")
    try:
        async with running(
            list(chosen),
            store=store,
            broker=settings,
            topics=TOPICS,
            clock=clock,
            publishing=publishing,
            timing=timing,
            privacy=privacy,
            budgets=budgets,
        ) as run:
            yield Harness(sim, broker, store, run)
    finally:
        store.close()
