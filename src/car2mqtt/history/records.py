"""The rows history stores, and the protocol every database backend implements.

Times are seconds since the epoch (clock time, UTC) so SQLite and PostgreSQL store the same
numbers; energies in kWh, power in kW, distances in km.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from car2mqtt.history.model import EnergySource


@dataclass(frozen=True, slots=True)
class Session:
    """One charging session: plug-in to unplug, with the charging spans inside."""

    id: str
    key: str  # the car (VehicleRef.key)
    started_at: float
    ended_at: float | None = None  # None while plugged in
    energy_kwh: float = 0.0
    energy_source: EnergySource = EnergySource.SOC
    soc_from: float | None = None
    soc_to: float | None = None
    peak_kw: float | None = None
    mean_kw: float | None = None  # energy over the time spent charging
    charging_s: float = 0.0  # time spent charging within the session
    spans: int = 0  # charging spans (a stop and a restart make two)
    latitude: float | None = None
    longitude: float | None = None
    zone: str | None = None
    by_command: bool = False  # a car2mqtt command started charging in it


@dataclass(frozen=True, slots=True)
class Trip:
    """One trip: from the odometer (or the cloud's own trip) leaving one place to the next."""

    id: str
    key: str
    started_at: float
    ended_at: float | None = None  # None while under way
    distance_km: float | None = None
    start_odometer_km: float | None = None
    end_odometer_km: float | None = None
    start_latitude: float | None = None
    start_longitude: float | None = None
    end_latitude: float | None = None
    end_longitude: float | None = None
    source: str = "derived"  # "derived" from states, or "cloud" (the dongle's own trip)
    start_zone: str | None = None  # the zone (`zones:`) it started in, None when in none
    end_zone: str | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """A car's battery, range and odometer at one moment."""

    key: str
    at: float
    battery_pct: float | None
    range_km: float | None
    odometer_km: float | None


@dataclass(frozen=True, slots=True)
class Totals:
    """What a car has charged in all, never decreasing (Home Assistant's Energy dashboard)."""

    key: str
    energy_kwh: float


Write = Session | Trip | Sample | Totals


class HistoryBackend(Protocol):
    """A database that keeps history: SQLite (the default) or PostgreSQL."""

    async def open(self) -> None:
        """Connect and bring the schema up to date (versioned migrations)."""
        ...

    async def close(self) -> None:
        """Disconnect."""
        ...

    async def write(self, rows: Sequence[Write]) -> None:
        """Store `rows` in one transaction: sessions and trips by id (upsert), samples, totals."""
        ...

    async def open_sessions(self) -> list[Session]:
        """Return the sessions not ended yet (to resume after a restart)."""
        ...

    async def open_trips(self) -> list[Trip]:
        """Return the trips not ended yet."""
        ...

    async def totals(self) -> list[Totals]:
        """Return every car's energy total."""
        ...

    async def last_sessions(self) -> list[Session]:
        """Return each car's last ended session."""
        ...

    async def last_trips(self) -> list[Trip]:
        """Return each car's last ended trip."""
        ...

    async def sessions(self, key: str | None = None, since: float | None = None) -> list[Session]:
        """Return sessions (of one car, or all) started at or after `since`, oldest first."""
        ...

    async def trips(self, key: str | None = None, since: float | None = None) -> list[Trip]:
        """Return trips (of one car, or all) started at or after `since`, oldest first."""
        ...

    async def samples(self, key: str, since: float) -> list[Sample]:
        """Return one car's samples since `since`, oldest first."""
        ...

    async def prune(
        self,
        *,
        samples_before: float | None,
        sessions_before: float | None,
        trips_before: float | None,
    ) -> int:
        """Delete what is older than each limit (None keeps it); return how many rows went."""
        ...
