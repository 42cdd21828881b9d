"""What history keeps: provider-neutral, frozen records of charging sessions and trips.

Providers that keep history of their own (a cloud's charging statistics, a dongle's trips)
return these through the optional protocols below; the recorder also derives them from the
states it sees. Units are in the field names; times are aware datetimes in UTC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from car2mqtt.models import VehicleRef


class EnergySource(StrEnum):
    """Where a session's energy figure comes from."""

    CLOUD = "cloud"  # the cloud's own charging statistics
    RATE = "rate"  # the charge rate integrated over time
    SOC = "soc"  # the battery level's rise times the capacity


@dataclass(frozen=True, slots=True)
class Place:
    """Where something happened, as precisely as the privacy setting allows."""

    latitude: float | None = None
    longitude: float | None = None
    zone: str | None = None  # "home", a named zone, or None when elsewhere or unknown


@dataclass(frozen=True, slots=True)
class ZoneArea:
    """A named circle on the map (`zones:` in the configuration): home, work, a charger."""

    name: str
    latitude: float
    longitude: float
    radius_m: float


EARTH_RADIUS_M = 6_371_000.0


def zone_of(
    latitude: float | None, longitude: float | None, zones: Sequence[ZoneArea]
) -> str | None:
    """Return the name of the nearest zone the point is in, None if in none (or unknown)."""
    if latitude is None or longitude is None:
        return None
    best: tuple[float, str] | None = None
    for zone in zones:
        # Haversine: good to well under a metre at the sizes zones have.
        phi1, phi2 = math.radians(latitude), math.radians(zone.latitude)
        dphi, dlam = phi2 - phi1, math.radians(zone.longitude - longitude)
        h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlam / 2) ** 2
        distance = 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))
        if distance <= zone.radius_m and (best is None or distance < best[0]):
            best = (distance, zone.name)
    return best[1] if best else None


@dataclass(frozen=True, slots=True)
class CloudSession:
    """A charging session as a cloud's statistics report it."""

    ref: VehicleRef
    started_at: datetime
    ended_at: datetime | None
    energy_kwh: float | None


@dataclass(frozen=True, slots=True)
class CloudTrip:
    """A trip as a cloud records it (a dongle's trips)."""

    ref: VehicleRef
    trip_id: str
    started_at: datetime
    ended_at: datetime | None
    distance_km: float | None = None
    start: Place | None = None
    end: Place | None = None
    start_odometer_km: float | None = None
    end_odometer_km: float | None = None


@runtime_checkable
class HasChargingHistory(Protocol):
    """A provider whose cloud reports its charging sessions."""

    async def charging_sessions(self, since: datetime, until: datetime) -> list[CloudSession]:
        """Return the sessions of the account's cars that overlap [since, until]."""
        ...


@runtime_checkable
class HasTrips(Protocol):
    """A provider whose cloud records trips."""

    async def trips(self, ref: VehicleRef, since: datetime, until: datetime) -> list[CloudTrip]:
        """Return the car's trips that overlap [since, until], oldest first."""
        ...
