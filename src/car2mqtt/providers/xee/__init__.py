"""Xee (API v4): OBD dongles in any car; authorization code or password grant, rotating tokens."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
from authlib.oauth2.rfc6749 import parameters
from pydantic import TypeAdapter, ValidationError

from car2mqtt.auth.oauth2 import RELINK_ERRORS, Token, TokenEndpoint, request_token
from car2mqtt.auth.tokens import TokenManager, TokenPersistence
from car2mqtt.clock import Clock
from car2mqtt.errors import (
    BadCloudResponse,
    ProviderRejected,
    ReauthRequired,
)
from car2mqtt.history.model import CloudTrip, Place
from car2mqtt.models import CommandResult, CommandStatus, VehicleRef, VehicleState
from car2mqtt.providers.base import Command, CommandValue, Grant, ProviderSpec, one_page
from car2mqtt.providers.http import (
    TokenAccount,
    api_client,
    parse,
    raise_for_transient,
    send,
    token_client,
)
from car2mqtt.providers.plugin import RequestHook, Wiring
from car2mqtt.providers.xee.config import XeeAccount
from car2mqtt.providers.xee.wire import (
    ErrorBody,
    LocationWire,
    Signal,
    Status,
    Trip,
    Vehicle,
    readable_locations,
    readable_signals,
    readable_trips,
    to_state,
)

_LOGGER = logging.getLogger(__name__)

SPEC = ProviderSpec(
    name="xee",
    title="Xee",
    grant=Grant.AUTHORIZATION_CODE,
    # The dongle reports while the car is on; parked cars change little (reference/xee.md §7).
    poll_interval_s=300.0,
    active_poll_interval_s=60.0,
    min_poll_interval_s=60.0,
    commands=frozenset(),
    refresh_after_command=False,
    vehicle_path=r"/vehicles/([^/]+)/",
)
# Users saw a used or dying refresh token answered with invalid_request (xee.md §6.1).
XEE_RELINK_ERRORS = RELINK_ERRORS | {"invalid_request"}
# Status is one call per car; a few at a time keeps a large account quick but polite.
STATUS_CONCURRENCY = 4
_VEHICLES = TypeAdapter(list[Any])
# The cloud refuses history windows over 31 days (xee.md §4.2): longer asks go in pieces.
TRIP_WINDOW = timedelta(days=30)
# A trip's odometer is the dongle's reading at ignition on or off, if it sent one that close.
ODOMETER_SLACK = timedelta(seconds=60)


class XeeClient:
    """A thin typed client: one method per endpoint, cloud errors translated to ours."""

    def __init__(self, http: httpx.AsyncClient, clock: Clock) -> None:
        self._http = http
        self._clock = clock
        self.calls = 0

    async def _get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        self.calls += 1
        response = await send(self._http, "Xee", "GET", path, params=params)
        if response.status_code < 400:
            return response
        error, text = _error(response)
        if response.status_code == 401:
            # Even a freshly renewed token is refused: the grant itself is gone.
            msg = f"Xee refuses this account's tokens ({text})"
            raise ReauthRequired(msg)
        raise_for_transient(response, "Xee", path, text, now=self._clock.time())
        if error == "account_suspended":
            msg = f"Xee suspended the account ({text}); sort it out with Xee, then re-link"
            raise ReauthRequired(msg)
        raise ProviderRejected(f"Xee refused GET {path}: {text}", response.status_code, text)

    async def vehicles(self) -> list[Vehicle]:
        """Return the user's vehicles; an unreadable entry is skipped, not fatal."""
        response = await self._get("/users/me/vehicles")
        try:
            items = _VEHICLES.validate_json(response.content)
        except ValidationError:
            msg = "Xee sent a vehicle list that is not a JSON array"
            raise BadCloudResponse(msg) from None
        vehicles = []
        for item in items:
            try:
                vehicles.append(Vehicle.model_validate(item))
            except ValidationError:
                _LOGGER.warning("skipping a Xee vehicle without a usable id")
        return vehicles

    async def status(self, vehicle_id: str) -> Status:
        """Return a vehicle's latest signals and position."""
        path = f"/vehicles/{quote(vehicle_id, safe='')}/status"
        return parse(await self._get(path), Status, f"Xee (vehicle {vehicle_id})")

    async def _array(self, path: str, params: dict[str, str] | None, what: str) -> list[Any]:
        response = await self._get(path, params)
        try:
            data = json.loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            data = None
        if not isinstance(data, list):
            msg = f"Xee sent {what} that is not a JSON array"
            raise BadCloudResponse(msg)
        return data

    async def trips(self, vehicle_id: str, since: datetime, until: datetime) -> list[Trip]:
        """Return a vehicle's trips that overlap [since, until] (31 days at most), oldest first."""
        path = f"/vehicles/{quote(vehicle_id, safe='')}/trips"
        params = {"from": query_date(since), "to": query_date(until, up=True)}
        return readable_trips(await self._array(path, params, "a trip list"))

    async def trip(self, trip_id: str) -> Trip:
        """Return one trip."""
        path = f"/trips/{quote(trip_id, safe='')}"
        return parse(await self._get(path), Trip, f"Xee (trip {trip_id})")

    async def trip_signals(self, trip_id: str, names: Sequence[str] = ()) -> list[Signal]:
        """Return the signals reported during a trip, oldest first (only `names` if given)."""
        path = f"/trips/{quote(trip_id, safe='')}/signals"
        params = {"signals": ",".join(names)} if names else None
        return readable_signals(await self._array(path, params, "a signal list"))

    async def trip_locations(self, trip_id: str) -> list[LocationWire]:
        """Return the GPS fixes reported during a trip, oldest first."""
        path = f"/trips/{quote(trip_id, safe='')}/locations"
        return readable_locations(await self._array(path, None, "a location list"))


def query_date(moment: datetime, *, up: bool = False) -> str:
    """Format a query date as the SDKs do (UTC, whole seconds, `Z`); `up` rounds up."""
    moment = moment.astimezone(UTC)
    whole = moment.replace(microsecond=0)
    if up and whole < moment:
        whole += timedelta(seconds=1)
    return whole.strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(response: httpx.Response) -> tuple[str | None, str]:
    """Read a v4 `{error, error_description}` or a v3 `[{type, message}]` body."""
    try:
        data = json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, f"HTTP {response.status_code}"
    if isinstance(data, list) and data and isinstance(data[0], dict):
        message = data[0].get("message")
        return None, str(message) if message else f"HTTP {response.status_code}"
    try:
        body = ErrorBody.model_validate(data)
    except ValidationError:
        return None, f"HTTP {response.status_code}"
    text = body.error_description or body.error or f"HTTP {response.status_code}"
    return body.error, text


class XeeProvider(TokenAccount):
    """One Xee account: the user who consented, and the cars on their dongles."""

    spec = SPEC

    def __init__(
        self,
        account: str,
        client: XeeClient,
        tokens: TokenManager,
        endpoint: TokenEndpoint,
        token_http: httpx.AsyncClient,
        clock: Clock,
        closers: Sequence[httpx.AsyncClient] = (),
    ) -> None:
        self.account = account
        self.client = client
        self.tokens = tokens
        self.endpoint = endpoint
        self._token_http = token_http
        self._clock = clock
        self._closers = closers
        self.link_problem: str | None = None
        # Each listed car's last good state, shown again while its status is unreadable; a car
        # the cloud no longer lists is forgotten.
        self._last: dict[str, VehicleState] = {}
        self.unreadable: frozenset[str] = frozenset()
        # Each listed car's current Xee vehicle id, by its stable (dongle) id.
        self._vehicle_ids: dict[str, str] = {}

    @classmethod
    def create(
        cls,
        *,
        account: str,
        api_url: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        clock: Clock,
        username: str | None = None,
        password: str | None = None,
        scopes: Sequence[str] = (),
        persistence: TokenPersistence | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 30.0,
        meter: RequestHook | None = None,
    ) -> XeeProvider:
        """Wire an account: a token client, a token owner and an authorised API client."""
        token_http = token_client(transport, timeout_s)
        endpoint = TokenEndpoint(
            token_url, client_id, client_secret, relink_errors=XEE_RELINK_ERRORS
        )
        scope = " ".join(scopes)

        async def fetch(old: Token | None) -> Token:
            if old is not None and old.refresh_token:
                try:
                    token = await request_token(
                        token_http,
                        endpoint,
                        clock,
                        "refresh_token",
                        refresh_token=old.refresh_token,
                    )
                except ReauthRequired:
                    if password is None:
                        raise
                    _LOGGER.info("account %s: refresh token refused; using the password", account)
                else:
                    # Some servers do not rotate: then the old refresh token stays good.
                    if token.refresh_token is None:
                        token = replace(token, refresh_token=old.refresh_token)
                    return token
            if username is not None and password is not None:
                extra = {"scope": scope} if scope else {}
                return await request_token(
                    token_http,
                    endpoint,
                    clock,
                    "password",
                    username=username,
                    password=password,
                    **extra,
                )
            msg = "not linked to Xee yet"
            raise ReauthRequired(msg)

        tokens = TokenManager(account, fetch, clock, persistence)
        api_http = api_client(api_url, tokens, transport, timeout_s, meter)
        closers = (token_http, api_http)
        return cls(
            account, XeeClient(api_http, clock), tokens, endpoint, token_http, clock, closers
        )

    @classmethod
    def from_account(cls, account: XeeAccount, wiring: Wiring) -> XeeProvider:
        """Build the provider of a configured Xee account (the plug-in's factory)."""
        return cls.create(
            account=account.name,
            api_url=account.api_url,
            token_url=account.token_url,
            client_id=account.client_id,
            client_secret=account.client_secret.get_secret_value(),
            username=account.username,
            password=account.password.get_secret_value() if account.password else None,
            scopes=account.scopes,
            clock=wiring.clock,
            persistence=wiring.persistence,
            transport=wiring.transport,
            meter=wiring.meter,
        )

    def authorization_url(
        self, authorize_url: str, redirect_uri: str, scopes: Sequence[str], state: str
    ) -> str:
        """Return the consent page's URL for this client (Authlib builds the query)."""
        return str(
            parameters.prepare_grant_uri(
                authorize_url,
                self.endpoint.client_id,
                "code",
                redirect_uri=redirect_uri,
                scope=" ".join(scopes),
                state=state,
            )
        )

    async def exchange_code(self, code: str, redirect_uri: str) -> Token:
        """Trade an authorization code for tokens and make them the account's, saved first."""
        token = await request_token(
            self._token_http,
            self.endpoint,
            self._clock,
            "authorization_code",
            code=code,
            redirect_uri=redirect_uri,
        )
        await self.tokens.adopt(token)
        return token

    def pages(self) -> AsyncIterator[Sequence[VehicleState]]:
        """Yield every car of the account as one page (Xee lists all cars in one call)."""
        return one_page(self.poll)

    async def poll(self) -> list[VehicleState]:
        """Return every car of the account: one list call, then one status call per car."""
        vehicles = await self._list()
        self.link_problem = None
        unreadable: set[str] = set()
        listed = {v.stable_id for v in vehicles}
        states = await self._statuses(vehicles, unreadable)
        gone = listed - states.keys() - unreadable
        if gone:
            # Re-paired between the list and its status (new vehicle id, same dongle): list
            # again so the car keeps its Home Assistant device instead of vanishing for a poll.
            again = [v for v in await self._list() if v.stable_id in gone]
            states.update(await self._statuses(again, unreadable))
            # Listed twice yet without a status: not gone (only the list says that), unread.
            unreadable.update(v.stable_id for v in again)
        self.unreadable = frozenset(unreadable - states.keys())
        # A car the list no longer has is gone: its last state must not come back with it.
        for stable_id in self._last.keys() - listed:
            del self._last[stable_id]
        return list(states.values())

    async def _list(self) -> list[Vehicle]:
        """List the account's vehicles, noting each car's current vehicle id."""
        vehicles = await self.client.vehicles()
        self._vehicle_ids = {v.stable_id: v.id for v in vehicles}
        return vehicles

    async def _vehicle_id(self, ref: VehicleRef, *, fresh: bool = False) -> str:
        """Return the Xee vehicle id of a car known by its stable id (listing if need be)."""
        if fresh or ref.vehicle_id not in self._vehicle_ids:
            await self._list()
        vehicle_id = self._vehicle_ids.get(ref.vehicle_id)
        if vehicle_id is None:
            msg = f"Xee lists no car {ref.vehicle_id} on account {self.account}"
            raise ProviderRejected(msg, 404, "not listed")
        return vehicle_id

    async def trips(self, ref: VehicleRef, since: datetime, until: datetime) -> list[CloudTrip]:
        """Return the car's trips that overlap [since, until], oldest first (`HasTrips`)."""
        since, until = since.astimezone(UTC), until.astimezone(UTC)
        if since > until:
            return []
        vehicle_id = await self._vehicle_id(ref)
        try:
            found = await self._trips_between(vehicle_id, since, until)
        except ProviderRejected as exc:
            if exc.status not in (403, 404):
                raise
            # Re-paired since we last listed: the same dongle answers under a new vehicle id.
            vehicle_id = await self._vehicle_id(ref, fresh=True)
            found = await self._trips_between(vehicle_id, since, until)
        trips = []
        for trip in found:
            started = _utc(trip.started_at)
            if started is None:
                _LOGGER.debug("skipping Xee trip %s: it has no start date", trip.id)
                continue
            ended = _utc(trip.ended_at)
            if started <= until and (ended or started) >= since:
                trips.append((trip, started, ended))
        odometers = await self._odometers([(t.id, s, e) for t, s, e in trips])
        out = [
            CloudTrip(
                ref=ref,
                trip_id=trip.id,
                started_at=started,
                ended_at=ended,
                distance_km=trip.distance_km,
                start=_place(trip.start_location),
                end=_place(trip.end_location),
                start_odometer_km=odometer[0],
                end_odometer_km=odometer[1],
            )
            for (trip, started, ended), odometer in zip(trips, odometers, strict=True)
        ]
        return sorted(out, key=lambda t: t.started_at)

    async def _trips_between(self, vehicle_id: str, since: datetime, until: datetime) -> list[Trip]:
        """Ask for the trips a piece at a time; a trip on a seam comes once."""
        seen: dict[str, Trip] = {}
        start = since
        while True:
            end = min(start + TRIP_WINDOW, until)
            for trip in await self.client.trips(vehicle_id, start, end):
                seen.setdefault(trip.id, trip)
            if end >= until:
                return list(seen.values())
            start = end

    async def _odometers(
        self, trips: Sequence[tuple[str, datetime, datetime | None]]
    ) -> list[tuple[float | None, float | None]]:
        """Read each trip's odometer at ignition on and off from its signals, when reported."""
        limit = asyncio.Semaphore(STATUS_CONCURRENCY)

        async def one(
            trip_id: str, started: datetime, ended: datetime | None
        ) -> tuple[float | None, float | None]:
            async with limit:
                try:
                    signals = await self.client.trip_signals(trip_id, ("Odometer",))
                except (ProviderRejected, BadCloudResponse) as exc:
                    # The odometers are a bonus: the trip stands without them.
                    _LOGGER.info("no odometers for Xee trip %s (%s)", trip_id, exc)
                    return None, None
            return _reading_at(signals, started), _reading_at(signals, ended)

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(*t)) for t in trips]
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        return [task.result() for task in tasks]

    async def _statuses(
        self, vehicles: Sequence[Vehicle], unreadable: set[str]
    ) -> dict[str, VehicleState]:
        """Read each car's status; cars whose answer was garbled go into `unreadable`."""
        limit = asyncio.Semaphore(STATUS_CONCURRENCY)

        async def one(vehicle: Vehicle) -> VehicleState | None:
            async with limit:
                try:
                    status = await self.client.status(vehicle.id)
                except ProviderRejected as exc:
                    if exc.status not in (403, 404):
                        raise
                    _LOGGER.info("Xee vehicle %s went away mid-poll (%s)", vehicle.id, exc.status)
                    return None
                except BadCloudResponse as exc:
                    # One car's garbled answer must not take its siblings down with it.
                    last = self._last.get(vehicle.stable_id)
                    _LOGGER.warning("%s; keeping its last state", exc)
                    if last is None:
                        # Nothing read yet in this process: the car is skipped for this poll,
                        # which must not read as "gone" (the bridge keeps what it knew).
                        unreadable.add(vehicle.stable_id)
                    return last
            state = to_state(self.account, vehicle, status)
            self._last[vehicle.stable_id] = state
            return state

        # A car's own trouble (gone mid-poll, a garbled answer) is settled inside one(); what is
        # left fails the whole poll, as the list call failing would: the first such error is
        # raised as itself (the bridge backs off on it) and the other cars' calls are cancelled.
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(v)) for v in vehicles]
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        states: dict[str, VehicleState] = {}
        for state in (task.result() for task in tasks):
            if state is None:
                continue
            # Two vehicle ids on one dongle (the cloud still lists the old pairing): keep the
            # one heard from last.
            seen = states.get(state.ref.vehicle_id)
            if seen is None or (state.last_seen or _EPOCH) >= (seen.last_seen or _EPOCH):
                states[state.ref.vehicle_id] = state
        return states

    async def send_command(
        self, ref: VehicleRef, command: Command, value: CommandValue = None
    ) -> CommandResult:
        """Xee is read-only: every command is refused."""
        now = datetime.fromtimestamp(self._clock.time(), UTC)
        reason = f"Xee cannot {command.value.replace('_', ' ')}"
        return CommandResult(command.value, CommandStatus.REJECTED, now, reason=reason)

    async def command_status(self, ref: VehicleRef, result: CommandResult) -> CommandResult:
        """Commands settle at once: return `result`."""
        return result


_EPOCH = datetime.fromtimestamp(0, UTC)


def _utc(moment: datetime | None) -> datetime | None:
    """Return `moment` in UTC; a date without a zone is taken as UTC, as the SDKs send them."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _place(location: LocationWire | None) -> Place | None:
    if location is None or location.latitude is None or location.longitude is None:
        return None
    return Place(location.latitude, location.longitude)


def _reading_at(signals: Sequence[Signal], moment: datetime | None) -> float | None:
    """Return the value reported nearest `moment`, if one came within `ODOMETER_SLACK`."""
    if moment is None:
        return None
    near = [
        (abs(date - moment), s.value)
        for s in signals
        if s.value is not None and (date := _utc(s.date)) is not None
    ]
    best = min(near, default=None, key=lambda pair: pair[0])
    return best[1] if best is not None and best[0] <= ODOMETER_SLACK else None


__all__ = ["SPEC", "XeeClient", "XeeProvider"]
