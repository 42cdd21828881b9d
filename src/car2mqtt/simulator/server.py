"""Serve a simulation over HTTP with uvicorn and announce it on stdout."""

from __future__ import annotations

import json
import logging
import socket
import sys
from typing import TextIO

import uvicorn

from car2mqtt.errors import ConfigError
from car2mqtt.simulator.app import SimOptions, Simulation, build_simulation, create_app
from car2mqtt.simulator.faults import DroppedConnectionLogFilter


def bind(host: str, port: int) -> socket.socket:
    """Open the listening socket, so the real port is known before serving (port 0 works)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        msg = f"cannot resolve host {host!r}: {exc.strerror}"
        raise ConfigError(msg) from None
    family, _, proto, _, address = infos[0]
    # The proto matters: asyncio sets TCP_NODELAY on accepted connections only when the
    # listener says IPPROTO_TCP; without it, Nagle plus delayed ACKs add 40 ms per response.
    sock = socket.socket(family, socket.SOCK_STREAM, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        msg = f"cannot listen on {host}:{port}: {exc.strerror}"
        if exc.errno in (98, 48):
            msg += " (is another simulator running? choose another --port)"
        raise ConfigError(msg) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket) -> str:
    """Return the http URL a bound socket serves at."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def server_for(sim: Simulation, sock: socket.socket, *, access_log: bool = False) -> uvicorn.Server:
    """Return a uvicorn server for `sim` on an already bound socket."""
    logging.getLogger("uvicorn.error").addFilter(DroppedConnectionLogFilter())
    config = uvicorn.Config(
        create_app(sim),
        log_level="warning",
        access_log=access_log,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    return uvicorn.Server(config)


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
