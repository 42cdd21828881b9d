"""Fixtures for the Xee simulator tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.simulator.xee_support import Xee
from tests.support import Sim


@pytest.fixture
def xee(sim: Sim) -> Iterator[Xee]:
    """A plain client of the simulator's Xee cloud."""
    client = Xee(sim)
    yield client
    client.close()
