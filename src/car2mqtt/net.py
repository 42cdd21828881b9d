"""Listening sockets for car2mqtt's small HTTP servers (simulator, link receiver)."""

from __future__ import annotations

import socket

from car2mqtt.errors import ConfigError


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
