"""Install the real Home Assistants the end-to-end tests run against, cached outside the repository.

    python -m tests.e2e.install_ha [VERSION...]   # installs on first run, prints where each is

Two versions are tested, because Home Assistant 2026.4 changed how MQTT discovery names
entities (it ignores `object_id` and reads `default_entity_id`):

- 2025.4.4, the newest that runs on Python 3.13: a venv made with uv from a pyenv Python 3.13.
- 2026.11.0, the newest, which needs Python 3.14: a Debian testing chroot built with
  debootstrap (root only), with Home Assistant in a venv inside it.

Both live in `$CAR2MQTT_HA_CACHE` (default `~/.cache/car2mqtt`), in a folder named for the
version, so a fresh machine builds them from scratch and later runs reuse them. Each follows the
tested recipe: Home Assistant's own pinned constraints (without them the resolver backtracks
for minutes), the frontend (without it HA boots into recovery mode), bytecode compiled up front
(or HA starts twice as slowly), and one warm-up start so the requirements HA installs on its
first start are in place before any test.

The chroot needs /proc while something runs in it. Every command that enters it runs in a
mount namespace of its own (`unshare --mount`) that mounts /proc there, so the mount lives
exactly as long as the command: nothing is ever left mounted on the host, even if the tests
are killed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

VENV_VERSION = "2025.4.4"
CHROOT_VERSION = "2026.11.0"
HA_VERSIONS = (VENV_VERSION, CHROOT_VERSION)
PYTHON_VERSION = "3.13"  # for the venv install
DEBIAN_MIRROR = os.environ.get("CAR2MQTT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CHROOT_HA = "/opt/ha"  # the Home Assistant venv, inside the chroot
CHROOT_ENV = (
    "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/root",
    "LANG=C.UTF-8",
    "TZ=UTC",
    "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
    "PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
    "PIP_DISABLE_PIP_VERSION_CHECK=1",
)
# Enters the chroot in a private mount namespace with /proc mounted: `sh -c ENTER sh ROOT CMD...`
# (unshare's default propagation is private, so the mount never reaches the host).
_ENTER = 'root=$1; shift; mount -t proc proc "$root/proc" && exec chroot "$root" "$@"'


def cache_root() -> Path:
    """Where installs are kept."""
    root = os.environ.get("CAR2MQTT_HA_CACHE") or str(Path.home() / ".cache" / "car2mqtt")
    return Path(root)


class HaInstall:
    """One cached Home Assistant install: how to build it, run `hass` and place its config."""

    version: str
    kind: str  # how it is installed, for humans

    @property
    def cache_dir(self) -> Path:
        """The folder holding this install."""
        raise NotImplementedError

    def installed(self) -> bool:
        """Whether the cache holds a complete install."""
        raise NotImplementedError

    def _build(self) -> None:
        raise NotImplementedError

    def command(self, *args: str) -> list[str]:
        """The command line that runs `hass ARGS`."""
        raise NotImplementedError

    def inside(self, path: Path) -> str:
        """`path` (on this machine) as Home Assistant sees it."""
        return str(path)

    @contextlib.contextmanager
    def config_dir(self, base: Path) -> Iterator[Path]:
        """A fresh folder for one Home Assistant's configuration, visible to it."""
        path = base / f"ha-{self.version}"
        path.mkdir(parents=True)
        yield path

    def install(self) -> float:
        """Install unless the cache already holds it; return the seconds it took (0 if cached)."""
        if self.installed():
            return 0.0
        started = time.monotonic()
        self._build()
        self._warm_up()
        (self.cache_dir / "installed").write_text(f"{self.version}\n")
        return time.monotonic() - started

    def _warm_up(self) -> None:
        """Start HA once, so its first-start installs happen now rather than in a test."""
        from tests.mqtt_support import free_port

        port = free_port()
        with (
            tempfile.TemporaryDirectory(prefix="ha-warmup-") as base,
            self.config_dir(Path(base)) as config,
        ):
            Path(config, "configuration.yaml").write_text(
                "homeassistant:\n  time_zone: UTC\nhttp:\n  server_host: 127.0.0.1\n"
                f"  server_port: {port}\napi:\nauth:\nconfig:\nlogger:\n  default: warning\n"
            )
            with (config / "ha.out").open("wb") as out:
                proc = subprocess.Popen(
                    self.command("-c", self.inside(config), "--log-no-color"),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
                try:
                    deadline = time.monotonic() + 300
                    while time.monotonic() < deadline and proc.poll() is None:
                        if _http_up(port):
                            break
                        time.sleep(1)
                    else:
                        tail = (config / "ha.out").read_text(errors="replace")[-3000:]
                        msg = f"Home Assistant {self.version} did not come up:\n{tail}"
                        raise RuntimeError(msg)
                finally:
                    proc.terminate()
                    try:
                        proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()


@dataclass
class VenvInstall(HaInstall):
    """Home Assistant in a venv made with uv from a pyenv Python."""

    version: str = VENV_VERSION
    python_version: str = PYTHON_VERSION
    kind: str = f"venv, Python {PYTHON_VERSION}"

    @property
    def cache_dir(self) -> Path:
        """The folder holding this install."""
        return cache_root() / f"homeassistant-{self.version}"

    @property
    def venv(self) -> Path:
        """The venv holding Home Assistant."""
        return self.cache_dir / "venv"

    def installed(self) -> bool:
        """Whether the cache holds a complete install."""
        return (self.cache_dir / "installed").exists() and (self.venv / "bin" / "hass").exists()

    def command(self, *args: str) -> list[str]:
        """The command line that runs `hass ARGS`."""
        return [str(self.venv / "bin" / "hass"), *args]

    def _build(self) -> None:
        shutil.rmtree(self.cache_dir, ignore_errors=True)
        self.cache_dir.mkdir(parents=True)
        wheels = self.cache_dir / "wheels"
        # uv (a wheel from PyPI) installs Home Assistant's ~300 pinned packages about four times
        # faster than pip; bytecode is compiled up front, or HA starts twice as slowly.
        _run(_uv(), "venv", "--quiet", "--python", self._python(), str(self.venv))
        _run(
            sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
            "--python-version", self.python_version, "-d", str(wheels),
            f"homeassistant=={self.version}",
        )  # fmt: skip
        (wheel,) = wheels.glob("homeassistant-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            constraints = archive.read("homeassistant/package_constraints.txt").decode()
        (self.cache_dir / "constraints.txt").write_text(constraints)
        _run(
            _uv(), "pip", "install", "--quiet", "--compile-bytecode",
            "--python", str(self.venv / "bin" / "python"),
            "-c", str(self.cache_dir / "constraints.txt"),
            f"homeassistant=={self.version}", "home-assistant-frontend", "paho-mqtt",
        )  # fmt: skip

    def _python(self) -> str:
        # Real interpreters first: a pyenv shim only runs when its version is activated.
        pattern = f"{self.python_version}.*/bin/python3"
        candidates = [str(p) for p in sorted((Path.home() / ".pyenv/versions").glob(pattern))]
        pyenv = shutil.which("pyenv")
        if pyenv:
            root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
            versions = Path(root.stdout.strip()) / "versions"
            candidates += [str(p) for p in sorted(versions.glob(pattern))]
        which = shutil.which(f"python{self.python_version}")
        if which and "/shims/" not in which:
            candidates.append(which)
        for candidate in candidates:
            if Path(candidate).exists():
                return candidate
        msg = f"Home Assistant {self.version} needs Python {self.python_version}; none was found"
        raise RuntimeError(msg)


@dataclass
class ChrootInstall(HaInstall):
    """Home Assistant in a venv inside a Debian testing chroot (for its newer Python)."""

    version: str = CHROOT_VERSION
    suite: str = "testing"
    kind: str = "Debian testing chroot"

    @property
    def cache_dir(self) -> Path:
        """The folder holding this install: the chroot's root, with the stamp beside it."""
        return cache_root() / f"ha-{self.version}-chroot"

    @property
    def root(self) -> Path:
        """The chroot's root directory."""
        return self.cache_dir / "root"

    def install(self) -> float:
        """Install unless cached; either way give the chroot this machine's DNS settings."""
        took = super().install()
        self._copy_resolv_conf()
        return took

    def installed(self) -> bool:
        """Whether the cache holds a complete install."""
        hass = self.root / CHROOT_HA.lstrip("/") / "bin" / "hass"
        return (self.cache_dir / "installed").exists() and hass.exists()

    def enter(self, *args: str) -> list[str]:
        """The command line that runs ARGS inside the chroot, with a clean environment."""
        return [
            "unshare", "--mount", "--", "sh", "-c", _ENTER, "sh", str(self.root),
            "/usr/bin/env", "-i", *CHROOT_ENV, *args,
        ]  # fmt: skip

    def command(self, *args: str) -> list[str]:
        """The command line that runs `hass ARGS` (every exec keeps the same process)."""
        return self.enter(f"{CHROOT_HA}/bin/hass", *args)

    def inside(self, path: Path) -> str:
        """`path` (under the chroot's root) as Home Assistant sees it."""
        return "/" + str(path.resolve().relative_to(self.root.resolve()))

    @contextlib.contextmanager
    def config_dir(self, base: Path) -> Iterator[Path]:
        """A fresh folder inside the chroot (HA sees nothing else), removed afterwards."""
        del base
        scratch = self.root / "var" / "tmp"
        path = Path(tempfile.mkdtemp(prefix=f"car2mqtt-e2e-{self.version}-", dir=scratch))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def _copy_resolv_conf(self) -> None:
        """Give the chroot this machine's DNS settings (HA may install a requirement)."""
        resolv = self.root / "etc" / "resolv.conf"
        resolv.unlink(missing_ok=True)  # never write through a link out of the chroot
        shutil.copyfile("/etc/resolv.conf", resolv)

    def _build(self) -> None:
        if os.geteuid() != 0:
            msg = f"building the Home Assistant {self.version} chroot needs root (debootstrap)"
            raise RuntimeError(msg)
        if shutil.which("debootstrap") is None:
            msg = "debootstrap is missing; scripts/test installs it (apt-get install debootstrap)"
            raise RuntimeError(msg)
        _remove_tree(self.cache_dir)
        self.root.mkdir(parents=True)
        log = self.cache_dir / "build.log"
        # debootstrap mounts /proc and /sys in the target while it works: in a namespace of its
        # own, they go away with it whatever happens.
        _run_logged(
            log, "unshare", "--mount", "--", "debootstrap", "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates", self.suite, str(self.root),
            DEBIAN_MIRROR,
        )  # fmt: skip
        self._copy_resolv_conf()
        # Trust what this machine trusts (a network may intercept TLS with its own CA).
        extra = self.root / "usr" / "local" / "share" / "ca-certificates"
        for cert in Path("/usr/local/share/ca-certificates").glob("*.crt"):
            shutil.copyfile(cert, extra / cert.name)
        _run_logged(log, *self.enter("update-ca-certificates"))
        script = self.root / "opt" / "car2mqtt-install-ha.sh"
        script.write_text(
            "#!/bin/sh\nset -eu\n"
            f"python3 -m venv {CHROOT_HA}\n"
            f"{CHROOT_HA}/bin/pip install -q uv\n"
            "rm -rf /tmp/wheels && mkdir /tmp/wheels\n"
            f"{CHROOT_HA}/bin/pip download -q --no-deps --only-binary=:all: -d /tmp/wheels"
            f" homeassistant=={self.version}\n"
            f"cd /tmp/wheels && {CHROOT_HA}/bin/python -m zipfile -e homeassistant-*.whl x\n"
            f"cp x/homeassistant/package_constraints.txt {CHROOT_HA}/constraints.txt\n"
            f"{CHROOT_HA}/bin/uv pip install -q --compile-bytecode -p {CHROOT_HA}/bin/python"
            f" -c {CHROOT_HA}/constraints.txt homeassistant=={self.version}"
            " home-assistant-frontend paho-mqtt\n"
            "cd / && rm -rf /tmp/wheels /root/.cache\n"
        )
        script.chmod(0o755)
        _run_logged(log, *self.enter("/opt/car2mqtt-install-ha.sh"))


def _remove_tree(path: Path) -> None:
    """Remove a folder, refusing if anything is still mounted under it (say a /proc)."""
    resolved = str(path.resolve())
    mounts = Path("/proc/self/mounts").read_text().splitlines() if Path("/proc").exists() else []
    under = sorted(
        (m.split()[1] for m in mounts if len(m.split()) > 1),
        key=len,
        reverse=True,
    )
    for point in under:
        if point == resolved or point.startswith(resolved + "/"):
            subprocess.run(["umount", point], check=False, capture_output=True)
            if os.path.ismount(point):
                msg = f"{point} is still mounted; not removing {path}"
                raise RuntimeError(msg)
    shutil.rmtree(path, ignore_errors=True)


def _uv() -> str:
    found = Path(sys.executable).with_name("uv")
    return str(found) if found.exists() else (shutil.which("uv") or "uv")


def _run(*args: str) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def _run_logged(log: Path, *args: str) -> None:
    """Run a build step with its output in `log`; on failure, raise with the log's tail."""
    started = time.monotonic()
    with log.open("ab") as out:
        out.write(f"$ {' '.join(args)}\n".encode())
        out.flush()
        done = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, check=False)
        out.write(f"(exit {done.returncode} after {time.monotonic() - started:.0f} s)\n".encode())
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        msg = f"{args[0]} ... failed with {done.returncode} (log: {log}):\n{tail}"
        raise RuntimeError(msg)


def _http_up(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


INSTALLS: dict[str, HaInstall] = {VENV_VERSION: VenvInstall(), CHROOT_VERSION: ChrootInstall()}


def main(argv: list[str]) -> int:
    """Install the named versions (all by default); print one line per version with its cost."""
    for version in argv or HA_VERSIONS:
        install = INSTALLS[version]
        started = time.monotonic()
        built = install.install()
        how = "built" if built else "cached"
        print(
            f"    {version} ({install.kind}, {how} in {install.cache_dir}): "
            f"ready in {time.monotonic() - started:.0f}s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
