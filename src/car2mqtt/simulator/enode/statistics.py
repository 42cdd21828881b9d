"""Enode's charging statistics, computed from the sessions the cars' physics recorded.

`GET /users/{userId}/statistics/charging` buckets the energy into time buckets and
`.../statistics/charging/sessions` lists the sessions themselves. The simulator has no energy
prices, so costs use smart charging's made-up prices (see docs/simulator.md): a charge the plan
moved to its start time pays the night rate and saved the difference; any other pays the peak.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from car2mqtt.clock import isoformat
from car2mqtt.simulator.enode.cloud import bad_request
from car2mqtt.simulator.enode.smart import NON_SMART_PRICE, SMART_PRICE
from car2mqtt.simulator.physics import ChargeSession

RESOLUTIONS = ("QUARTER_HOUR", "HALF_HOUR", "HOUR", "DAY", "WEEK", "MONTH", "YEAR")
DEFAULT_RESOLUTION = "DAY"
DEVICE_TYPES = ("charger", "vehicle", "hvac")
# Our bound on one answer: three months of quarter hours, 27 years of days.
MAX_BUCKETS = 10_000
# The spec's date-time (RFC 3339: the offset is required), in ASCII digits.
DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", re.ASCII)
OFFSET = re.compile(r"[+-]?\d{1,2}(?:\.\d+)?", re.ASCII)
# Dates we can bucket: from 1970 up to the year 9999 (Python's calendar ends there).
EARLIEST = 0.0
LATEST = datetime(9999, 1, 1, tzinfo=UTC).timestamp()
_FIXED_S = {"QUARTER_HOUR": 900, "HALF_HOUR": 1800, "HOUR": 3600}
_SAVING = NON_SMART_PRICE - SMART_PRICE
_AGGREGATES = ("min", "max", "mean")


@dataclass(frozen=True, slots=True)
class StatsQuery:
    """The query parameters of the two statistics endpoints, validated."""

    start: float
    end: float
    device_type: str
    device_id: str | None = None
    location_id: str | None = None
    resolution: str = DEFAULT_RESOLUTION
    utc_offset_h: float = 0.0


def parse_query(params: Mapping[str, str], now: float, *, buckets: bool) -> StatsQuery:
    """Validate the query of either endpoint (`buckets`: the time series), or raise a 400."""
    issues: list[dict[str, Any]] = []

    def issue(name: str, message: str) -> None:
        issues.append({"path": [name], "message": message})

    start = _date(params, "startDate", issue)
    if "startDate" not in params:
        issue("startDate", "is required")
    end = _date(params, "endDate", issue)
    device_type = params.get("type")
    if device_type is None:
        issue("type", "is required")
    elif device_type not in DEVICE_TYPES:
        issue("type", f"must be one of {', '.join(DEVICE_TYPES)}")
    location_id = params.get("locationId")
    if location_id is not None and not UUID.fullmatch(location_id):
        issue("locationId", "must be a UUID")
    resolution, offset = DEFAULT_RESOLUTION, 0.0
    if buckets:
        resolution = params.get("resolution", DEFAULT_RESOLUTION)
        if resolution not in RESOLUTIONS:
            issue("resolution", f"must be one of {', '.join(RESOLUTIONS)}")
        raw = params.get("utcOffset")
        if raw is not None:
            offset = float(raw) if OFFSET.fullmatch(raw) else math.nan
            if not -24 < offset < 24:
                issue("utcOffset", "must be a number of hours above -24 and below 24")
    if start is not None and end is not None and end < start:
        issue("endDate", "must not be before startDate")
    if issues:
        detail = "; ".join(f"{i['path'][0]} {i['message']}" for i in issues)
        raise bad_request(f"Invalid query: {detail}.", issues)
    assert start is not None
    assert device_type is not None
    query = StatsQuery(
        start,
        max(now, start) if end is None else end,
        device_type,
        params.get("id"),
        location_id,
        resolution,
        offset,
    )
    if buckets and len(bucket_starts(query.start, query.end, resolution, offset)) > MAX_BUCKETS:
        message = f"must be at most {MAX_BUCKETS} buckets of {resolution} after startDate"
        issue("endDate", message)
        raise bad_request(f"Invalid query: endDate {message}.", issues)
    return query


def _date(params: Mapping[str, str], name: str, issue: Callable[[str, str], None]) -> float | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        if not DATE_TIME.fullmatch(raw):
            raise ValueError(raw)
        t = datetime.fromisoformat(raw.upper()).timestamp()
    except ValueError:
        issue(name, "must be an RFC 3339 date-time with an offset, as 2021-03-21T00:15:00.000Z")
        return None
    if not EARLIEST <= t < LATEST:
        issue(name, "must lie between 1970 and 9999")
        return None
    return t


@dataclass(slots=True)
class _Tally:
    """What a bucket or a session adds up to."""

    kwh: float = 0.0
    cost: float = 0.0
    planned_kwh: float = 0.0
    hours: float = 0.0
    kw_min: float = math.inf
    kw_max: float = 0.0
    prices: set[float] = field(default_factory=set)

    def add(self, session: ChargeSession, a: float, b: float, kwh: float) -> None:
        """Count `kwh` of `session` delivered within [a, b]."""
        for piece in session.pieces:
            lo, hi = max(piece.start, a), min(piece.end, b)
            if hi < lo or (hi == lo and piece.end > piece.start):
                continue  # no time in common
            self.hours += (hi - lo) / 3600
            self.kw_max = max(self.kw_max, piece.power_kw(lo))  # power only falls in a piece
            self.kw_min = min(self.kw_min, piece.power_kw(hi))
        if kwh <= 0:
            return
        price = SMART_PRICE if session.planned else NON_SMART_PRICE
        self.kwh += kwh
        self.cost += kwh * price
        self.prices.add(price)
        if session.planned:
            self.planned_kwh += kwh

    def as_json(self) -> dict[str, Any]:
        """Return the fields both endpoints share."""
        if self.kwh <= 0:
            kw = {"min": 0.0, "max": 0.0, "mean": 0.0}
            price = {"min": NON_SMART_PRICE, "max": NON_SMART_PRICE, "mean": NON_SMART_PRICE}
        else:
            low = 0.0 if math.isinf(self.kw_min) else self.kw_min
            mean = self.kwh / self.hours if self.hours > 0 else self.kw_max
            # The last half point arrives at once (the charge snaps to full): keep the mean sane.
            mean = min(self.kw_max, max(low, mean))
            kw = {"min": round(low, 3), "max": round(self.kw_max, 3), "mean": round(mean, 3)}
            price = {
                "min": min(self.prices),
                "max": max(self.prices),
                "mean": round(self.cost / self.kwh, 4),
            }
        planned = self.planned_kwh > 0
        return {
            "kw": kw,
            "kwhSum": round(self.kwh, 4),
            "price": price,
            "costSum": round(self.cost, 4),
            "nonSmartPrice": dict.fromkeys(_AGGREGATES, NON_SMART_PRICE if planned else None),
            "estimatedSavings": round(self.planned_kwh * _SAVING, 4) if planned else None,
        }


def session_end(session: ChargeSession, now: float) -> float:
    """When the session ended; a running one counts up to now."""
    return now if session.ended_at is None else session.ended_at


def sessions_json(
    found: list[tuple[str, ChargeSession]], query: StatsQuery, now: float
) -> list[dict[str, Any]]:
    """Return the API's Sessions Statistics: the sessions meeting [start, end], oldest first."""
    wanted = [
        (vehicle_id, s)
        for vehicle_id, s in found
        if s.started_at <= query.end and session_end(s, now) >= query.start
    ]
    wanted.sort(key=lambda item: (item[1].started_at, item[0]))
    out = []
    for vehicle_id, session in wanted:
        end = session_end(session, now)
        tally = _Tally()
        tally.add(session, session.started_at, end, session.energy_kwh)
        out.append(
            {
                "id": vehicle_id,
                "locationId": None,
                "from": isoformat(session.started_at),
                "to": isoformat(end),
                **tally.as_json(),
            }
        )
    return out


def statistics_json(
    found: list[tuple[str, ChargeSession]], query: StatsQuery, now: float
) -> list[dict[str, Any]]:
    """Return the API's Charging Statistics: one entry per bucket from start to end."""
    starts = bucket_starts(query.start, query.end, query.resolution, query.utc_offset_h)
    bounds = [*starts, _next(starts[-1], query.resolution, query.utc_offset_h)]
    tallies = [_Tally() for _ in starts]
    for _, session in found:
        end = session_end(session, now)
        # Only the buckets the session overlaps: a year of quarter hours stays cheap.
        first = max(0, bisect.bisect_right(bounds, session.started_at) - 1)
        for i in range(first, len(starts)):
            a, b = bounds[i], bounds[i + 1]
            if a > end:
                break
            tallies[i].add(session, a, b, session.energy_between(a, b))
    return [
        {**tally.as_json(), "date": isoformat(at)}
        for at, tally in zip(starts, tallies, strict=True)
    ]


def bucket_starts(start: float, end: float, resolution: str, utc_offset_h: float) -> list[float]:
    """Return the start of each bucket from the one holding `start` to the last before `end`.

    Past `MAX_BUCKETS` it stops, one bucket over: the caller refuses such a range.
    """
    out = [_floor(start, resolution, utc_offset_h)]
    at = _next(out[0], resolution, utc_offset_h)
    while at < end and len(out) <= MAX_BUCKETS:
        out.append(at)
        at = _next(at, resolution, utc_offset_h)
    return out


def _floor(t: float, resolution: str, utc_offset_h: float) -> float:
    size = _FIXED_S.get(resolution)
    if size is not None:  # the spec: utcOffset has no effect on these
        return t - t % size
    local = datetime.fromtimestamp(t, timezone(timedelta(hours=utc_offset_h)))
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if resolution == "WEEK":  # ISO weeks, from Monday
        day -= timedelta(days=day.weekday())
    elif resolution == "MONTH":
        day = day.replace(day=1)
    elif resolution == "YEAR":
        day = day.replace(month=1, day=1)
    return day.timestamp()


def _next(t: float, resolution: str, utc_offset_h: float) -> float:
    size = _FIXED_S.get(resolution)
    if size is not None:
        return t + size
    local = datetime.fromtimestamp(t, timezone(timedelta(hours=utc_offset_h)))
    if resolution == "DAY":
        return (local + timedelta(days=1)).timestamp()
    if resolution == "WEEK":
        return (local + timedelta(days=7)).timestamp()
    if resolution == "MONTH":
        year, month = divmod(local.month, 12)
        return local.replace(year=local.year + year, month=month + 1).timestamp()
    return local.replace(year=local.year + 1).timestamp()
