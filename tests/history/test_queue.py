"""The recorder's queue alone: full, it drops and counts rather than make the hub wait."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from car2mqtt.bridge.events import VehicleChanged
from car2mqtt.bridge.known import KnownVehicle
from car2mqtt.bridge.outbox import Outbox
from car2mqtt.bridge.tasks import Spawner
from car2mqtt.clock import SimClock
from car2mqtt.history.recorder import HistoryRecorder
from car2mqtt.history.records import Session
from car2mqtt.history.sqlite import SqliteHistory
from car2mqtt.mqtt.topics import Topics
from tests.ha.cars import enode_car


async def test_a_full_queue_drops_counts_and_says_so_once_a_minute(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    clock = SimClock(1_700_000_000.0, 0.0)
    recorder = HistoryRecorder(
        SqliteHistory(tmp_path / "history.db"),  # never opened: the worker is not running
        clock=clock,
        topics=Topics(),
        outbox=Outbox(Spawner().start),
        providers={},
        queue_size=100,
    )
    vehicle = KnownVehicle(enode_car(), "Tesla Model Y")
    for _ in range(150):
        await recorder.on_event(VehicleChanged(vehicle))  # with no worker to empty it
    assert (recorder.queued, recorder.dropped) == (100, 50)
    full = [r for r in caplog.records if "queue is full" in r.getMessage()]
    assert len(full) == 1  # one line, not fifty
    clock.advance(61)
    await recorder.on_event(VehicleChanged(vehicle))
    said = [r.getMessage() for r in caplog.records if "queue is full" in r.getMessage()]
    assert said[-1].endswith("dropped 51 events so far")  # a minute on: said again
    assert len(said) == 2


async def test_writes_from_the_worker_and_the_cloud_tasks_go_one_at_a_time(
    tmp_path: Path,
) -> None:
    backend = SqliteHistory(tmp_path / "history.db")
    await backend.open()
    recorder = HistoryRecorder(
        backend,
        clock=SimClock(0.0, 0.0),
        topics=Topics(),
        outbox=Outbox(Spawner().start),
        providers={},
    )
    rows = [Session(id=f"s{i}", key="car", started_at=float(i)) for i in range(3)]
    # Three writers at once (the worker and two cloud tasks): each row stored once, none lost.
    await asyncio.gather(*(recorder._write([row]) for row in rows))
    assert [s.id for s in await backend.sessions()] == ["s0", "s1", "s2"]
    assert recorder.lost == 0
    await backend.close()
