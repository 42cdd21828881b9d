"""Logging: readable by default, JSON on request, secrets never shown."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_TOKEN_FIELDS = re.compile(
    r"(?i)(\"?(?:access_token|refresh_token|client_secret|password)\"?\s*[:=]\s*\"?)[^\s\",&]+"
)


class RedactingFilter(logging.Filter):
    """Replace known secrets, bearer tokens and token fields in every record with ***."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def add(self, secret: str) -> None:
        """Redact `secret` from now on."""
        if len(secret) >= 4 and secret not in self._secrets:
            self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    def redact(self, text: str) -> str:
        """Return `text` with every secret replaced."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        text = _BEARER.sub(r"\1***", text)
        return _TOKEN_FIELDS.sub(r"\1***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with secrets redacted."""
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_PENDING = "There are %d pending publish calls."


class PendingPublishFilter(logging.Filter):
    """Let aiomqtt's "N pending publish calls" warning through once per backlog, not per call."""

    # aiomqtt warns on every publish while more than its threshold await an ack, so one busy
    # moment made hundreds of lines. It says nothing when the backlog clears, so a backlog counts
    # as over once no warning came for `quiet_s`: the next warning starts a new one, and its line
    # says how many the last backlog held back, and its peak.

    def __init__(self, quiet_s: float = 30.0) -> None:
        super().__init__()
        self.quiet_s = quiet_s
        self._last: float | None = None
        self._held = 0
        self._peak = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """Pass the first warning of a backlog; hold back the rest."""
        if record.msg != _PENDING or not record.args:
            return True
        args = record.args if isinstance(record.args, tuple) else (record.args,)
        pending = args[0] if isinstance(args[0], int) else 0
        ongoing = self._last is not None and record.created - self._last < self.quiet_s
        self._last = record.created
        if ongoing:
            self._held += 1
            self._peak = max(self._peak, pending)
            return False
        before = (
            f"; the last backlog held back {self._held} such warnings, peak {self._peak}"
            if self._held
            else ""
        )
        record.msg = (
            f"{pending} MQTT publishes await the broker's acknowledgement (the broker or network "
            f"is slow); said once until it clears{before}"
        )
        record.args = None
        self._held, self._peak = 0, pending
        return True


_LATE_ACK = "Unexpected message ID"


class LateAckFilter(logging.Filter):
    """Drop aiomqtt's traceback for an ack that came after its request was cancelled."""

    # A stop (SIGTERM, Ctrl-C) that lands while a subscribe or publish waits for the broker's
    # ack cancels the wait; the ack then arrives for nobody, and aiomqtt logs it with a
    # traceback. Nothing is lost: the bridge is on its way out, or sends it all again on
    # reconnect.

    def filter(self, record: logging.LogRecord) -> bool:
        """Pass every record but aiomqtt's late-ack ones."""
        return not (record.name == "mqtt" and str(record.msg).startswith(_LATE_ACK))


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as JSON."""
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data)


REDACTOR = RedactingFilter()


def setup_logging(level: str = "info", fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    """Configure the root logger once for the process."""
    for secret in secrets:
        REDACTOR.add(secret)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(REDACTOR)
    handler.addFilter(PendingPublishFilter())
    handler.addFilter(LateAckFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
