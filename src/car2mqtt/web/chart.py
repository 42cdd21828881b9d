"""A car's charts as inline SVG, with no JavaScript and no library.

Its battery over the last 24 hours as a line, and the energy it charged per day over the last
30 days as bars.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

WIDTH, HEIGHT = 600.0, 160.0
WINDOW_S = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Chart:
    """The points of the line (in the SVG's own units) and what they say in words."""

    points: str
    summary: str
    count: int
    last: tuple[float, float] | None = None  # the newest point, marked (a line needs two)


def battery_chart(samples: Sequence[tuple[float, float | None]], now: float) -> Chart:
    """Chart (time, battery %) samples of the 24 hours before `now`."""
    kept = [(at, pct) for at, pct in samples if pct is not None and now - at <= WINDOW_S]
    if not kept:
        return Chart("", "No battery readings in the last 24 hours yet.", 0)
    start = now - WINDOW_S
    points = " ".join(
        f"{(at - start) / WINDOW_S * WIDTH:.1f},{HEIGHT * (1 - min(max(pct, 0), 100) / 100):.1f}"
        for at, pct in kept
    )
    low, high = min(p for _, p in kept), max(p for _, p in kept)
    summary = (
        f"Battery over the last 24 hours: {kept[0][1]:.0f} % to {kept[-1][1]:.0f} % "
        f"(lowest {low:.0f} %, highest {high:.0f} %, {len(kept)} readings)."
    )
    x, y = points.rsplit(" ", 1)[-1].split(",")
    return Chart(points, summary, len(kept), (float(x), float(y)))


# ---- energy charged per day ---------------------------------------------------------------

DAYS = 30
_SLOT = WIDTH / DAYS


@dataclass(frozen=True, slots=True)
class Bar:
    """One day's bar (in the SVG's own units) and what it says in words."""

    x: float
    y: float
    width: float
    height: float
    label: str


@dataclass(frozen=True, slots=True)
class EnergyChart:
    """kWh charged per day over the last 30 days, and per month, as bars and in words."""

    bars: tuple[Bar, ...]
    summary: str
    top_kwh: float  # what the top line stands for
    months: tuple[str, ...]  # "November 2026: 96.0 kWh (so far)", oldest first
    first_day: str
    last_day: str


def _days(now: float, tz: tzinfo | None) -> list[date]:
    today = datetime.fromtimestamp(now, UTC).astimezone(tz).date()
    return [today - timedelta(days=back) for back in range(DAYS - 1, -1, -1)]


def energy_since(now: float, tz: tzinfo | None = None) -> float:
    """Return when the sessions `energy_chart` needs start: the first month the chart shows."""
    midnight = datetime.combine(_days(now, tz)[0].replace(day=1), time(), tzinfo=tz)
    # No zone given: this machine's, as for the days themselves.
    return (midnight if tz else midnight.astimezone()).timestamp()


def _top(highest: float) -> float:
    """Return a round number at or above `highest`: 1, 2, 5, 10, 20, 50 ... kWh."""
    decade = 1.0
    while True:
        for step in (1.0, 2.0, 5.0):
            if decade * step >= highest:
                return decade * step
        decade *= 10


def energy_chart(
    sessions: Sequence[tuple[float, float]], now: float, tz: tzinfo | None = None
) -> EnergyChart:
    """Chart (start time, kWh) sessions: a bar per local day of the last 30, months in words.

    A session counts on the day it started (and in that day's month), whenever it ended.
    """
    days = _days(now, tz)
    first, last = (days[0].year, days[0].month), (days[-1].year, days[-1].month)
    per_day = dict.fromkeys(days, 0.0)
    per_month: dict[tuple[int, int], float] = {}
    for at, kwh in sessions:
        day = datetime.fromtimestamp(at, UTC).astimezone(tz).date()
        if day in per_day:
            per_day[day] += kwh
        if first <= (day.year, day.month) <= last:
            per_month[day.year, day.month] = per_month.get((day.year, day.month), 0.0) + kwh
    charged = [(day, kwh) for day, kwh in per_day.items() if kwh > 0]
    top = _top(max((kwh for _, kwh in charged), default=0.0))
    bars = tuple(
        Bar(
            x=round(days.index(day) * _SLOT + _SLOT * 0.15, 1),
            y=round(HEIGHT * (1 - kwh / top), 1),
            width=round(_SLOT * 0.7, 1),
            height=round(HEIGHT * kwh / top, 1),
            label=f"{day.isoformat()}: {kwh:.1f} kWh",
        )
        for day, kwh in charged
    )
    if charged:
        total = sum(kwh for _, kwh in charged)
        best_day, best = max(charged, key=lambda pair: pair[1])
        summary = (
            f"Energy charged over the last {DAYS} days: {total:.1f} kWh on {len(charged)} "
            f"day{'' if len(charged) == 1 else 's'}; the most, {best:.1f} kWh, on "
            f"{best_day.isoformat()}."
        )
    else:
        summary = f"No energy charged in the last {DAYS} days."
    months: list[str] = []
    year, month = first
    while (year, month) <= last:
        so_far = " (so far)" if (year, month) == last else ""
        name = date(year, month, 1).strftime("%B %Y")
        months.append(f"{name}: {per_month.get((year, month), 0.0):.1f} kWh{so_far}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return EnergyChart(bars, summary, top, tuple(months), days[0].isoformat(), days[-1].isoformat())
