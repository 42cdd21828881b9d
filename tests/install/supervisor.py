"""A fake Home Assistant Supervisor: the one endpoint the add-on asks, over real HTTP."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "supervisor-token-for-tests"


@dataclass
class FakeSupervisor:
    """What it answers to `GET /services/mqtt` and `GET /core/info`, and who asked."""

    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    asked: list[tuple[str, str | None]] = field(default_factory=list)
    url: str = ""
    # What it answers to `GET /core/info` (None: 404, as a Supervisor without that role).
    core: dict[str, Any] | None = field(
        default_factory=lambda: {"result": "ok", "data": {"version": "2026.11.2"}}
    )

    def offer(self, **mqtt: Any) -> None:
        """Answer with this MQTT service, in the Supervisor's envelope."""
        self.status = 200
        self.body = {"result": "ok", "data": {"addon": "core_mosquitto", **mqtt}}

    def refuse(self, status: int, message: str) -> None:
        """Answer with an error, as the Supervisor does."""
        self.status = status
        self.body = {"result": "error", "message": message}


@contextlib.contextmanager
def running_supervisor(host: str = "127.0.0.1", port: int = 0) -> Iterator[FakeSupervisor]:
    """Serve a fake Supervisor on `host`:`port` for the duration of the block."""
    fake = FakeSupervisor()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fake.asked.append((self.path, self.headers.get("Authorization")))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._send(401, {"result": "error", "message": "Unauthorized"})
            elif self.path == "/services/mqtt":
                self._send(fake.status, fake.body)
            elif self.path == "/core/info" and fake.core is not None:
                self._send(200, fake.core)
            else:
                self._send(404, {"result": "error", "message": "not found"})

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    fake.url = f"http://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
