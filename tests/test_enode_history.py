"""The Enode provider's charging history, read from the simulator's statistics over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from car2mqtt.clock import SystemClock
from car2mqtt.errors import ReauthRequired
from car2mqtt.history.model import CloudSession, HasChargingHistory
from car2mqtt.models import VehicleRef
from car2mqtt.providers.enode import EnodeProvider
from tests.support import START, EnodeClient, Sim

BEGIN = datetime.fromtimestamp(START, UTC)


def provider(sim: Sim, user: str = "demo") -> EnodeProvider:
    """An Enode provider pointed at the simulator."""
    creds = sim.info["enode"]
    return EnodeProvider.create(
        account="home",
        user_id=user,
        api_url=creds["apiUrl"],
        token_url=creds["tokenUrl"],
        client_id=creds["clientId"],
        client_secret=creds["clientSecret"],
        clock=SystemClock(),
    )


@pytest.fixture
async def enode_provider(sim: Sim) -> AsyncIterator[EnodeProvider]:
    """The demo user's provider, closed at the end."""
    running = provider(sim)
    yield running
    await running.aclose()


def plug_in_at(sim: Sim, vid: str, level: float) -> None:
    """Unplug the car, set its battery and plug it in, charging at once."""
    assert sim.admin_call("POST", f"/enode/vehicles/{vid}/unplug").is_success
    assert sim.admin_call("PUT", f"/enode/vehicles/{vid}/battery", {"level": level}).is_success
    r = sim.admin_call("POST", f"/enode/vehicles/{vid}/plug-in", {"startCharging": True})
    assert r.status_code == 200, r.text


@pytest.fixture
def charged(sim: Sim) -> tuple[str, str]:
    """The ID.4 charged from 40 % to its 80 % limit, then the Model 3 for an hour from 40 %."""
    tesla, vw = sim.vehicle_ids()[:2]
    plug_in_at(sim, vw, 40)
    sim.advance(4 * 3600)
    assert sim.live(vw)["chargeMode"] == "COMPLETE"
    plug_in_at(sim, tesla, 40)
    sim.advance(3600)
    assert sim.admin_call("POST", f"/enode/vehicles/{tesla}/unplug").is_success
    sim.advance(600)
    return vw, tesla


def test_the_provider_has_charging_history(enode_provider: EnodeProvider) -> None:
    assert isinstance(enode_provider, HasChargingHistory)


async def test_the_sessions_are_what_the_simulator_charged(
    sim: Sim, enode: EnodeClient, enode_provider: EnodeProvider, charged: tuple[str, str]
) -> None:
    vw, tesla = charged
    until = BEGIN + timedelta(days=1)
    sessions = await enode_provider.charging_sessions(BEGIN, until)
    assert [s.ref for s in sessions] == [
        VehicleRef("enode", "home", vw),
        VehicleRef("enode", "home", tesla),
    ]
    full, hour = sessions
    for session in sessions:
        assert session.started_at.tzinfo is UTC
        assert session.ended_at is not None
        assert session.ended_at.tzinfo is UTC
    capacity = sim.live(vw)["cached"]["chargeState"]["batteryCapacity"]
    assert full.energy_kwh == pytest.approx(0.40 * capacity, rel=0.01)
    assert full.started_at == BEGIN + timedelta(seconds=30)  # once the charger settled
    assert full.ended_at is not None
    assert timedelta(hours=3) < full.ended_at - full.started_at < timedelta(hours=3.5)
    risen = sim.live(tesla)["batteryLevel"] - 40
    tesla_capacity = sim.live(tesla)["cached"]["chargeState"]["batteryCapacity"]
    assert hour.energy_kwh == pytest.approx(risen / 100 * tesla_capacity, rel=1e-4)
    assert hour.ended_at == BEGIN + timedelta(hours=5)  # unplugged then
    # The same as the cloud's own answer, session for session.
    r = enode.get(
        "/users/demo/statistics/charging/sessions",
        params={
            "type": "vehicle",
            "startDate": BEGIN.isoformat(),
            "endDate": until.isoformat(),
        },
    )
    assert r.status_code == 200, r.text
    raw = r.json()
    assert [(s["id"], s["kwhSum"]) for s in raw] == [
        (s.ref.vehicle_id, s.energy_kwh) for s in sessions
    ]


async def test_only_sessions_meeting_the_window(
    enode_provider: EnodeProvider, charged: tuple[str, str]
) -> None:
    vw, tesla = charged
    later = await enode_provider.charging_sessions(
        BEGIN + timedelta(hours=4), BEGIN + timedelta(days=1)
    )
    assert [s.ref.vehicle_id for s in later] == [tesla]
    # A time without an offset is UTC: the first four hours hold the ID.4's charge only.
    naive = BEGIN.replace(tzinfo=None)
    early = await enode_provider.charging_sessions(naive, naive + timedelta(hours=3, minutes=59))
    assert [s.ref.vehicle_id for s in early] == [vw]
    assert await enode_provider.charging_sessions(BEGIN - timedelta(days=2), BEGIN) == []


async def test_a_session_still_running_ends_now_and_grows(
    sim: Sim, enode_provider: EnodeProvider
) -> None:
    tesla = sim.vehicle_ids()[0]
    plug_in_at(sim, tesla, 40)
    sim.advance(3600)
    until = BEGIN + timedelta(days=1)

    async def teslas() -> list[CloudSession]:
        found = await enode_provider.charging_sessions(BEGIN, until)
        return [s for s in found if s.ref.vehicle_id == tesla]  # the demo ID.4 charges too

    [running] = await teslas()
    assert running.ended_at == BEGIN + timedelta(hours=1)  # Enode's `to`: the last reading
    sim.advance(3600)  # the provider's token has expired in simulated time: it gets another
    [grown] = await teslas()
    assert grown.started_at == running.started_at
    assert running.energy_kwh is not None
    assert grown.energy_kwh == pytest.approx(running.energy_kwh + 11.0, rel=1e-4)


async def test_the_daily_statistics_add_up_to_the_sessions(
    enode_provider: EnodeProvider, charged: tuple[str, str]
) -> None:
    until = BEGIN + timedelta(hours=23)
    sessions = await enode_provider.charging_sessions(BEGIN, until)
    days = await enode_provider.client.charging_statistics(enode_provider.user_id, BEGIN, until)
    assert [d.date for d in days] == [BEGIN]
    assert days[0].kwh_sum == pytest.approx(sum(s.energy_kwh or 0 for s in sessions), abs=1e-3)
    hours = await enode_provider.client.charging_statistics(
        enode_provider.user_id, BEGIN, until, resolution="HOUR"
    )
    assert len(hours) == 23
    assert sum(h.kwh_sum or 0 for h in hours) == pytest.approx(days[0].kwh_sum, abs=1e-3)


async def test_an_unknown_user_needs_a_new_link(sim: Sim) -> None:
    stranger = provider(sim, user="nobody")
    try:
        with pytest.raises(ReauthRequired, match="nobody"):
            await stranger.charging_sessions(BEGIN, BEGIN + timedelta(days=1))
    finally:
        await stranger.aclose()
