"""Shared fixtures: every simulator test talks to a real simulator over loopback HTTP."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.enode_spec import EnodeSpec
from tests.support import EnodeClient, Receiver, Sim, running_receiver, running_sim

# Every `car2mqtt run` a test starts serves its web UI on a free port, not on 8780: two runs
# (or a demo left running on this machine) would otherwise refuse to start.
os.environ.setdefault("CAR2MQTT__WEB__PORT", "0")


@pytest.fixture(scope="session")
def spec() -> EnodeSpec:
    """The official Enode 2024-10-01 spec, read from ../shared/specs."""
    return EnodeSpec.load()


@pytest.fixture
def sim() -> Iterator[Sim]:
    """A fresh simulator: seed 0, three demo cars, frozen clock."""
    with running_sim() as running:
        yield running


@pytest.fixture
def enode(sim: Sim, spec: EnodeSpec) -> Iterator[EnodeClient]:
    """A spec-checking client of the simulator's Enode API."""
    client = EnodeClient(sim, spec)
    yield client
    client.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on loopback."""
    with running_receiver() as running:
        yield running
