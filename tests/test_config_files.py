"""Only small regular files are read as configuration or secrets: never /dev/zero, pipes, 2 GB."""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import pytest

from car2mqtt.config import MAX_FILE_BYTES
from car2mqtt.errors import ConfigError
from car2mqtt.providers.registry import load_config
from tests.support import CLI

VALID = {
    "accounts": [
        {
            "name": "home",
            "provider": "enode",
            "environment": "sandbox",
            "client_id": "id",
            "client_secret_file": "secret.txt",
            "user_id": "me",
        }
    ]
}


def refused(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    return str(caught.value)


def test_devices_pipes_and_folders_are_refused_without_reading(tmp_path: Path) -> None:
    assert refused(Path("/dev/zero")) == (
        "cannot read config file /dev/zero: not a regular file (a device, pipe or socket)"
    )
    fifo = tmp_path / "car2mqtt.yaml"
    os.mkfifo(fifo)
    started = time.monotonic()
    assert "not a regular file" in refused(fifo)  # and no wait for a writer that never comes
    assert time.monotonic() - started < 5
    assert refused(tmp_path) == f"cannot read config file {tmp_path}: it is a directory"


def test_a_file_over_one_megabyte_is_refused(tmp_path: Path) -> None:
    text = json.dumps(VALID)
    (tmp_path / "secret.txt").write_text("s3cret-value\n")
    exactly = tmp_path / "exactly.yaml"
    exactly.write_text(text + "\n#" + "x" * (MAX_FILE_BYTES - len(text) - 3) + "\n")
    assert exactly.stat().st_size == MAX_FILE_BYTES
    assert load_config(exactly, {}).accounts[0].name == "home"
    over = tmp_path / "over.yaml"
    over.write_bytes(exactly.read_bytes() + b"\n")
    assert refused(over) == (
        f"cannot read config file {over}: it is larger than 1 MB (1,048,577 bytes)"
    )


def test_a_secret_file_must_be_small_and_regular(tmp_path: Path) -> None:
    path = tmp_path / "car2mqtt.yaml"
    path.write_text(json.dumps(VALID).replace("secret.txt", "/dev/zero"))
    message = refused(path)
    assert "accounts[home].client_secret_file: cannot read /dev/zero: not a regular file" in message


def _limit_memory() -> None:
    # Before the fix /dev/zero was read until memory ran out: let that fail fast, not hang.
    resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))


@pytest.mark.parametrize("command", [["run"], ["vehicles"], ["status"]])
def test_the_cli_says_so_in_one_line_with_exit_code_2(command: list[str]) -> None:
    import subprocess

    result = subprocess.run(  # noqa: PLW1510
        [*CLI, *command, "--config", "/dev/zero"],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limit_memory,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: cannot read config file /dev/zero: not a regular file (a device, pipe or socket)"
    )
