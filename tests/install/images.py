"""Container images for the install tests, built with podman from a local Debian base.

There is no registry here (and none in CI): the base is a debootstrap rootfs, made once per
machine and kept as a tarball under ~/.cache/car2mqtt/images, as the Home Assistant installs
are. `python -m tests.install.images` prepares it, so scripts/test shows its cost as a stage.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CACHE = Path.home() / ".cache" / "car2mqtt" / "images"
ROOTFS_TAR = CACHE / "debian-bookworm-minbase.tar"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_IMAGE = "localhost/car2mqtt-debian:bookworm"
# The stand-in for a slim Python base (python:3.12-slim, Home Assistant's base-python): Debian's
# python3 with venv. Containerfile and the add-on's Dockerfile take it through a build argument.
PYTHON_BASE = "localhost/car2mqtt-python-base:bookworm"
PYTHON_BASE_FILE = """\
FROM localhost/car2mqtt-debian:bookworm
RUN apt-get update \\
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
"""
# This machine's limits and cgroup layout (see docs/install.md, "Building here").
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def podman_env() -> dict[str, str]:
    """The environment podman runs with: its storage and settings under the cache."""
    root = CACHE / "podman"
    root.mkdir(parents=True, exist_ok=True)
    storage = root / "storage.conf"
    storage.write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{root / "storage"}"\n'
        f'runroot = "/run/car2mqtt-podman"\n'
    )
    conf = root / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    return {
        **os.environ,
        "CONTAINERS_STORAGE_CONF": str(storage),
        "CONTAINERS_CONF": str(conf),
    }


def memory_cgroup() -> str:
    """Return this process's memory cgroup: containers stay in it, not in a new top one."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path
    return ""


def podman(
    *args: str, timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run podman with the tests' storage and settings."""
    return subprocess.run(
        ["podman", *args],
        capture_output=True,
        text=True,
        env=podman_env(),
        timeout=timeout,
        check=check,
    )


def pip_ca() -> Path:
    """A folder pip reads by itself (/etc/xdg/pip) that trusts this machine's CA bundle.

    Egress TLS may be intercepted by a proxy whose CA only the host trusts; mounted into the
    build, never baked into an image.
    """
    folder = CACHE / "pip-ca"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", folder / "ca.crt")
    (folder / "pip.conf").write_text("[global]\ncert = /etc/xdg/pip/ca.crt\n")
    return folder


def build(context: Path, tag: str, *args: str, file: Path | None = None) -> None:
    """Build `context` into `tag` from the local base, with pip able to reach PyPI."""
    cgroup = memory_cgroup()
    options = [f"--cgroup-parent={cgroup}/build-{os.getpid()}"] if cgroup else []
    if file is not None:
        options += ["-f", str(file)]
    result = podman(
        "build",
        "--pull=never",
        *options,
        "-v",
        f"{pip_ca()}:/etc/xdg/pip:ro",
        *args,
        "-t",
        tag,
        str(context),
        check=False,
    )
    if result.returncode != 0:
        msg = f"podman build of {tag} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        raise RuntimeError(msg)


def image_exists(tag: str) -> bool:
    """Whether podman's storage holds `tag`."""
    return podman("image", "exists", tag, check=False).returncode == 0


def ensure_bases() -> None:
    """Make the Debian base and the Python base, reusing what the cache holds."""
    if not ROOTFS_TAR.is_file():
        rootfs = CACHE / "rootfs"
        shutil.rmtree(rootfs, ignore_errors=True)
        subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR],
            check=True,
            capture_output=True,
            timeout=900,
        )
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / junk).glob("*"):
                if item.is_file():
                    item.unlink()
        partial = ROOTFS_TAR.with_suffix(".partial")
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."],
            check=True,
            timeout=300,
        )
        partial.rename(ROOTFS_TAR)
        shutil.rmtree(rootfs)
    if not image_exists(DEBIAN_IMAGE):
        podman("import", "--change", 'CMD ["/bin/bash"]', str(ROOTFS_TAR), DEBIAN_IMAGE)
    if not image_exists(PYTHON_BASE):
        folder = CACHE / "python-base"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "Containerfile").write_text(PYTHON_BASE_FILE)
        build(folder, PYTHON_BASE)


def main() -> None:
    """Prepare the bases and say what it cost."""
    started = time.monotonic()
    missing = [tool for tool in ("podman", "debootstrap", "runc") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: scripts/test installs them with apt-get")
    ensure_bases()
    print(f"container bases ready ({time.monotonic() - started:.1f} s)", file=sys.stderr)


@contextlib.contextmanager
def container(options: list[str], image: str, *command: str) -> Iterator[Container]:
    """Run `image` detached with `options` for the duration of the block, then remove it."""
    name = f"car2mqtt-test-{uuid.uuid4().hex[:8]}"
    cgroup = memory_cgroup()
    placement = [f"--cgroup-parent={cgroup}"] if cgroup else []
    podman("run", "-d", "--name", name, *placement, *options, image, *command)
    running = Container(name)
    try:
        yield running
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


@dataclass(frozen=True)
class Container:
    """A container the tests started."""

    name: str

    def logs(self) -> str:
        """What it wrote, stdout and stderr."""
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        """Run `command` inside it."""
        return podman("exec", self.name, *command, check=False)

    def inspect(self, template: str) -> str:
        """One field of `podman inspect`, by Go template."""
        return podman("inspect", "--format", template, self.name).stdout.strip()


if __name__ == "__main__":
    main()
