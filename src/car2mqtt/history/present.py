"""History as people read it: local times, durations, places, and rows for tables and files.

Pure functions, shared by `car2mqtt history` (`history/cli.py`) and the web UI's car page.
Times are shown in the local time zone with their offset; every place leaves through
`place_of`, the one spot a privacy setting will filter.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo

from car2mqtt.history.model import EnergySource, Place
from car2mqtt.history.records import Session, Trip

__all__ = [
    "SESSION_FIELDS",
    "SOURCE_WORDS",
    "TRIP_FIELDS",
    "Value",
    "clock_text",
    "distance_of",
    "duration_text",
    "local",
    "number_text",
    "place_of",
    "place_text",
    "session_record",
    "soc_text",
    "stamp",
    "trip_record",
]

Value = str | float | int | bool | None

SOURCE_WORDS: Mapping[EnergySource, str] = {
    EnergySource.CLOUD: "cloud",
    EnergySource.RATE: "charge rate",
    EnergySource.SOC: "battery level",
}


def local(at: float, tz: tzinfo | None = None) -> datetime:
    """Return epoch seconds as an aware time in `tz` (None: this machine's zone)."""
    return datetime.fromtimestamp(at, UTC).astimezone(tz)


def stamp(at: float | None, tz: tzinfo | None = None) -> str | None:
    """Return a moment in ISO 8601 with its offset, to the second (for CSV and JSON)."""
    return None if at is None else local(at, tz).isoformat(timespec="seconds")


def clock_text(at: float, tz: tzinfo | None = None) -> str:
    """Return a moment as tables show it: `2026-11-01 08:00 +01:00`."""
    moment = local(at, tz)
    return f"{moment:%Y-%m-%d %H:%M} {moment.isoformat(timespec='minutes')[16:]}"


def duration_text(seconds: float | None) -> str:
    """Return a length of time in words: `45 min`, `1 h 05 min`, `2 d 3 h`."""
    if seconds is None:
        return ""
    minutes = max(0, round(seconds / 60))
    if minutes < 1:
        return "< 1 min"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def number_text(value: float | None) -> str:
    """Return a measure as tables show it: one decimal, nothing when unknown."""
    return "" if value is None else f"{value:.1f}"


def soc_text(low: float | None, high: float | None) -> str:
    """Return a session's battery levels: `20 → 80 %`, `? → 80 %`, nothing when unknown."""
    if low is None and high is None:
        return ""
    shown = ["?" if v is None else f"{v:.0f}" for v in (low, high)]
    return f"{shown[0]} → {shown[1]} %"


def place_of(latitude: float | None, longitude: float | None, zone: str | None = None) -> Place:
    """Return where something happened, as history may show it.

    Every location the CLI and the web UI show goes through here: today as recorded; a
    privacy setting (coarser coordinates, zones only) will filter it in this one place.
    """
    return Place(latitude=latitude, longitude=longitude, zone=zone)


def place_text(place: Place) -> str:
    """Return a place in words: its zone if it has one, else its coordinates, else nothing."""
    if place.zone:
        return place.zone
    if place.latitude is None or place.longitude is None:
        return ""
    return f"{place.latitude:.5f}, {place.longitude:.5f}"


def distance_of(trip: Trip) -> float | None:
    """Return a trip's length: the recorded distance, else the odometer's difference."""
    if trip.distance_km is not None:
        return trip.distance_km
    if trip.start_odometer_km is not None and trip.end_odometer_km is not None:
        return max(0.0, trip.end_odometer_km - trip.start_odometer_km)
    return None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _length(started_at: float, ended_at: float | None) -> int | None:
    return None if ended_at is None else round(ended_at - started_at)


SESSION_FIELDS = (
    "id",
    "car",
    "key",
    "started_at",
    "ended_at",
    "duration_s",
    "energy_kwh",
    "energy_source",
    "soc_from",
    "soc_to",
    "peak_kw",
    "mean_kw",
    "charging_s",
    "spans",
    "zone",
    "latitude",
    "longitude",
    "by_command",
)
TRIP_FIELDS = (
    "id",
    "car",
    "key",
    "started_at",
    "ended_at",
    "duration_s",
    "distance_km",
    "start_odometer_km",
    "end_odometer_km",
    "start_zone",
    "start_latitude",
    "start_longitude",
    "end_zone",
    "end_latitude",
    "end_longitude",
    "source",
)


def session_record(session: Session, car: str, tz: tzinfo | None = None) -> dict[str, Value]:
    """Return a session as CSV and JSON write it, in `SESSION_FIELDS` order."""
    place = place_of(session.latitude, session.longitude, session.zone)
    return {
        "id": session.id,
        "car": car,
        "key": session.key,
        "started_at": stamp(session.started_at, tz),
        "ended_at": stamp(session.ended_at, tz),
        "duration_s": _length(session.started_at, session.ended_at),
        "energy_kwh": _round(session.energy_kwh),
        "energy_source": session.energy_source.value,
        "soc_from": session.soc_from,
        "soc_to": session.soc_to,
        "peak_kw": _round(session.peak_kw),
        "mean_kw": _round(session.mean_kw),
        "charging_s": round(session.charging_s),
        "spans": session.spans,
        "zone": place.zone,
        "latitude": place.latitude,
        "longitude": place.longitude,
        "by_command": session.by_command,
    }


def trip_record(trip: Trip, car: str, tz: tzinfo | None = None) -> dict[str, Value]:
    """Return a trip as CSV and JSON write it, in `TRIP_FIELDS` order."""
    start = place_of(trip.start_latitude, trip.start_longitude, trip.start_zone)
    end = place_of(trip.end_latitude, trip.end_longitude, trip.end_zone)
    return {
        "id": trip.id,
        "car": car,
        "key": trip.key,
        "started_at": stamp(trip.started_at, tz),
        "ended_at": stamp(trip.ended_at, tz),
        "duration_s": _length(trip.started_at, trip.ended_at),
        "distance_km": _round(distance_of(trip)),
        "start_odometer_km": _round(trip.start_odometer_km),
        "end_odometer_km": _round(trip.end_odometer_km),
        "start_zone": start.zone,
        "start_latitude": start.latitude,
        "start_longitude": start.longitude,
        "end_zone": end.zone,
        "end_latitude": end.latitude,
        "end_longitude": end.longitude,
        "source": trip.source,
    }
