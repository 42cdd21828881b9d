"""Secrets never reach the log."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from car2mqtt.logs import (
    JsonFormatter,
    LateAckFilter,
    PendingPublishFilter,
    RedactingFilter,
    setup_logging,
)
from tests.mqtt_support import running_mosquitto


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def capture(fmt: str, secrets: list[str], message: str, *args: object) -> str:
    setup_logging("debug", fmt, secrets)
    stream = io.StringIO()
    root = logging.getLogger()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    logging.getLogger("car2mqtt.test").info(message, *args)
    return stream.getvalue()


def test_known_secrets_and_tokens_are_redacted() -> None:
    out = capture(
        "text",
        ["s3cret-client-secret"],
        "secret %s, header %s, body %s",
        "s3cret-client-secret",
        "Authorization: Bearer eyJhbGciOi.payload.sig",
        '{"access_token": "abc123def", "refresh_token":"zzz999"}',
    )
    assert "s3cret-client-secret" not in out
    assert "eyJhbGciOi" not in out
    assert "abc123def" not in out
    assert "zzz999" not in out
    assert out.count("***") == 4


def test_json_format_is_one_object_per_line() -> None:
    out = capture("json", ["pw-123456"], "password=%s", "pw-123456")
    record = json.loads(out)
    assert record["level"] == "info"
    assert record["logger"] == "car2mqtt.test"
    assert "pw-123456" not in record["message"]


def test_filter_redacts_without_args() -> None:
    redactor = RedactingFilter(["abcd1234"])
    assert redactor.redact("token abcd1234 end") == "token *** end"
    assert redactor.redact("client_secret=hello&x=1") == "client_secret=***&x=1"
    assert isinstance(JsonFormatter(), logging.Formatter)


def pending_record(count: int, at: float) -> logging.LogRecord:
    record = logging.LogRecord(
        "mqtt", logging.WARNING, __file__, 1, "There are %d pending publish calls.", (count,), None
    )
    record.created = at
    return record


def test_pending_publish_warnings_are_one_line_per_backlog() -> None:
    quiet = PendingPublishFilter(quiet_s=30)
    first = [quiet.filter(pending_record(n, 100 + n / 100)) for n in range(11, 268)]
    assert first.count(True) == 1  # 257 warnings in one burst: one line
    later = pending_record(12, 200)  # long after the last one: a new backlog
    assert quiet.filter(later)
    message = later.getMessage()
    assert message.startswith("12 MQTT publishes await the broker's acknowledgement")
    assert "held back 256 such warnings, peak 267" in message
    other = logging.LogRecord("mqtt", logging.WARNING, __file__, 1, "something else", None, None)
    assert quiet.filter(other)


async def test_aiomqtt_under_load_logs_one_line(tmp_path: Path) -> None:
    stream = io.StringIO()
    setup_logging("info", "text")
    logging.getLogger().handlers[0].setStream(stream)  # type: ignore[attr-defined]
    with running_mosquitto(tmp_path) as broker:
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="load") as client:
            # Every publish waits for its ack at once: aiomqtt warns on each one past 10.
            await asyncio.gather(*(client.publish(f"load/{i}", b"x", qos=1) for i in range(300)))
    lines = [line for line in stream.getvalue().splitlines() if "publish" in line]
    assert len(lines) == 1, lines
    assert "MQTT publishes await the broker's acknowledgement" in lines[0]


def test_aiomqtt_late_ack_tracebacks_are_dropped_and_nothing_else() -> None:
    late = logging.LogRecord(
        "mqtt",
        logging.ERROR,
        "x",
        1,
        'Unexpected message ID "%d" in on_subscribe callback',
        (3,),
        None,
    )
    other = logging.LogRecord("mqtt", logging.ERROR, "x", 1, "something else", (), None)
    mine = logging.LogRecord(
        "car2mqtt", logging.ERROR, "x", 1, 'Unexpected message ID "3"', (), None
    )
    keep = LateAckFilter()
    assert not keep.filter(late)
    assert keep.filter(other)
    assert keep.filter(mine)
