"""Enode (API 2024-10-01): client credentials, paginated vehicle lists, charging actions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import ValidationError

from car2mqtt.auth.oauth2 import Token, TokenEndpoint, request_token
from car2mqtt.auth.tokens import TokenManager, TokenPersistence
from car2mqtt.clock import Clock
from car2mqtt.errors import (
    AuthError,
    BadCloudResponse,
    CommandRejected,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    ReauthRequired,
)
from car2mqtt.history.model import CloudSession
from car2mqtt.models import CommandResult, CommandStatus, SmartCharging, VehicleRef, VehicleState
from car2mqtt.providers.base import Command, CommandValue, gather_pages, shown_value
from car2mqtt.providers.enode.config import EnodeAccount
from car2mqtt.providers.enode.push import EnodePush
from car2mqtt.providers.enode.smart import POLICY_COMMANDS, SmartReads, policy_change
from car2mqtt.providers.enode.spec import SPEC
from car2mqtt.providers.enode.wire import (
    Action,
    ChargingBucketWire,
    ChargingSessions,
    ChargingSessionWire,
    ChargingStatistics,
    LinkResponse,
    Problem,
    SmartChargingPolicy,
    SmartChargingStatusWire,
    SmartOverrideWire,
    User,
    Vehicle,
    VehiclePage,
    WebhookPage,
    WebhookTestWire,
    WebhookWire,
)
from car2mqtt.providers.http import (
    M,
    TokenAccount,
    api_client,
    parse,
    raise_for_transient,
    send,
    token_client,
)
from car2mqtt.providers.plugin import RequestHook, Wiring

_LOGGER = logging.getLogger(__name__)

API_VERSION = "2024-10-01"
PAGE_SIZE = 50
# 500,000 cars: far beyond any account, so only a cloud handing out endless cursors hits it.
MAX_PAGES = 10_000
# When every car goes dark, ask whether the user's credentials still exist, at most this often:
# one extra call an hour, and only then, keeps steady-state polling at list calls only.
USER_CHECK_INTERVAL_S = 3600.0
LINK_SCOPES = ("vehicle:read:data", "vehicle:read:location", "vehicle:control:charging")


class EnodeClient:
    """A thin typed client: one method per endpoint, cloud errors translated to ours."""

    def __init__(self, http: httpx.AsyncClient, clock: Clock) -> None:
        self._http = http
        self._clock = clock
        self.calls = 0

    async def _request(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        self.calls += 1
        response = await send(self._http, "Enode", method, path, json=body, params=params)
        if response.status_code < 400:
            return response
        problem = _problem(response)
        raise_for_transient(response, "Enode", path, problem, now=self._clock.time())
        status = response.status_code
        raise ProviderRejected(f"Enode refused {method} {path}: {problem}", status, problem)

    async def _get_model(self, path: str, model: type[M], **params: Any) -> M:
        response = await self._request("GET", path, params=params or None)
        return parse(response, model, "Enode")

    async def user_vehicles(self, user_id: str) -> list[Vehicle]:
        """Return every vehicle of `user_id`, one call per page of 50."""
        return [vehicle async for page in self.user_vehicle_pages(user_id) for vehicle in page]

    async def user_vehicle_pages(self, user_id: str) -> AsyncIterator[list[Vehicle]]:
        """Yield the vehicles of `user_id` a page (of 50) at a time, as each page arrives."""
        params: dict[str, Any] = {"pageSize": PAGE_SIZE}
        path = f"/users/{user_id}/vehicles"
        cursors: set[str] = set()
        for _ in range(MAX_PAGES):
            page = await self._get_model(path, VehiclePage, **params)
            yield page.data
            after = page.pagination.after
            if not after or not page.data:
                return
            if after in cursors:
                # Following it would list the same pages for ever.
                msg = f"Enode repeated a page cursor on {path}"
                raise BadCloudResponse(msg)
            cursors.add(after)
            params = {"pageSize": PAGE_SIZE, "after": after}
        msg = f"Enode listed more than {MAX_PAGES} pages on {path}"
        raise BadCloudResponse(msg)

    async def user(self, user_id: str) -> User:
        """Return the user and the vendor accounts they linked."""
        return await self._get_model(f"/users/{user_id}", User)

    async def charging_sessions(
        self, user_id: str, since: datetime, until: datetime
    ) -> list[ChargingSessionWire]:
        """Return the user's vehicle charging sessions that meet [since, until] (no pages)."""
        path = f"/users/{user_id}/statistics/charging/sessions"
        params = {"type": "vehicle", "startDate": _iso(since), "endDate": _iso(until)}
        return (await self._get_model(path, ChargingSessions, **params)).root

    async def charging_statistics(
        self, user_id: str, since: datetime, until: datetime, resolution: str = "DAY"
    ) -> list[ChargingBucketWire]:
        """Return the energy the user's vehicles took, in buckets of `resolution` (no pages)."""
        path = f"/users/{user_id}/statistics/charging"
        params = {
            "type": "vehicle",
            "startDate": _iso(since),
            "endDate": _iso(until),
            "resolution": resolution,
        }
        return (await self._get_model(path, ChargingStatistics, **params)).root

    async def charge(self, vehicle_id: str, action: str) -> Action:
        """Ask Enode to START or STOP charging."""
        response = await self._request(
            "POST", f"/vehicles/{vehicle_id}/charging", body={"action": action}
        )
        return parse(response, Action, "Enode")

    async def set_max_current(self, vehicle_id: str, amperes: float) -> Action:
        """Ask Enode to set the vehicle's maximum charging current."""
        response = await self._request(
            "POST", f"/vehicles/{vehicle_id}/max-current", body={"maxCurrent": amperes}
        )
        return parse(response, Action, "Enode")

    async def set_smart_policy(self, vehicle_id: str, changes: dict[str, Any]) -> None:
        """Change the vehicle's smart charging policy (`isEnabled`, `deadline`, ...)."""
        path = f"/vehicles/{vehicle_id}/smart-charging-policy"
        parse(await self._request("PUT", path, body=changes), SmartChargingPolicy, "Enode")

    async def smart_status(self, vehicle_id: str) -> SmartChargingStatusWire:
        """Return the vehicle's smart charging status and plan."""
        path = f"/vehicles/{vehicle_id}/smart-charging-status"
        return await self._get_model(path, SmartChargingStatusWire)

    async def start_override(self, vehicle_id: str) -> SmartOverrideWire:
        """Charge now, whatever smart charging plans (a smart override)."""
        response = await self._request("POST", f"/vehicles/{vehicle_id}/smart-override")
        return parse(response, SmartOverrideWire, "Enode")

    async def end_override(self, vehicle_id: str) -> None:
        """End the vehicle's smart override: smart charging takes over again."""
        await self._request("DELETE", f"/vehicles/{vehicle_id}/smart-override")

    async def action(self, action_id: str) -> Action:
        """Return an action (charging or max current)."""
        return await self._get_model(f"/vehicles/actions/{action_id}", Action)

    async def refresh_hint(self, vehicle_id: str) -> None:
        """Ask Enode to refresh the vehicle's data soon."""
        await self._request("POST", f"/vehicles/{vehicle_id}/refresh-hint")

    async def create_webhook(self, body: dict[str, Any]) -> WebhookWire:
        """Subscribe a webhook."""
        response = await self._request("POST", "/webhooks", body=body)
        return parse(response, WebhookWire, "Enode")

    async def webhook(self, webhook_id: str) -> WebhookWire | None:
        """Return a webhook (None if Enode has no such webhook)."""
        try:
            return await self._get_model(f"/webhooks/{webhook_id}", WebhookWire)
        except ProviderRejected as exc:
            if exc.status == 404:
                return None
            raise

    async def webhooks(self) -> list[WebhookWire]:
        """Return every webhook of the client, page by page."""
        found: list[WebhookWire] = []
        params: dict[str, Any] = {"pageSize": PAGE_SIZE}
        for _ in range(MAX_PAGES):
            page = await self._get_model("/webhooks", WebhookPage, **params)
            found += page.data
            if not page.pagination.after or not page.data:
                return found
            params = {"pageSize": PAGE_SIZE, "after": page.pagination.after}
        msg = f"Enode listed more than {MAX_PAGES} pages on /webhooks"
        raise BadCloudResponse(msg)

    async def patch_webhook(self, webhook_id: str, body: dict[str, Any]) -> WebhookWire:
        """Change a webhook."""
        response = await self._request("PATCH", f"/webhooks/{webhook_id}", body=body)
        return parse(response, WebhookWire, "Enode")

    async def test_webhook(self, webhook_id: str) -> WebhookTestWire:
        """Ask Enode to send `enode:webhook:test` now."""
        response = await self._request("POST", f"/webhooks/{webhook_id}/test")
        return parse(response, WebhookTestWire, "Enode")

    async def create_link(
        self, user_id: str, redirect_uri: str, *, vendor: str | None = None, language: str = "en-US"
    ) -> LinkResponse:
        """Start a Link UI session for `user_id`."""
        body: dict[str, Any] = {
            "vendorType": "vehicle",
            "scopes": list(LINK_SCOPES),
            "language": language,
            "redirectUri": redirect_uri,
        }
        if vendor:
            body["vendor"] = vendor
        response = await self._request("POST", f"/users/{user_id}/link", body=body)
        return parse(response, LinkResponse, "Enode")


def _iso(moment: datetime) -> str:
    # Enode's date-time: RFC 3339 in UTC; a time without an offset is taken as UTC.
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _problem(response: httpx.Response) -> str:
    try:
        problem = Problem.model_validate_json(response.content)
    except ValidationError:
        return f"HTTP {response.status_code}"
    return problem.detail or problem.title or f"HTTP {response.status_code}"


class EnodeProvider(TokenAccount):
    """One Enode account (client credentials plus the user whose cars it bridges)."""

    spec = SPEC

    def __init__(
        self,
        account: str,
        user_id: str,
        client: EnodeClient,
        tokens: TokenManager,
        clock: Clock,
        closers: Sequence[httpx.AsyncClient] = (),
    ) -> None:
        self.account = account
        self.user_id = user_id
        self.client = client
        self.tokens = tokens
        self._clock = clock
        self._closers = closers
        self.link_problem: str | None = None
        self.unreadable: frozenset[str] = frozenset()  # the list call carries every state
        self._user_checked_at: float | None = None
        self.push: EnodePush | None = None  # webhooks, when the account has a public_url
        self.smart = SmartReads()

    @classmethod
    def create(
        cls,
        *,
        account: str,
        user_id: str,
        api_url: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        clock: Clock,
        persistence: TokenPersistence | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 30.0,
        public_url: str | None = None,
        meter: RequestHook | None = None,
    ) -> EnodeProvider:
        """Wire an account: a token client, a token owner and an authorised API client."""
        token_http = token_client(transport, timeout_s)
        endpoint = TokenEndpoint(token_url, client_id, client_secret)

        async def fetch(_old: Token | None) -> Token:
            # Client credentials have no refresh token: every renewal is a fresh grant.
            return await request_token(token_http, endpoint, clock, "client_credentials")

        tokens = TokenManager(account, fetch, clock, persistence)
        api_http = api_client(
            api_url, tokens, transport, timeout_s, meter, **{"Enode-Version": API_VERSION}
        )
        client = EnodeClient(api_http, clock)
        provider = cls(account, user_id, client, tokens, clock, (token_http, api_http))
        if public_url is not None:
            provider.push = EnodePush(
                client, account, user_id, public_url, smart=provider.smart, clock=clock
            )
        return provider

    @classmethod
    def from_account(cls, account: EnodeAccount, wiring: Wiring) -> EnodeProvider:
        """Build the provider of a configured Enode account (the plug-in's factory)."""
        return cls.create(
            account=account.name,
            user_id=account.user_id,
            api_url=account.api_url,
            token_url=account.token_url,
            client_id=account.client_id,
            client_secret=account.client_secret.get_secret_value(),
            clock=wiring.clock,
            persistence=wiring.persistence,
            transport=wiring.transport,
            public_url=account.webhook.public_url if account.webhook else None,
            meter=wiring.meter,
        )

    async def poll(self) -> list[VehicleState]:
        """Return every vehicle of the account's user, and note whether a re-link is needed."""
        return await gather_pages(self.pages())

    async def pages(self) -> AsyncIterator[list[VehicleState]]:
        """Yield the user's vehicles a page at a time; the link state is final after the last."""
        blocked: set[str] = set()
        vendors: set[str] = set()
        listed: set[str] = set()
        reachable = False
        try:
            async for page in self.client.user_vehicle_pages(self.user_id):
                blocked.update(v.vendor for v in page if v.needs_relink)
                vendors.update(v.vendor for v in page)
                reachable = reachable or any(v.is_reachable is not False for v in page)
                listed.update(v.id for v in page)
                if blocked:  # known now: this page's cars are published with it
                    self.link_problem = _invalid(blocked)
                yield await self._with_smart(page)
        except ProviderRejected as exc:
            if exc.status == 404:
                msg = f"Enode does not know user {self.user_id!r}"
                raise ReauthRequired(msg) from None
            raise
        self.smart.keep(listed)
        if blocked:
            self.link_problem = _invalid(blocked)
        elif vendors and not reachable:
            await self._check_user(vendors)
        else:
            self.link_problem = None

    async def _with_smart(self, page: list[Vehicle]) -> list[VehicleState]:
        """Map a page, with the smart charging status of the cars whose status is due."""
        now = self._clock.time()
        due = [v for v in page if self.smart.due(v, now)]
        statuses: dict[str, SmartCharging] = {}

        async def read(vehicle: Vehicle) -> None:
            try:
                status = await self.client.smart_status(vehicle.id)
            except (ProviderError, AuthError) as exc:
                # The rest of the car is still worth publishing: its status is read next time.
                _LOGGER.info("%s: smart charging status not read (%s)", vehicle.id, exc)
                return
            statuses[vehicle.id] = status.to_smart()
            self.smart.read(vehicle, now)

        async with asyncio.TaskGroup() as group:
            for vehicle in due:
                group.create_task(read(vehicle))
        states = [v.to_state(self.account) for v in page]
        return [
            state.replace(smart=statuses[state.ref.vehicle_id])
            if state.ref.vehicle_id in statuses
            else state
            for state in states
        ]

    async def _check_user(self, vendors: set[str]) -> None:
        now = self._clock.time()
        checked = self._user_checked_at
        if checked is not None and now - checked < USER_CHECK_INTERVAL_S:
            return
        self._user_checked_at = now
        user = await self.client.user(self.user_id)
        valid = {lv.vendor for lv in user.linked_vendors if lv.is_valid}
        lost = sorted(vendors - valid)
        self.link_problem = (
            f"Enode holds no valid credentials for {', '.join(lost)} (deauthorized or expired)"
            if lost
            else None
        )

    async def charging_sessions(self, since: datetime, until: datetime) -> list[CloudSession]:
        """Return the charging sessions of the user's cars that meet [since, until], by start."""
        try:
            found = await self.client.charging_sessions(self.user_id, since, until)
        except ProviderRejected as exc:
            if exc.status == 404:
                msg = f"Enode does not know user {self.user_id!r}"
                raise ReauthRequired(msg) from None
            raise
        sessions = [s for wire in found if (s := wire.to_session(self.account)) is not None]
        return sorted(sessions, key=lambda s: (s.started_at, s.ref.vehicle_id))

    async def send_command(
        self, ref: VehicleRef, command: Command, value: CommandValue = None
    ) -> CommandResult:
        """Send a command: charging, max current, smart charging, or a refresh hint."""
        now = datetime.fromtimestamp(self._clock.time(), UTC)
        shown = None if value is None else shown_value(value)
        vehicle_id = ref.vehicle_id
        if command is Command.REFRESH:
            await self.client.refresh_hint(vehicle_id)
            return CommandResult(command.value, CommandStatus.CONFIRMED, now)
        if command in POLICY_COMMANDS or command in (Command.CHARGE_NOW, Command.END_CHARGE_NOW):
            self.smart.stale(vehicle_id)  # its status moves with these
        try:
            if command in POLICY_COMMANDS:
                # Enode's own setting: it holds as soon as Enode answers.
                await self.client.set_smart_policy(vehicle_id, policy_change(command, value))
                return CommandResult(command.value, CommandStatus.CONFIRMED, now, value=shown)
            if command is Command.END_CHARGE_NOW:
                await self.client.end_override(vehicle_id)
                return CommandResult(command.value, CommandStatus.CONFIRMED, now)
            if command is Command.CHARGE_NOW:
                override = await self.client.start_override(vehicle_id)
                if override.vendor_action_id is None:
                    return CommandResult(command.value, CommandStatus.CONFIRMED, now)
                # The override starts charging through an action: followed like START.
                return CommandResult(
                    command.value, CommandStatus.PENDING, now, override.vendor_action_id
                )
            if command is Command.SET_MAX_CURRENT:
                if not isinstance(value, int | float):
                    msg = f"{command.value} needs a current in amperes, got {value!r}"
                    raise CommandRejected(msg)
                action = await self.client.set_max_current(vehicle_id, value)
                return _result(command.value, action, now, value=shown)
            kind = "START" if command is Command.START_CHARGING else "STOP"
            action = await self.client.charge(vehicle_id, kind)
        except (ProviderRejected, CommandRejected) as exc:
            reason = exc.detail if isinstance(exc, ProviderRejected) else str(exc)
            if command is Command.END_CHARGE_NOW and getattr(exc, "status", None) == 404:
                reason = "no charge now is active"
            status = CommandStatus.REJECTED
            return CommandResult(command.value, status, now, reason=reason, value=shown)
        try:
            await self.client.refresh_hint(vehicle_id)
        except (ProviderUnavailable, ProviderRejected, BadCloudResponse):
            _LOGGER.debug("refresh hint after %s on %s failed; polling will catch up", kind, ref)
        return _result(command.value, action, now)

    async def command_status(self, ref: VehicleRef, result: CommandResult) -> CommandResult:
        """Poll the action behind `result`."""
        if result.action_id is None or result.status.final:
            return result
        action = await self.client.action(result.action_id)
        now = datetime.fromtimestamp(self._clock.time(), UTC)
        return _result(result.command, action, now, value=result.value)


def _invalid(vendors: set[str]) -> str:
    return f"Enode reports invalid credentials for {', '.join(sorted(vendors))}"


def _result(command: str, action: Action, now: datetime, value: str | None = None) -> CommandResult:
    status, reason = action.outcome()
    return CommandResult(command, status, now, action_id=action.id, reason=reason, value=value)


__all__ = ["SPEC", "EnodeClient", "EnodeProvider"]
