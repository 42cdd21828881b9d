"""Vehicle clouds behind the Provider protocol; the registry is the only place they are named."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from car2mqtt.auth.tokens import TokenPersistence
from car2mqtt.clock import Clock
from car2mqtt.config import Account, EnodeAccount, XeeAccount
from car2mqtt.providers.base import Provider
from car2mqtt.providers.enode import EnodeProvider
from car2mqtt.providers.xee import XeeProvider


def _enode(
    account: Any,
    clock: Clock,
    persistence: TokenPersistence | None,
    transport: httpx.AsyncBaseTransport | None,
) -> Provider:
    assert isinstance(account, EnodeAccount)
    return EnodeProvider.create(
        account=account.name,
        user_id=account.user_id,
        api_url=account.api_url,
        token_url=account.token_url,
        client_id=account.client_id,
        client_secret=account.client_secret.get_secret_value(),
        clock=clock,
        persistence=persistence,
        transport=transport,
    )


def _xee(
    account: Any,
    clock: Clock,
    persistence: TokenPersistence | None,
    transport: httpx.AsyncBaseTransport | None,
) -> Provider:
    assert isinstance(account, XeeAccount)
    return XeeProvider.create(
        account=account.name,
        api_url=account.api_url,
        token_url=account.token_url,
        client_id=account.client_id,
        client_secret=account.client_secret.get_secret_value(),
        username=account.username,
        password=account.password.get_secret_value() if account.password else None,
        scopes=account.scopes,
        clock=clock,
        persistence=persistence,
        transport=transport,
    )


Factory = Callable[[Any, Clock, TokenPersistence | None, httpx.AsyncBaseTransport | None], Provider]
FACTORIES: dict[str, Factory] = {"enode": _enode, "xee": _xee}


def create_provider(
    account: Account,
    *,
    clock: Clock,
    persistence: TokenPersistence | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Provider:
    """Build the provider for a configured account."""
    return FACTORIES[account.provider](account, clock, persistence, transport)
