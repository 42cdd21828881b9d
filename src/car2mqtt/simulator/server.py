"""Serve a simulation over HTTP with uvicorn and announce it on stdout."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
from collections.abc import Iterator
from typing import TextIO

import uvicorn

from car2mqtt.net import base_url, bind
from car2mqtt.simulator.app import SimOptions, Simulation, build_simulation, create_app
from car2mqtt.simulator.faults import DroppedConnectionLogFilter


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server inside a program that handles SIGINT and SIGTERM itself (the demo)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave the signals to the program: it stops this server by cancelling its task."""
        # uvicorn would take the signals over while it serves and raise them again once it
        # stopped: with the program's own handler that made two stops race, and now and then
        # the lifespan was cut off half-way (a traceback at exit).
        yield


def server_for(
    sim: Simulation, sock: socket.socket, *, access_log: bool = False, embedded: bool = False
) -> uvicorn.Server:
    """Return a uvicorn server for `sim` on an already bound socket.

    `embedded`: the caller handles the signals and stops the server itself.
    """
    logging.getLogger("uvicorn.error").addFilter(DroppedConnectionLogFilter())
    config = uvicorn.Config(
        create_app(sim),
        log_level="warning",
        access_log=access_log,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    return EmbeddedServer(config) if embedded else uvicorn.Server(config)


def serve(
    options: SimOptions,
    host: str = "127.0.0.1",
    port: int = 8700,
    *,
    out: TextIO = sys.stdout,
    access_log: bool = False,
    announce: bool = True,
) -> None:
    """Run the simulator until interrupted; first print one JSON line describing it."""
    sock = bind(host, port)
    sim = build_simulation(options)
    if announce:
        out.write(json.dumps(sim.describe(base_url(sock))) + "\n")
        out.flush()
    server_for(sim, sock, access_log=access_log).run(sockets=[sock])
