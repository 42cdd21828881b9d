"""pip and pipx users: the wheel and sdist are complete, and `car2mqtt demo` works from pipx."""

from __future__ import annotations

import asyncio
import email
import os
import signal
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import httpx
import pytest

import car2mqtt
from tests.install.conftest import Dist
from tests.mqtt_support import free_port, probe
from tests.test_demo import collect, finish

pytestmark = pytest.mark.e2e


def test_the_distributions_carry_complete_metadata(dist: Dist) -> None:
    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dist.wheel), str(dist.sdist)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    with zipfile.ZipFile(dist.wheel) as wheel:
        names = wheel.namelist()
        [meta_name] = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = email.message_from_bytes(wheel.read(meta_name))
    assert meta["Version"] == car2mqtt.__version__
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Author"]
    assert "Topic :: Home Automation" in meta.get_all("Classifier", [])
    assert any(u.startswith("Changelog, ") for u in meta.get_all("Project-URL", []))
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    # The web UI's templates and assets travel in the wheel, or pipx users get blank pages.
    assert "car2mqtt/web/templates/overview.html" in names
    assert "car2mqtt/web/static/app.css" in names
    assert "car2mqtt/py.typed" in names
    with tarfile.open(dist.sdist) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml"} <= members
    assert not any(m.startswith("tests/") for m in members)


def test_pipx_install_gives_a_car2mqtt_whose_demo_works(dist: Dist, tmp_path: Path) -> None:
    home, bin_dir = tmp_path / "pipx", tmp_path / "bin"
    env = {
        **os.environ,
        "PIPX_HOME": str(home),
        "PIPX_BIN_DIR": str(bin_dir),
        "PIPX_MAN_DIR": str(tmp_path / "man"),
        "HOME": str(tmp_path / "home"),
        "PIP_CACHE_DIR": str(Path.home() / ".cache" / "pip"),  # the wheels pip already fetched
    }
    installed = subprocess.run(
        [sys.executable, "-m", "pipx", "install", "--python", sys.executable, str(dist.wheel)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    command = bin_dir / "car2mqtt"
    version = subprocess.run([command, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"car2mqtt {car2mqtt.__version__}"

    # The demo from the pipx install: not this checkout's, which the PATH does not name.
    mqtt_port, web_port = free_port(), free_port()
    demo_env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": env["HOME"], "LANG": "C.UTF-8"}
    demo_env["PYTHONUNBUFFERED"] = "1"
    ports = ["--port", "0", "--mqtt-port", str(mqtt_port), "--web-port", str(web_port)]
    proc = subprocess.Popen(
        ["car2mqtt", "demo", *ports, "--state-dir", str(tmp_path / "state")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=demo_env,
        cwd=tmp_path,
    )
    out, err = collect(proc.stdout), collect(proc.stderr)
    try:
        out.wait_for("Ctrl-C stops everything", timeout=60)
        assert f"http://127.0.0.1:{web_port}" in out.text()

        async def cars_arrive() -> None:
            async with probe(mqtt_port, "car2mqtt/#") as seen:
                await seen.wait_for(
                    lambda p: len([t for t in p.topics("car2mqtt/") if t.endswith("/state")]) >= 3,
                    what="three cars' states",
                    timeout=30,
                )

        asyncio.run(cars_arrive())
        page = httpx.get(f"http://127.0.0.1:{web_port}/", timeout=10)
        assert page.status_code == 200
        assert "Tesla Model 3" in page.text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        finish(proc, out, err)
    assert "Traceback" not in err.text()
    site = next(home.glob("venvs/car2mqtt/lib/python*/site-packages"))
    assert (site / "car2mqtt" / "__init__.py").is_file()
    assert str(Path(car2mqtt.__file__).parent) not in err.text() + out.text()
