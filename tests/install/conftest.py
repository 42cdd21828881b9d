"""What the install tests share: the wheel and sdist, built once per run as a user builds them."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Dist:
    """The built distributions."""

    wheel: Path
    sdist: Path


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """`python -m build` of this checkout: a wheel and an sdist."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = out.glob("car2mqtt-*.whl")
    [sdist] = out.glob("car2mqtt-*.tar.gz")
    return Dist(wheel, sdist)


@pytest.fixture(scope="session")
def image() -> str:
    """The car2mqtt image, built from the Containerfile on the local Python base."""
    from tests.install import images

    images.ensure_bases()
    tag = "localhost/car2mqtt:test"
    images.build(
        ROOT,
        tag,
        "--format",
        "docker",  # the OCI format has no HEALTHCHECK
        "--build-arg",
        f"BASE={images.PYTHON_BASE}",
        file=ROOT / "Containerfile",
    )
    return tag


@pytest.fixture(scope="session")
def addon_image(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The add-on's image, built from its folder with this checkout's wheel, as CI can."""
    import shutil

    from tests.install import images

    images.ensure_bases()
    context = tmp_path_factory.mktemp("addon") / "car2mqtt"
    shutil.copytree(ROOT / "ha-addon" / "car2mqtt", context)
    shutil.copy(dist.wheel, context / "wheels")
    tag = "localhost/car2mqtt-addon:test"
    images.build(context, tag, "--build-arg", f"BUILD_FROM={images.PYTHON_BASE}")
    return tag
