"""End-to-end fixtures: a real Home Assistant, mosquitto, the simulator and the bridge.

Every scenario runs against each tested Home Assistant version (`install_ha.HA_VERSIONS`: the
stack is parametrized over them, test ids end in `[2025.4.4]` or `[2026.11.0]`). One stack per
version serves the whole module (Home Assistant takes seconds to start), so pytest runs every
scenario on the first version, stops that stack, then runs them all on the next; within a
version the scenarios run in file order and each leaves the stack as it found it. A failing
scenario prints Home Assistant's log tail, the retained topics and the bridge's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from car2mqtt.bridge.budget import Budget
from car2mqtt.bridge.privacy import Privacy
from car2mqtt.bridge.publisher import Publishing
from car2mqtt.bridge.timing import Timing
from car2mqtt.config import Config
from car2mqtt.history.sqlite import SqliteHistory
from car2mqtt.mqtt.link import BrokerSettings
from car2mqtt.mqtt.topics import Topics
from car2mqtt.providers.base import Provider
from car2mqtt.runtime import HistoryOptions, WebOptions, serve
from car2mqtt.store import Store
from tests.bridge.conftest import enode_provider, xee_provider
from tests.e2e.ha import HomeAssistant
from tests.e2e.install_ha import HA_VERSIONS, INSTALLS
from tests.mqtt_support import Mosquitto, retained
from tests.support import Sim, running_sim

E2E_TIMING = Timing(
    poll_interval_s=1.0,
    active_poll_interval_s=0.5,
    backoff_base_s=0.5,
    backoff_max_s=2.0,
    command_poll_s=0.2,
    after_command_poll_s=0.5,
    heartbeat_s=60.0,
    birth_jitter_s=0.2,
)


class LogBuffer(logging.Handler):
    """Keeps the bridge's log lines for failure reports."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


@dataclass
class BridgeThread:
    """The bridge on its own event loop in a thread, so tests may block while it works."""

    sim: Sim
    broker: Mosquitto
    store_path: Path
    publishing: Publishing = field(default_factory=Publishing)
    topics: Topics = field(default_factory=Topics)
    xee: bool = True  # also bridge the simulator's Xee dongle cars
    # Take the Enode cars' webhooks on a web server of its own (this configuration's `web`).
    push: Config | None = None
    timing: Timing = E2E_TIMING
    privacy: Mapping[str, Privacy] | None = None
    # The Enode account's ("home") call ledger and budget: its meter counts the calls.
    budget: Budget | None = None
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the bridge."""
        ready = threading.Event()

        def main() -> None:
            async def run() -> None:
                store = Store.open(self.store_path)
                self._loop = asyncio.get_running_loop()
                self._task = asyncio.current_task()
                ready.set()
                try:
                    public_url = None
                    if self.push is not None:
                        public_url = f"http://127.0.0.1:{self.push.web.port}"
                    meter = self.budget.meter() if self.budget is not None else None
                    providers: list[Provider] = [
                        enode_provider(self.sim, store, public_url=public_url, meter=meter)
                    ]
                    if self.xee:
                        providers.append(xee_provider(self.sim, store))
                    client_id = f"car2mqtt-e2e-{self.topics.base}"
                    history = SqliteHistory(
                        self.store_path.with_name(f"{self.store_path.stem}-history.db")
                    )
                    await serve(
                        providers,
                        store=store,
                        broker=BrokerSettings.from_url(self.broker.url, client_id=client_id),
                        topics=self.topics,
                        publishing=self.publishing,
                        timing=self.timing,
                        web=WebOptions(self.push) if self.push is not None else None,
                        history=HistoryOptions(history, cloud_delay_s=0.0),
                        privacy=self.privacy,
                        budgets={"home": self.budget} if self.budget is not None else None,
                    )
                finally:
                    store.close()

            with contextlib.suppress(asyncio.CancelledError):
                asyncio.run(run())

        self._thread = threading.Thread(target=main, daemon=True, name="bridge")
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        """Stop the bridge cleanly (it says offline on its way out)."""
        if self._loop is not None and self._task is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: it has stopped already
                self._loop.call_soon_threadsafe(self._task.cancel)
        if self._thread is not None:
            self._thread.join(timeout=20)
        self._thread = self._loop = self._task = None


@dataclass
class Stack:
    """Everything an end-to-end scenario touches."""

    ha: HomeAssistant
    broker: Mosquitto
    sim: Sim
    bridge: BridgeThread
    log: LogBuffer


@pytest.fixture(scope="module", params=HA_VERSIONS)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Install (once per machine) and start Home Assistant, mosquitto, the simulator, the bridge."""
    install = INSTALLS[request.param]
    install.install()
    root = tmp_path_factory.mktemp(f"e2e-{install.version}")
    broker = Mosquitto(root)
    broker.start()
    log = LogBuffer()
    bridge_logger = logging.getLogger("car2mqtt")
    level = bridge_logger.level
    bridge_logger.setLevel(logging.INFO)
    bridge_logger.addHandler(log)
    try:
        with install.config_dir(root) as config:
            ha = HomeAssistant(install, config, broker.port)
            ha.prepare()
            try:
                ha.start()
                ha.bootstrap()
                assert ha.version_reported() == install.version
                with running_sim(vehicles=4, seed=0) as sim:
                    # The bridge is told the release, as mqtt.ha_version or the add-on does.
                    year, month = install.version.split(".")[:2]
                    publishing = Publishing(ha_version=(int(year), int(month)))
                    bridge = BridgeThread(sim, broker, root / "bridge.db", publishing=publishing)
                    bridge.start()
                    try:
                        yield Stack(ha, broker, sim, bridge, log)
                    finally:
                        bridge.stop()
            finally:
                ha.stop()
    finally:
        bridge_logger.removeHandler(log)
        bridge_logger.setLevel(level)
        broker.stop()


_STACKS: dict[str, Stack] = {}


@pytest.fixture
def e2e(stack: Stack, request: pytest.FixtureRequest) -> Stack:
    """The module's stack, remembered so a failure can be explained."""
    _STACKS[request.node.nodeid] = stack
    return stack


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    """On failure, attach what it takes to diagnose: HA's log, retained topics, bridge log."""
    report = yield
    stack = _STACKS.get(item.nodeid)
    if report.failed and stack is not None and call.when == "call":
        try:
            kept = asyncio.run(retained(stack.broker.port, settle=0.5))
            topics = "\n".join(f"{t}: {p[:160]!r}" for t, p in sorted(kept.items()))
        except Exception as exc:
            topics = f"(could not read the broker: {exc})"
        report.sections.append(("Home Assistant log tail", stack.ha.log_tail()))
        report.sections.append(("retained MQTT topics", topics))
        report.sections.append(("bridge log", "\n".join(stack.log.lines[-80:])))
    return report


def wait_until(check: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll `check()` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    msg = f"timed out after {timeout:.0f} s waiting for {what}"
    raise AssertionError(msg)
