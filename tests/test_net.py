"""Listening sockets."""

from __future__ import annotations

import socket

import pytest

from car2mqtt.errors import ConfigError
from car2mqtt.net import base_url, bind


def test_listener_is_tcp_so_responses_are_not_delayed() -> None:
    # asyncio sets TCP_NODELAY on accepted connections only for IPPROTO_TCP listeners;
    # without it every keep-alive response waited 40 ms for a delayed ACK.
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert base_url(sock).startswith("http://127.0.0.1:")
    finally:
        sock.close()


def test_bind_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="cannot resolve host"):
        bind("no-such-host.invalid", 0)
    busy = bind("127.0.0.1", 0)
    try:
        with pytest.raises(ConfigError, match="cannot listen on"):
            bind("127.0.0.1", busy.getsockname()[1])
    finally:
        busy.close()
