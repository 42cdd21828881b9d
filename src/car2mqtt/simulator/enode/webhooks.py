"""Webhook delivery: signed JSON arrays; each event retries on its own schedule.

A webhook is deactivated after failed deliveries in a row; a test that gets through revives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from collections import deque
from typing import Any

import httpx

from car2mqtt.clock import isoformat
from car2mqtt.simulator.enode.cloud import (
    API_VERSION,
    WEBHOOK_BACKOFF_S,
    WEBHOOK_BATCH,
    WEBHOOK_MAX_FAILURES,
    EnodeCloud,
    Queued,
    Webhook,
)

_LOGGER = logging.getLogger(__name__)
_POLL_S = 0.2


def sign(secret: str, body: bytes) -> str:
    """Return the `X-Enode-Signature` value for `body`."""
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


class WebhookDispatcher:
    """Delivers queued events to each active webhook, one batch at a time."""

    def __init__(self, cloud: EnodeCloud, client: httpx.AsyncClient) -> None:
        self._cloud = cloud
        self._client = client
        self._wake = asyncio.Event()
        # One flush at a time: the loop and an admin clock jump may both ask for one, and two
        # would send (and then dequeue) the same batch twice.
        self._lock = asyncio.Lock()
        self.log: deque[dict[str, Any]] = deque(maxlen=500)
        cloud.on_webhook_event = self._wake.set

    def wake(self) -> None:
        """Look for due deliveries now (after the clock moved, say)."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver forever; cancel the task to stop."""
        while True:
            # asyncio.timeout, not wait_for, which can swallow a cancellation on Python 3.11.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_POLL_S):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Attempt every delivery that is due now."""
        world = self._cloud.world
        async with self._lock:
            if self._cloud.webhooks_paused:
                return
            for webhook in list(self._cloud.webhooks.values()):
                while webhook.is_active:
                    now = world.sync()
                    # Each event keeps its own retry schedule: one that keeps failing waits
                    # for its next attempt without holding up the events behind it.
                    due = [q for q in webhook.outbox if q.next_attempt <= now][:WEBHOOK_BATCH]
                    if not due or not await self._deliver(webhook, due):
                        break

    async def _deliver(self, webhook: Webhook, due: list[Queued]) -> bool:
        body = json.dumps([q.event for q in due], separators=(",", ":")).encode()
        status, error = await self._post(webhook, body)
        now = self._cloud.world.sync()
        ok = status is not None and 200 <= status < 300
        self.log.append(
            {
                "webhookId": webhook.id,
                "at": isoformat(now),
                "events": [q.event["event"] for q in due],
                "status": status,
                "error": error,
                "attempt": max(q.attempts for q in due) + 1,
            }
        )
        sent = {id(q) for q in due}
        if ok:
            webhook.outbox = deque(q for q in webhook.outbox if id(q) not in sent)
            webhook.failures = 0
            webhook.last_success = now
            return True
        webhook.failures += 1
        if webhook.failures >= WEBHOOK_MAX_FAILURES:
            _LOGGER.warning(
                "webhook %s deactivated after %d failed deliveries; %d events dropped",
                webhook.id,
                webhook.failures,
                len(webhook.outbox),
            )
            webhook.is_active = False
            webhook.outbox.clear()
            return False
        kept: deque[Queued] = deque()
        for queued in webhook.outbox:
            if id(queued) in sent:
                queued.attempts += 1
                if not queued.retry or queued.attempts >= WEBHOOK_MAX_FAILURES:
                    continue  # a heartbeat, or an event that never got through: dropped
                queued.next_attempt = now + WEBHOOK_BACKOFF_S[queued.attempts - 1]
            kept.append(queued)
        webhook.outbox = kept
        return False

    def _headers(self, webhook: Webhook, body: bytes) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "X-Enode-Signature": sign(webhook.secret, body),
            "X-Enode-Delivery": self._cloud.world.new_uuid(),
            "User-Agent": "car2mqtt-simulator (Enode webhooks)",
        }
        if webhook.auth_header:
            headers[webhook.auth_header[0]] = webhook.auth_header[1]
        return headers

    async def _post(self, webhook: Webhook, body: bytes) -> tuple[int | None, str | None]:
        headers = self._headers(webhook, body)
        try:
            response = await self._client.post(webhook.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        return response.status_code, None

    async def test(self, webhook: Webhook) -> dict[str, Any]:
        """Send `enode:webhook:test` now; a success reactivates the webhook."""
        now = self._cloud.world.sync()
        if self._cloud.webhooks_paused:
            # Enode's delivery side is down (the admin switch): its test cannot get through.
            return {
                "status": "FAILURE",
                "description": f"Could not reach {webhook.url}: deliveries are paused",
                "response": None,
            }
        event = {"createdAt": isoformat(now), "version": API_VERSION, "event": "enode:webhook:test"}
        body = json.dumps([event], separators=(",", ":")).encode()
        headers = self._headers(webhook, body)
        try:
            response = await self._client.post(webhook.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return {
                "status": "FAILURE",
                "description": f"Could not reach {webhook.url}: {type(exc).__name__}",
                "response": None,
            }
        ok = 200 <= response.status_code < 300
        if ok:
            webhook.is_active = True
            webhook.failures = 0
            for queued in webhook.outbox:
                queued.next_attempt = 0.0
            webhook.last_success = now
        return {
            "status": "SUCCESS" if ok else "FAILURE",
            "description": f"The webhook answered {response.status_code}.",
            "response": {
                "code": response.status_code,
                "body": response.text[:1000],
                "headers": [f"{k}: {v}" for k, v in response.headers.items()],
            },
        }
