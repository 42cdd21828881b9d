"""Serving a Starlette app with uvicorn on a socket of ours, inside someone else's TaskGroup."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator

import uvicorn
from starlette.types import ASGIApp


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server inside a program that handles SIGINT and SIGTERM itself.

    It wakes once a second while idle, not ten times: uvicorn's own loop polls `should_exit`
    every 0.1 s, which cost an idle bridge 0.3 % of a core (a Raspberry Pi runs it all day).
    A stop still takes effect at once: setting `should_exit` wakes the loop.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        self._exit = asyncio.Event()
        super().__init__(config)

    @property
    def should_exit(self) -> bool:
        """Whether the server is asked to stop."""
        return self._exit.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value:
            self._exit.set()
        else:
            self._exit.clear()

    async def main_loop(self) -> None:
        """Tick once a second (uvicorn's date header wants no more) until asked to stop."""
        counter = 0
        while not await self.on_tick(counter):
            # on_tick does its once-a-second work when counter % 10 == 0.
            counter = (counter + 10) % 864000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._exit.wait()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave the signals to the program: it stops this server by cancelling its task."""
        # uvicorn would take the signals over while it serves and raise them again once it
        # stopped: with the program's own handler that made two stops race, and now and then
        # the lifespan was cut off half-way (a traceback at exit).
        yield


def embedded_server(app: ASGIApp, **options: object) -> EmbeddedServer:
    """Return a quiet uvicorn server for `app` that takes no signals and no proxy headers."""
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        # Our own code decides which proxy to believe: uvicorn would take X-Forwarded-For
        # from any loopback client, and a local program could pose as a trusted proxy.
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=3,
        **options,  # type: ignore[arg-type]
    )
    return EmbeddedServer(config)


async def serve_http(
    server: uvicorn.Server, sock: socket.socket, on_stop: Callable[[], None] | None = None
) -> None:
    """Serve until cancelled, then shut down as uvicorn does on a signal, lifespan and all.

    `on_stop` runs first when cancelled: it ends what would hold the shutdown up (streams).
    """
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        if on_stop is not None:
            on_stop()
        # Cancelled outright, uvicorn's lifespan task is left behind and logs a traceback.
        server.should_exit = True
        while not serving.done():
            # A second cancel (a second signal) must not cut the shutdown short either.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(serving)
        raise
