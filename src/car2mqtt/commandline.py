"""What every part of the command line shares: options, one-line errors, running a coroutine.

`cli.py` assembles the `car2mqtt` command; provider plug-ins (`providers/<name>/cli.py`) and
the simulator (`simulator/cli.py`) add their own commands from these pieces. This module names
no provider and imports nothing of theirs. Commands import what they alone need lazily:
`car2mqtt run` on a Raspberry Pi should not carry the QR encoder in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.text import Text

from car2mqtt.errors import Car2MqttError

__all__ = [
    "AccountName",
    "ConfigOption",
    "Host",
    "LinkTimeout",
    "Port",
    "Seed",
    "TimeFactor",
    "Vehicles",
    "err",
    "guard",
    "public_url",
    "run_async",
    "show_link",
    "stdin_reader",
]

T = TypeVar("T")
err = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help="Configuration file (default: $CAR2MQTT_CONFIG, else ./car2mqtt.yaml).",
    ),
]
AccountName = Annotated[
    str, typer.Option(metavar="NAME", help="The account name in the configuration.")
]
LinkTimeout = Annotated[
    float, typer.Option(min=1, metavar="MINUTES", help="Minutes to wait for the user.")
]
Host = Annotated[str, typer.Option(metavar="HOST", help="Address to listen on.")]
Port = Annotated[
    int,
    typer.Option(min=0, max=65535, metavar="PORT", help="Port to listen on (0 picks a free one)."),
]
Seed = Annotated[
    int, typer.Option(metavar="N", help="Seed for every random choice: same seed, same cars.")
]
Vehicles = Annotated[
    int, typer.Option(min=0, max=100_000, metavar="N", help="Vehicles pre-linked to the --user.")
]
TimeFactor = Annotated[
    float,
    typer.Option(
        min=0,
        metavar="FACTOR",
        help="Simulated seconds per real second (0 freezes time; /admin/clock moves it).",
    ),
]


def public_url(value: str | None) -> str | None:
    """Check a `--public-url` option: an http:// or https:// address."""
    if value is None:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        msg = f"{value!r} is not an http:// or https:// URL, e.g. http://192.168.1.20:8765"
        raise typer.BadParameter(msg)
    return value.strip()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro`; SIGTERM and Ctrl-C stop it cleanly (the bridge says offline on its way out)."""

    async def main() -> T:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            # Ctrl-C too: asyncio's own SIGINT handling cancels the main task and then every
            # task still alive, so uvicorn's lifespan could be cut off with a traceback.
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, task.cancel)
        return await task

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        raise typer.Exit(0) from None


def guard(action: Callable[[], None]) -> None:
    """Run `action`, turning car2mqtt's own errors into one clear line and exit code 2."""
    try:
        action()
    except Car2MqttError as exc:
        # Text, not markup: messages quote user input such as accounts[home].
        err.print(Text.assemble(("error: ", "bold red"), str(exc)))
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    except BaseExceptionGroup as group:
        # Task groups wrap what a task raised; a user's own mistake still gets one line.
        mine = group.subgroup(lambda e: isinstance(e, (Car2MqttError, OSError)))
        if mine is None or mine.exceptions != group.exceptions:
            raise
        first = mine.exceptions[0]
        err.print(Text.assemble(("error: ", "bold red"), str(first)))
        raise typer.Exit(2) from None
    except OSError as exc:
        err.print(Text.assemble(("error: ", "bold red"), str(exc.strerror or exc)))
        raise typer.Exit(2) from None


def stdin_reader() -> Callable[[], Coroutine[Any, Any, str]]:
    """Lines typed on stdin, read by a daemon thread so waiting never blocks the loop or exit."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def pump() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=pump, name="stdin", daemon=True).start()

    async def read() -> str:
        line = await lines.get()
        if line is None:  # stdin closed: only the redirect can finish the link now
            await asyncio.Event().wait()
        return line or ""

    return read


def show_link(url: str, redirect_uri: str) -> None:
    """Show a link to open (and its QR code) and where the browser comes back to."""
    import segno  # noqa: PLC0415 - only linking draws QR codes

    out = Console(soft_wrap=True)
    out.print("Open this link in a browser (or scan the QR code) and log in to your car's account:")
    print(url, flush=True)
    qr = io.StringIO()
    segno.make(url, error="l").terminal(out=qr, compact=True)
    out.print(qr.getvalue(), markup=False, highlight=False)
    out.print(
        f"When you are done, the browser comes back to {redirect_uri} . If that address does "
        "not open where your browser is, stop (Ctrl-C) and use --host 0.0.0.0 or --public-url.",
        markup=False,
        highlight=False,
    )
    out.print("Waiting for you to finish linking ...")
