"""Secrets never reach the log."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from car2mqtt.logs import JsonFormatter, RedactingFilter, setup_logging


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
