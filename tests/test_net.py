"""Listening sockets."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from car2mqtt.errors import ConfigError
from car2mqtt.net import base_url, bind, connect_host, http_url, is_wildcard, reachable_host


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


EVERY_INTERFACE = "0.0.0.0"  # noqa: S104 - what these tests are about


def test_a_wildcard_becomes_an_address_other_devices_can_open() -> None:
    for wildcard in (EVERY_INTERFACE, "::", ""):
        assert is_wildcard(wildcard)
        host = reachable_host(wildcard)
        assert not is_wildcard(host)
        ipaddress.ip_address(host)  # an address, not a name that may not resolve elsewhere
    # The address is this machine's own: a server listening everywhere answers on it.
    sock = bind(EVERY_INTERFACE, 0)
    try:
        with socket.create_connection((reachable_host(EVERY_INTERFACE), sock.getsockname()[1])):
            pass
    finally:
        sock.close()


def test_specific_hosts_stay_as_given() -> None:
    assert reachable_host("127.0.0.1") == "127.0.0.1"
    assert reachable_host("car2mqtt.lan") == "car2mqtt.lan"
    assert reachable_host("[::1]") == "::1"
    assert connect_host(EVERY_INTERFACE) == "127.0.0.1"
    assert connect_host("192.0.2.7") == "192.0.2.7"


def test_http_url_brackets_ipv6() -> None:
    assert http_url("::1", 80) == "http://[::1]:80"
    assert http_url("[::1]", 80) == "http://[::1]:80"
    assert http_url("10.0.0.2", 8765) == "http://10.0.0.2:8765"
