"""Background work of the bridge's parts, run in the composition root's one TaskGroup."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine

_LOGGER = logging.getLogger(__name__)


class Spawner:
    """Starts guarded tasks in the TaskGroup the composition root attaches."""

    def __init__(self) -> None:
        self._tg: asyncio.TaskGroup | None = None

    def attach(self, tg: asyncio.TaskGroup | None) -> None:
        """Start tasks in `tg` from now on (None: drop them, the bridge is not running)."""
        self._tg = tg

    def spawn(self, coro: Coroutine[object, object, object], *, name: str | None = None) -> None:
        """Run `coro` in the background; an exception in it is logged, never fatal."""
        self.start(coro, name)

    def start(
        self, coro: Coroutine[object, object, object], name: str | None = None
    ) -> asyncio.Task[None] | None:
        """Like `spawn`, returning the task; None (and `coro` unused) when not running."""
        if self._tg is None:
            coro.close()
            return None
        guarded = self._guarded(coro)
        try:
            task = self._tg.create_task(guarded, name=name)
        except RuntimeError:  # the task group is shutting down: nothing new starts
            guarded.close()
            coro.close()
            return None
        # A task cancelled before its first step never awaits `coro`: close it (a no-op once
        # it ran), so it is not reported as never awaited.
        task.add_done_callback(lambda _: coro.close())
        return task

    @staticmethod
    async def _guarded(coro: Coroutine[object, object, object]) -> None:
        try:
            await coro
        except Exception:
            # One failing command or republish must not stop the bridge.
            _LOGGER.exception("unexpected error while handling a message")
