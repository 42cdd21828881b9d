"""Listening sockets for car2mqtt's small HTTP servers, and the addresses others reach them at."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit, urlunsplit

from car2mqtt.errors import ConfigError


def bind(
    host: str, port: int, busy: str = "is another simulator running? choose another --port"
) -> socket.socket:
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
            msg += f" ({busy})"
        raise ConfigError(msg) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket) -> str:
    """Return the http URL a bound socket serves at."""
    host, port = sock.getsockname()[:2]
    return http_url(host, port)


WILDCARDS = frozenset({"0.0.0.0", "::", "", "0:0:0:0:0:0:0:0"})  # noqa: S104


def is_wildcard(host: str) -> bool:
    """Whether `host` means "every interface" rather than one address."""
    return host.strip("[]") in WILDCARDS


def connect_host(host: str) -> str:
    """Where a client on this machine connects to reach a server listening on `host`."""
    if not is_wildcard(host):
        return host
    return "::1" if ":" in host else "127.0.0.1"


def primary_address(family: socket.AddressFamily = socket.AF_INET) -> str | None:
    """Return the address of the interface the default route uses, or None without one."""
    # Connecting a UDP socket sends no packet: it only asks the kernel which source address it
    # would use for an address off the local network (a documentation one, never contacted).
    target = ("2001:db8::1", 9) if family == socket.AF_INET6 else ("192.0.2.1", 9)
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(target)
            address = str(probe.getsockname()[0])
    except OSError:
        return None
    return None if address in WILDCARDS else address


def reachable_host(host: str) -> str:
    """Return an address other devices can use for a server on `host` (never a wildcard)."""
    if not is_wildcard(host):
        return host.strip("[]")
    # IPv4 first even for "::": a dual-stack listener takes it, and people type it more easily.
    families = (socket.AF_INET, socket.AF_INET6) if ":" in host else (socket.AF_INET,)
    for family in families:
        if (found := primary_address(family)) is not None:
            return found
    with contextlib.suppress(OSError):
        named = socket.gethostbyname(socket.gethostname())
        if not ipaddress.ip_address(named).is_loopback:
            return named
    return "127.0.0.1"


def http_url(host: str, port: int) -> str:
    """Return `http://host:port`, with an IPv6 address in brackets."""
    host = host.strip("[]")
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def with_query(url: str, params: Mapping[str, str]) -> str:
    """Return `url` with `params` added to its query (what it has already is kept as it is)."""
    parts = urlsplit(url)
    query = "&".join(filter(None, [parts.query, urlencode(params)]))
    return urlunsplit(parts._replace(query=query))
