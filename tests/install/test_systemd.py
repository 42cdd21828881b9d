"""The systemd unit: systemd's own checks, and a configuration that reads its credentials."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from car2mqtt.providers.registry import load_config

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "packaging" / "systemd" / "car2mqtt.service"
EXAMPLE = ROOT / "packaging" / "systemd" / "car2mqtt.yaml"
CREDENTIALS = "/run/credentials/car2mqtt.service/"
INSTALLED = "/usr/local/bin/car2mqtt"


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    """Run systemd-analyze (it works without systemd running: it reads the unit file)."""
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: scripts/test installs systemd"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60, check=False)


def unit_here(tmp_path: Path) -> Path:
    """The unit with its ExecStart on this machine's car2mqtt (verify wants it to exist)."""
    here = str(Path(sys.executable).parent / "car2mqtt")
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED} run" in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED, here))
    return copy


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    result = analyze("verify", "--man=no", str(unit_here(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""  # not even a warning


def test_the_unit_is_hardened(tmp_path: Path) -> None:
    result = analyze("security", "--offline=yes", "--no-pager", str(unit_here(tmp_path)))
    found = re.search(r"Overall exposure level for car2mqtt.service: ([\d.]+) (\w+)", result.stdout)
    assert found, result.stdout + result.stderr
    # systemd rates 0-10; below 2 is its best band, "OK" (a default unit scores 9.6, UNSAFE).
    assert float(found.group(1)) < 2.0, result.stdout
    text = UNIT.read_text()
    for line in ("DynamicUser=yes", "StateDirectory=car2mqtt", "ProtectSystem=strict"):
        assert f"\n{line}\n" in text, line
    assert "\nNoNewPrivileges=yes\n" in text


def test_the_example_configuration_reads_every_credential_the_unit_loads(
    tmp_path: Path,
) -> None:
    loaded = re.findall(r"^LoadCredential=([\w-]+):(\S+)$", UNIT.read_text(), re.MULTILINE)
    assert loaded
    text = EXAMPLE.read_text()
    for name, source in loaded:
        assert source.startswith("/etc/car2mqtt/secrets/"), source
        assert f"{CREDENTIALS}{name}\n" in text, name
        (tmp_path / name).write_text(f"{name}-secret-value")
    # Where systemd would put them: this machine has no service manager, so point there.
    local = tmp_path / "car2mqtt.yaml"
    local.write_text(text.replace(CREDENTIALS, f"{tmp_path}/"))
    config = load_config(local, env={})
    assert config.web.password is not None
    assert config.web.password.get_secret_value() == "web_password-secret-value"
    assert yaml.safe_load(text)["accounts"][0]["client_secret_file"].startswith(CREDENTIALS)
