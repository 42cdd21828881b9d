"""The one reader of a broker URL (`mqtt://host:port`, `mqtts://...` for TLS).

The configuration checks `mqtt.url` with it and `BrokerSettings.from_url` connects with what it
returns, so both accept exactly the same URLs. Each problem is worded as what was expected, for
the configuration's error lines.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple
from urllib.parse import unquote, urlsplit

__all__ = [
    "DEFAULT_PORTS",
    "SCHEMES",
    "BadMqttUrl",
    "MqttUrl",
    "hide_credentials",
    "parse_mqtt_url",
]

# The scheme says whether TLS is used.
SCHEMES: Final = {"mqtt": False, "mqtts": True}
DEFAULT_PORTS: Final = {False: 1883, True: 8883}
_CREDENTIALS: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")


def hide_credentials(text: str) -> str:
    """Return `text` with the `user:password@` of every URL in it shown as `***@`."""
    return _CREDENTIALS.sub(r"\1***@", text)


class BadMqttUrl(ValueError):
    """A URL that is not a broker's; the message says what was expected."""

    def __init__(self, message: str, *, shows_secret: bool = False) -> None:
        super().__init__(message)
        self.message = message
        # Quoting the URL back would show credentials: the caller must not.
        self.shows_secret = shows_secret


class MqttUrl(NamedTuple):
    """What a broker URL says."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None


def parse_mqtt_url(url: str, *, credentials: bool = False) -> MqttUrl:
    """Read `url`; raise BadMqttUrl for anything but scheme, host and port.

    `credentials`: whether `user:password@` may be part of it (a command-line broker URL),
    or is refused (the configuration has keys of its own for them).
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        msg = "expected a URL starting with mqtt:// or mqtts:// (TLS)"
        raise BadMqttUrl(msg)
    has_credentials = parts.username is not None or parts.password is not None
    if has_credentials and not credentials:
        msg = "expected no credentials in the URL; set mqtt.username and mqtt.password"
        raise BadMqttUrl(msg, shows_secret=True)
    if not parts.hostname:
        msg = "expected a host, e.g. mqtt://broker.local:1883"
        raise BadMqttUrl(msg)
    try:
        port = parts.port
    except ValueError:
        msg = "expected a port between 0 and 65535"
        raise BadMqttUrl(msg) from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        msg = "expected only scheme, host and port, e.g. mqtts://broker:8883"
        raise BadMqttUrl(msg)
    tls = SCHEMES[scheme]
    return MqttUrl(
        host=parts.hostname,
        port=port or DEFAULT_PORTS[tls],
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )
