"""The web UI's tests: a real bridge with its UI, the real simulator, mosquitto and Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from car2mqtt.config import Config
from car2mqtt.providers.registry import load_config
from car2mqtt.runtime import Running, running_config
from tests.bridge.conftest import FAST
from tests.mqtt_support import Mosquitto, free_port, running_mosquitto
from tests.support import Sim

# Debian's chromium (scripts/test installs it); the real binary, not the shell wrapper.
CHROMIUM_PATHS = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
CHROMIUM = next((p for p in CHROMIUM_PATHS if Path(p).exists()), None)
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "images"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A real mosquitto on a free port."""
    with running_mosquitto(tmp_path) as broker:
        yield broker


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium, driven by Playwright."""
    found = CHROMIUM
    assert found, "the web UI tests need Debian's chromium: apt-get install chromium"
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=found, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh browser page, 1024 px wide."""
    context = await browser.new_context(viewport={"width": 1024, "height": 900})
    try:
        yield await context.new_page()
    finally:
        await context.close()


def enode_account(sim: Sim, name: str = "home", user_id: str = "demo") -> dict[str, Any]:
    """An Enode account on the simulator."""
    creds = sim.info["enode"]
    return {
        "name": name,
        "provider": "enode",
        "api_url": creds["apiUrl"],
        "token_url": creds["tokenUrl"],
        "client_id": creds["clientId"],
        "client_secret": creds["clientSecret"],
        "user_id": user_id,
    }


def xee_account(sim: Sim, name: str = "car", **extra: Any) -> dict[str, Any]:
    """A Xee account on the simulator (linked by consent unless `extra` says otherwise)."""
    xee = sim.info["xee"]
    return {
        "name": name,
        "provider": "xee",
        "api_url": xee["apiUrl"],
        "client_id": xee["clientId"],
        "client_secret": xee["clientSecret"],
        **extra,
    }


def ui_config(
    tmp_path: Path,
    broker: Mosquitto,
    accounts: list[dict[str, Any]],
    **web: Any,
) -> Config:
    """Write and load a configuration with a web UI on a free loopback port."""
    document = {
        "mqtt": {"url": broker.url, "client_id": f"car2mqtt-ui-{free_port()}"},
        "store": str(tmp_path / "car2mqtt.db"),
        "web": {"host": "127.0.0.1", "port": free_port(), **web},
        "accounts": accounts,
    }
    path = tmp_path / "car2mqtt.yaml"
    path.write_text(json.dumps(document))
    return load_config(path, env={})


@dataclass
class SimTime:
    """The simulator's clock, seen from here: its frozen time moves only when advanced."""

    sim: Sim

    def time(self) -> float:
        """Return the simulator's now (asked over HTTP)."""
        now = self.sim.admin_call("POST", "/clock/advance", {"seconds": 0}).json()["now"]
        return datetime.fromisoformat(now).timestamp()


@contextlib.asynccontextmanager
async def ui_for(config: Config, sim: Sim | None = None) -> AsyncIterator[Running]:
    """Run the bridge `config` describes, web UI and all, with fast polling.

    With `sim`, the UI's ages are counted on the simulator's clock (pages then say "2 min
    ago", not "335 days ago": the simulator's time stands still unless advanced).
    """
    offset = 0.0
    if sim is not None:
        offset = SimTime(sim).time() - time.time()
    async with running_config(config, timing=FAST, clock=_Offset(offset)) as run:
        assert run.web_url is not None
        yield run


async def until_read(run: Running, timeout_s: float = 10.0) -> None:
    """Wait until every account of `run` has its cars read (or needs a re-link)."""

    def read() -> bool:
        return all(
            a.relink_required
            or (a.vehicles and not any(v.placeholder for v in a.vehicles.values()))
            for a in run.bridge.hub.accounts()
        )

    async with asyncio.timeout(timeout_s):
        while not read():  # noqa: ASYNC110 (the hub has no event for this)
            await asyncio.sleep(0.05)


@dataclass(frozen=True)
class _Offset:
    offset: float

    def time(self) -> float:
        return time.time() + self.offset


def links_of(html: str) -> list[str]:
    """Every URL a page points at: links, forms, assets and its event stream."""
    return re.findall(r'(?:href|src|action|data-events)="([^"]*)"', html)


async def get(url: str, **headers: str) -> httpx.Response:
    """GET a page as a plain client (no redirects followed)."""
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(url, headers=headers)
