"""A car's battery over the last 24 hours as an SVG line: no JavaScript, no library."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
