"""Enode webhooks: the signature, the events car2mqtt handles, and its own subscription."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from car2mqtt.clock import Clock
from car2mqtt.errors import BadCloudResponse
from car2mqtt.providers.enode.smart import SmartReads
from car2mqtt.providers.enode.wire import WebhookEvent, WebhookTestWire, WebhookWire
from car2mqtt.providers.push import (
    PushBatch,
    Pushed,
    PushedAction,
    PushedAlive,
    PushedLinkLost,
    PushedRemoval,
    PushedSmart,
    PushedState,
    Subscription,
)

API_VERSION = "2024-10-01"
SIGNATURE_HEADER = "x-enode-signature"
# What car2mqtt subscribes to; system:heartbeat and enode:webhook:test come without asking.
EVENTS = (
    "user:vehicle:discovered",
    "user:vehicle:updated",
    "user:vehicle:deleted",
    "user:vehicle:smart-charging-status-updated",
    "user:vendor-action:updated",
    "user:credentials:invalidated",
)
ALIVE = ("system:heartbeat", "enode:webhook:test")


class WebhookApi(Protocol):
    """The webhook calls of Enode's API (`EnodeClient` has them)."""

    async def create_webhook(self, body: dict[str, Any]) -> WebhookWire:
        """Subscribe a webhook."""
        ...

    async def webhook(self, webhook_id: str) -> WebhookWire | None:
        """Return a webhook, None if Enode has none with that id."""
        ...

    async def webhooks(self) -> list[WebhookWire]:
        """Return every webhook of the client."""
        ...

    async def patch_webhook(self, webhook_id: str, body: dict[str, Any]) -> WebhookWire:
        """Change a webhook."""
        ...

    async def test_webhook(self, webhook_id: str) -> WebhookTestWire:
        """Ask for a test delivery."""
        ...


def signature(secret: str, body: bytes) -> str:
    """Return the `X-Enode-Signature` Enode sends with `body`: sha1=<hex HMAC-SHA1>."""
    return "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


class EnodePush:
    """The push channel of one Enode account: its user's events, through car2mqtt's webhook."""

    def __init__(
        self,
        client: WebhookApi,
        account: str,
        user_id: str,
        public_url: str,
        *,
        smart: SmartReads,
        clock: Clock,
    ) -> None:
        self._client = client
        self._account = account
        self._user_id = user_id
        self.public_url = public_url
        self._smart = smart  # the provider's: a pushed status spares it a read
        self._clock = clock

    def verify(self, secret: str, headers: Mapping[str, str], body: bytes) -> bool:
        """Check the signature over the exact bytes received, in constant time."""
        given = headers.get(SIGNATURE_HEADER, "")
        return hmac.compare_digest(given.encode(), signature(secret, body).encode())

    def parse(self, body: bytes) -> PushBatch:
        """Read a delivery: a JSON array of events (one object is taken as a one-event array)."""
        try:
            document = json.loads(body)
        except ValueError:
            msg = "the webhook body is not JSON"
            raise BadCloudResponse(msg) from None
        events = document if isinstance(document, list) else [document]
        items: list[Pushed] = []
        unknown: list[str] = []
        others = 0
        for raw in events:
            if not isinstance(raw, dict):
                unknown.append(type(raw).__name__)
                continue
            identity = hashlib.sha256(
                json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()
            ).hexdigest()
            try:
                event = WebhookEvent.model_validate(raw)
            except ValidationError:
                unknown.append(str(raw.get("event", "an event without a name")))
                continue
            if event.event in ALIVE:
                items.append(PushedAlive(identity))
                continue
            if event.user is None or event.user.id != self._user_id:
                others += 1  # the webhook is the client's: other users' cars are not ours
                continue
            item = self._item(event, identity)
            if item is None:
                unknown.append(event.event)
            else:
                items.append(item)
        return PushBatch(tuple(items), tuple(unknown), others)

    def _item(self, event: WebhookEvent, identity: str) -> Pushed | None:
        name = event.event
        if name in ("user:vehicle:discovered", "user:vehicle:updated") and event.vehicle:
            return PushedState(identity, event.vehicle.to_state(self._account))
        smart = event.smart_charging_status
        if name == "user:vehicle:smart-charging-status-updated" and smart:
            self._smart.pushed(smart.vehicle_id, self._clock.time())
            return PushedSmart(identity, smart.vehicle_id, smart.to_smart())
        if name == "user:vehicle:deleted" and event.vehicle:
            return PushedRemoval(identity, event.vehicle.id)
        if name == "user:vendor-action:updated" and event.vendor_action:
            status, reason = event.vendor_action.outcome()
            return PushedAction(identity, event.vendor_action.id, status, reason)
        if name == "user:credentials:invalidated":
            vendor = event.vendor or "a vendor"
            return PushedLinkLost(identity, f"Enode reports invalid credentials for {vendor}")
        return None

    async def subscribe(self, url: str, secret: str, known_id: str | None) -> Subscription:
        """Create car2mqtt's webhook, or PATCH its own one; never touch another webhook."""
        body: dict[str, Any] = {
            "url": url,
            "secret": secret,
            "events": list(EVENTS),
            "apiVersion": API_VERSION,
        }
        if known_id is not None and await self._client.webhook(known_id) is not None:
            return _subscription(await self._client.patch_webhook(known_id, body))
        # One at this very receiver URL is car2mqtt's own: made by an earlier run whose state
        # file is gone, or whose create answer was lost. Enode refuses a second one anyway.
        ours = [w for w in await self._client.webhooks() if w.url == url]
        if ours:
            return _subscription(await self._client.patch_webhook(ours[0].id, body))
        return _subscription(await self._client.create_webhook(body))

    async def describe(self, subscription_id: str) -> Subscription | None:
        """Return car2mqtt's webhook as Enode sees it."""
        found = await self._client.webhook(subscription_id)
        return None if found is None else _subscription(found)

    async def test(self, subscription_id: str) -> tuple[bool, str]:
        """Ask Enode for `enode:webhook:test`; a success re-activates the webhook."""
        answer = await self._client.test_webhook(subscription_id)
        return answer.status == "SUCCESS", answer.description or answer.status


def _subscription(webhook: WebhookWire) -> Subscription:
    last = webhook.last_success
    if last is not None and last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    return Subscription(
        webhook.id,
        webhook.url,
        webhook.is_active,
        last if isinstance(last, datetime) else None,
        tuple(webhook.events),
    )
