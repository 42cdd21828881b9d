"""The sample recorder: a sink that keeps battery, range and odometer over time, for charts.

At most one point per car per change and per `every_s` (5 minutes): a car polled every
minute does not fill the file, and a car that does not change adds nothing. Points are
gathered in memory and written once per listing, on the store's thread; older ones than
`keep_s` are pruned there once an hour.
"""

from __future__ import annotations

import logging

from car2mqtt.bridge.events import Event, ListingDone, VehicleChanged
from car2mqtt.bridge.saving import Saver
from car2mqtt.clock import Clock
from car2mqtt.models import VehicleState

_LOGGER = logging.getLogger(__name__)

Sample = tuple[str, float, float | None, float | None, float | None]
_Values = tuple[float | None, float | None, float | None]

FLUSH_EVERY = 500  # points held in memory at most, as the publisher holds states
PRUNE_EVERY_S = 3600.0


def _values(state: VehicleState) -> _Values:
    return (state.battery_pct, state.range_km, state.odometer_km)


class SampleRecorder:
    """Records a car's battery, range and odometer when they change, at most every `every_s`."""

    def __init__(
        self, saver: Saver, clock: Clock, *, every_s: float = 300.0, keep_s: float = 2 * 86400
    ) -> None:
        self._saver = saver
        self._clock = clock
        self._every_s = every_s
        self._keep_s = keep_s
        self._last: dict[str, tuple[float, _Values]] = {}  # key -> (time, values) last kept
        self._pending: list[Sample] = []
        self._pruned_at: float | None = None

    async def on_event(self, event: Event) -> None:
        """Note a changed car's values; write what was gathered at the end of a listing."""
        match event:
            case VehicleChanged(vehicle=vehicle) if not vehicle.placeholder:
                self._note(vehicle.key, vehicle.state)
                if len(self._pending) >= FLUSH_EVERY:
                    await self.flush()
            case ListingDone():
                await self.flush()

    def _note(self, key: str, state: VehicleState) -> None:
        values = _values(state)
        if values == (None, None, None):
            return
        now = self._clock.time()
        last = self._last.get(key)
        if last is not None and (last[1] == values or now - last[0] < self._every_s):
            return
        self._last[key] = (now, values)
        self._pending.append((key, now, *values))

    async def flush(self) -> None:
        """Write the gathered points (and prune old ones, once an hour)."""
        rows, self._pending = self._pending, []
        store, now = self._saver.store, self._clock.time()
        if rows:
            await self._saver.save("samples", lambda: store.add_samples(rows))
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = now
            before = now - self._keep_s
            await self._saver.save("samples", lambda: store.prune_samples(before))
