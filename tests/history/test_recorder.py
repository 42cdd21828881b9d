"""The recorder in a running bridge: the real simulator, a real mosquitto, both databases."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from car2mqtt.history.model import EnergySource
from car2mqtt.history.records import HistoryBackend, Session
from car2mqtt.models import VehicleRef
from car2mqtt.mqtt.link import BrokerSettings
from car2mqtt.runtime import HistoryOptions, Running, running
from car2mqtt.store import Store
from tests.bridge.conftest import FAST, TOPICS, enode_provider
from tests.history.conftest import backend_for
from tests.mqtt_support import Mosquitto, probe
from tests.support import Sim

TESLA_KWH = 57.5  # the simulator's Model 3


@contextlib.asynccontextmanager
async def bridge_with_history(
    sim: Sim, broker: Mosquitto, tmp_path: Path, history_url: str
) -> AsyncIterator[tuple[Running, HistoryBackend]]:
    """A bridge on the simulator's Enode cars, recording history into `history_url`."""
    store = Store.open(tmp_path / "car2mqtt.db")
    backend = backend_for(history_url)
    try:
        async with running(
            [enode_provider(sim, store)],
            store=store,
            broker=broker_settings(broker),
            topics=TOPICS,
            timing=FAST,
            history=HistoryOptions(backend, cloud_delay_s=0.0),
        ) as run:
            assert run.history is not None
            await asyncio.wait_for(run.history.ready.wait(), 10)
            yield run, backend
    finally:
        store.close()


def broker_settings(broker: Mosquitto) -> BrokerSettings:
    """Settings for `broker`, with a client id of the recorder tests' own."""
    return BrokerSettings.from_url(broker.url, client_id=f"car2mqtt-history-{broker.port}")


async def admin(sim: Sim, method: str, path: str, body: Any = None) -> None:
    """Call the simulator's admin API off the bridge's loop."""
    answer = await asyncio.to_thread(sim.admin_call, method, path, body)
    assert answer.is_success, answer.text


async def refreshed(sim: Sim, vehicle: str) -> dict[str, Any]:
    """Let Enode's cache take the car's truth now; return the truth."""
    await asyncio.to_thread(sim.refresh, vehicle)
    live: dict[str, Any] = await asyncio.to_thread(sim.live, vehicle)
    return live


async def until(check: Any, what: str, timeout: float = 15.0) -> Any:
    """Wait until `await check()` is truthy; return it."""
    async with asyncio.timeout(timeout):
        while not (found := await check()):  # noqa: ASYNC110 - a database, not an event
            await asyncio.sleep(0.05)
    assert found, what
    return found


async def closed_sessions(backend: HistoryBackend, key: str) -> list[Session]:
    """The car's sessions that have ended."""
    return [s for s in await backend.sessions(key) if s.ended_at is not None]


async def charge(sim: Sim, vehicle: str, to_pct: float) -> float:
    """Advance the simulator's clock until the car's battery reaches `to_pct`; return it."""
    for _ in range(200):
        live = await refreshed(sim, vehicle)
        level = float(live["batteryLevel"])
        if level >= to_pct:
            return level
        # Small steps near the end: about 0.3 % a minute at 11 kW, so it stops just past it.
        await asyncio.to_thread(sim.advance, 300 if level < to_pct - 2 else 60)
        await asyncio.sleep(0.5)  # a poll or two of the bridge between steps
    msg = f"the car never reached {to_pct} %"
    raise AssertionError(msg)


async def test_a_charge_from_40_to_80_is_one_session_with_the_energy_delivered(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, history_url: str
) -> None:
    tesla = sim.vehicle_ids()[0]
    await admin(sim, "PUT", f"/enode/vehicles/{tesla}/battery", {"level": 40})
    start = await refreshed(sim, tesla)
    async with (
        bridge_with_history(sim, mosquitto, tmp_path, history_url) as (_, backend),
        probe(mosquitto.port) as seen,
    ):
        history_topic = TOPICS.history(VehicleRef("enode", "home", tesla))
        key = f"enode_{tesla}"

        async def saw_40() -> bool:
            return any(s.battery_pct == 40 for s in await backend.samples(key, 0))

        await until(saw_40, "the recorder saw 40 %")
        await admin(sim, "POST", f"/enode/vehicles/{tesla}/plug-in", {"startCharging": True})
        await refreshed(sim, tesla)
        end = await charge(sim, tesla, 79.9)
        await admin(sim, "POST", f"/enode/vehicles/{tesla}/unplug")
        await refreshed(sim, tesla)
        (session,) = await until(
            lambda: closed_sessions(backend, f"enode_{tesla}"), "a closed session"
        )
        delivered = (end - start["batteryLevel"]) / 100 * TESLA_KWH
        assert abs(session.energy_kwh - delivered) <= 0.02 * delivered, (
            session,
            start["batteryLevel"],
            end,
        )
        assert session.soc_from == 40
        assert session.soc_to == 80
        assert session.spans == 1
        assert session.peak_kw is not None
        assert session.peak_kw > 10
        shown = await seen.wait_json(
            history_topic, lambda h: h["last_session_energy"] is not None, timeout=10
        )
        assert abs(shown["energy_charged"] - session.energy_kwh) < 0.01
        assert shown["last_session_duration"] > 60
        assert len(await backend.sessions(key)) == 1  # exactly one, ended

        async def from_the_cloud() -> Session | None:
            (latest,) = await backend.sessions(key)
            return latest if latest.energy_source is EnergySource.CLOUD else None

        # Enode's own statistics, asked for once the session ended, replace the estimate.
        cloud = await until(from_the_cloud, "Enode's figure for the session")
        assert abs(cloud.energy_kwh - delivered) <= 0.02 * delivered
        assert cloud.soc_from == 40


async def test_a_restart_in_the_middle_of_a_session_does_not_split_it(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, history_url: str
) -> None:
    tesla = sim.vehicle_ids()[0]
    await admin(sim, "PUT", f"/enode/vehicles/{tesla}/battery", {"level": 40})
    await admin(sim, "POST", f"/enode/vehicles/{tesla}/plug-in", {"startCharging": True})
    await refreshed(sim, tesla)
    async with bridge_with_history(sim, mosquitto, tmp_path, history_url) as (_, backend):
        await until(lambda: _open_session_at(backend, f"enode_{tesla}", 40), "an open session")
        await charge(sim, tesla, 55)
        await until(
            lambda: _open_session_at(backend, f"enode_{tesla}", 55),
            "the open session has reached 55 %",
        )
        before = {t.key: t.energy_kwh for t in await backend.totals()}[f"enode_{tesla}"]
    async with bridge_with_history(sim, mosquitto, tmp_path, history_url) as (run, backend):
        assert run.history is not None
        await charge(sim, tesla, 79.9)
        await admin(sim, "POST", f"/enode/vehicles/{tesla}/unplug")
        await refreshed(sim, tesla)
        (session,) = await until(
            lambda: closed_sessions(backend, f"enode_{tesla}"), "a closed session"
        )
        assert session.soc_from == 40
        assert session.soc_to == 80
        assert len(await backend.sessions(f"enode_{tesla}")) == 1
        after = {t.key: t.energy_kwh for t in await backend.totals()}[f"enode_{tesla}"]
        assert after >= before + 0.2 * TESLA_KWH  # it went on from where it was, not from 0


async def _open_session_at(backend: HistoryBackend, key: str, pct: float) -> bool:
    return any(s.key == key and (s.soc_to or 0) >= pct for s in await backend.open_sessions())


async def test_a_database_that_stalls_for_30_s_holds_up_no_publish_and_loses_nothing(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, postgres_url: str
) -> None:
    tesla = sim.vehicle_ids()[0]
    state_topic = TOPICS.state(VehicleRef("enode", "home", tesla))
    async with (
        bridge_with_history(sim, mosquitto, tmp_path, postgres_url) as (run, backend),
        probe(mosquitto.port) as seen,
    ):
        assert run.history is not None
        await seen.wait_json(state_topic, lambda s: s.get("plugged_in") == "OFF")
        # Another client takes every history table and holds them: the recorder's writes wait.
        blocker = await psycopg.AsyncConnection.connect(postgres_url)
        async with blocker, blocker.transaction():
            await blocker.execute(
                "LOCK TABLE sessions, trips, samples, totals IN ACCESS EXCLUSIVE MODE"
            )
            stalled_at = asyncio.get_running_loop().time()
            await admin(sim, "PUT", f"/enode/vehicles/{tesla}/battery", {"level": 31})
            await admin(sim, "POST", f"/enode/vehicles/{tesla}/plug-in", {"startCharging": False})
            await refreshed(sim, tesla)
            # Published while the database is stalled, as if it were not there: within a few
            # polls (0.4 s apart), where waiting for the database would take the whole 30 s.
            await seen.wait_json(state_topic, lambda s: s["plugged_in"] == "ON", timeout=5)
            await asyncio.sleep(10.0)
            await admin(sim, "PUT", f"/enode/vehicles/{tesla}/battery", {"level": 35})
            await admin(sim, "POST", f"/enode/vehicles/{tesla}/unplug")
            await refreshed(sim, tesla)
            await seen.wait_json(
                state_topic, lambda s: s["plugged_in"] == "OFF" and s["battery"] == 35, timeout=5
            )
            await asyncio.sleep(max(0.0, 30.0 - (asyncio.get_running_loop().time() - stalled_at)))
        # Released after 30 s: the recorder catches up, and nothing was lost.
        (session,) = await until(
            lambda: closed_sessions(backend, f"enode_{tesla}"), "the session", timeout=30
        )
        assert (session.soc_from, session.soc_to) == (31, 35)
        assert run.history.dropped == 0
        assert json.loads(seen.last(TOPICS.bridge_history) or "{}").get("dropped") == 0


async def test_a_locked_sqlite_file_is_retried_until_it_is_free(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    tesla = sim.vehicle_ids()[0]
    url = f"sqlite://{tmp_path / 'history.db'}"
    async with bridge_with_history(sim, mosquitto, tmp_path, url) as (run, backend):
        assert run.history is not None
        holder = sqlite3.connect(tmp_path / "history.db", isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")

        async def refused() -> bool:
            return any("history: cannot write" in r.getMessage() for r in caplog.records)

        try:
            await admin(sim, "POST", f"/enode/vehicles/{tesla}/plug-in", {"startCharging": False})
            await refreshed(sim, tesla)
            # Held until a write has failed on it (after the 5 s busy timeout) and was kept.
            await until(refused, "a write refused by the locked file", timeout=30)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        await until(
            lambda: _open_session_at(backend, f"enode_{tesla}", 0),
            "the session written once the file was free",
            20,
        )
        assert run.history.lost == 0
