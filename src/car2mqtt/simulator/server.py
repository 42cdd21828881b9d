"""Serve a simulation over HTTP with uvicorn and announce it on stdout."""

from __future__ import annotations

import json
import logging
import socket
import sys
from typing import TextIO

import uvicorn

from car2mqtt.net import base_url, bind
from car2mqtt.serving import EmbeddedServer
from car2mqtt.simulator.app import SimOptions, Simulation, build_simulation, create_app
from car2mqtt.simulator.faults import DroppedConnectionLogFilter


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
