"""What every benchmark records about the machine and the code it measured."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo (or what platform knows)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "cpu model"):
                return value.strip()
    return platform.processor() or "unknown"


def git(*args: str) -> str | None:
    """Run git in the repository and return its output, or None if that fails."""
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def machine(**extra: Any) -> dict[str, Any]:
    """Describe the machine and the code under test, plus `extra` facts."""
    try:
        version = metadata.version("car2mqtt")
    except metadata.PackageNotFoundError:
        version = "unknown"
    status = git("status", "--porcelain", "--", "src")
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_total_gb": round(float(psutil.virtual_memory().total) / 1e9, 1),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": platform.platform(),
        "kernel": platform.release(),
        **extra,
        "car2mqtt_version": version,
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_src_dirty": None if status is None else bool(status),
        "git_src_changes": [] if not status else status.splitlines(),
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
