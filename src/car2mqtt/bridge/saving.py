"""Writes to the state file from the bridge: off the event loop, and never fatal.

A write that fails (a full disk, a damaged file) is logged at most once per few minutes, the
bridge goes on from memory, and one line says when writing works again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from car2mqtt.errors import StoreError
from car2mqtt.store import Store

_LOGGER = logging.getLogger(__name__)


class Saver:
    """Runs the bridge's writes on the store's writer thread and reports trouble once."""

    def __init__(self, store: Store, *, error_every_s: float) -> None:
        self.store = store
        self._every = error_every_s
        self._said: float | None = None  # loop time the last save error was logged
        self._failing: set[str] = set()  # kinds of writes that failed and not since worked

    async def save(self, what: str, write: Callable[[], object]) -> bool:
        """Write `what` (a kind of write) off the loop; return whether it worked."""
        try:
            await self.store.run(write)
        except StoreError as exc:
            self.trouble(what, exc)
            return False
        if what in self._failing:
            self._failing.discard(what)
            if not self._failing:
                _LOGGER.info("the state file can be written again")
                self._said = None
        return True

    def trouble(self, what: str, exc: StoreError) -> None:
        """Log a state file that cannot be used: one line per few minutes, no traceback."""
        now = asyncio.get_running_loop().time()
        if self._said is None or now - self._said >= self._every:
            _LOGGER.error(
                "cannot save %s: %s. Still publishing from memory; free space or fix the "
                "file, and saving resumes by itself",
                what,
                exc,
            )
            self._said = now
        self._failing.add(what)
