"""Install a real Home Assistant for the end-to-end tests, cached outside the repository.

    python -m tests.e2e.install_ha          # prints the venv path; installs on first run

The install lives in `$CAR2MQTT_HA_CACHE` (default `~/.cache/car2mqtt`), in a folder named for
the Home Assistant version, so a fresh machine builds it from scratch and later runs reuse it.
It follows the tested recipe: Python 3.13 from pyenv, Home Assistant's own pinned constraints
(without them pip backtracks for minutes), the frontend (without it HA boots into recovery
mode), and one warm-up start so the requirements HA installs on first start are in place.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HA_VERSION = "2025.4.4"
PYTHON_VERSION = "3.13"


def cache_dir() -> Path:
    """Where installs are kept."""
    root = os.environ.get("CAR2MQTT_HA_CACHE") or str(Path.home() / ".cache" / "car2mqtt")
    return Path(root) / f"homeassistant-{HA_VERSION}"


def venv_dir() -> Path:
    """The venv holding Home Assistant."""
    return cache_dir() / "venv"


def hass_binary() -> Path:
    """The `hass` executable."""
    return venv_dir() / "bin" / "hass"


def _python() -> str:
    # Real interpreters first: a pyenv shim only runs when its version is activated.
    pattern = f"{PYTHON_VERSION}.*/bin/python3"
    candidates = [str(p) for p in sorted((Path.home() / ".pyenv/versions").glob(pattern))]
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
        versions = Path(root.stdout.strip()) / "versions"
        candidates += [str(p) for p in sorted(versions.glob(pattern))]
    which = shutil.which(f"python{PYTHON_VERSION}")
    if which and "/shims/" not in which:
        candidates.append(which)
    for candidate in candidates:
        if Path(candidate).exists():
            return candidate
    msg = f"Home Assistant {HA_VERSION} needs Python {PYTHON_VERSION}; none was found"
    raise RuntimeError(msg)


def _uv() -> str:
    found = Path(sys.executable).with_name("uv")
    return str(found) if found.exists() else (shutil.which("uv") or "uv")


def _run(*args: str) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def install() -> Path:
    """Install Home Assistant unless the cache already holds it; return the venv."""
    stamp = cache_dir() / "installed"
    if stamp.exists() and hass_binary().exists():
        return venv_dir()
    started = time.monotonic()
    shutil.rmtree(cache_dir(), ignore_errors=True)
    cache_dir().mkdir(parents=True)
    venv = venv_dir()
    wheels = cache_dir() / "wheels"
    # uv (a wheel from PyPI) installs Home Assistant's ~300 pinned packages about four times
    # faster than pip; bytecode is compiled up front, or HA starts twice as slowly.
    _run(_uv(), "venv", "--quiet", "--python", _python(), str(venv))
    _run(
        sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
        "--python-version", PYTHON_VERSION, "-d", str(wheels), f"homeassistant=={HA_VERSION}",
    )  # fmt: skip
    (wheel,) = wheels.glob("homeassistant-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        constraints = archive.read("homeassistant/package_constraints.txt").decode()
    (cache_dir() / "constraints.txt").write_text(constraints)
    _run(
        _uv(), "pip", "install", "--quiet", "--compile-bytecode",
        "--python", str(venv / "bin" / "python"),
        "-c", str(cache_dir() / "constraints.txt"),
        f"homeassistant=={HA_VERSION}", "home-assistant-frontend", "paho-mqtt",
    )  # fmt: skip
    _warm_up()
    stamp.write_text(f"{HA_VERSION}\n")
    print(
        f"installed Home Assistant {HA_VERSION} in {time.monotonic() - started:.0f} s",
        file=sys.stderr,
    )
    return venv


def _warm_up() -> None:
    """Start HA once with MQTT configured, so its first-start installs happen now."""
    with tempfile.TemporaryDirectory(prefix="ha-warmup-") as config:
        Path(config, "configuration.yaml").write_text(
            "homeassistant:\n  time_zone: UTC\nhttp:\n  server_host: 127.0.0.1\n"
            "  server_port: 18123\napi:\nlogger:\n  default: warning\n"
        )
        proc = subprocess.Popen(
            [str(hass_binary()), "-c", config, "--log-no-color"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 240
            log = Path(config, "home-assistant.log")
            while time.monotonic() < deadline and proc.poll() is None:
                if log.exists() and "Starting Home Assistant" in log.read_text(errors="ignore"):
                    break
                if _http_up(18123):
                    break
                time.sleep(1)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def _http_up(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    print(install())
