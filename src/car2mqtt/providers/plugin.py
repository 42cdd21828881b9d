"""What a provider plug-in is: the one object a provider's folder hands to the registry.

A plug-in bundles a cloud's `ProviderSpec`, the account model its `provider:` key selects in the
configuration, the factory that turns such an account into a `Provider`, and, if the cloud
needs a browser to grant access, the function that adds its `car2mqtt link <name>` command and
the `WebLink` the web UI links it with.
Build one with `provider_plugin`, which checks that the pieces agree and types the factory by
the plug-in's own account model; `car2mqtt.providers.registry.register` makes it known.

This module names no provider, and imports neither the registry nor any provider's folder.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import httpx

from car2mqtt.auth.tokens import TokenPersistence
from car2mqtt.clock import Clock
from car2mqtt.config import AccountBase
from car2mqtt.models import VehicleState
from car2mqtt.providers.base import Provider, ProviderSpec

if TYPE_CHECKING:
    import typer

__all__ = [
    "LinkCommand",
    "LinkField",
    "LinkFlow",
    "LinkRunner",
    "LinkStart",
    "ProviderPlugin",
    "RequestHook",
    "WebLink",
    "Wiring",
    "provider_plugin",
]

A = TypeVar("A", bound=AccountBase)
RequestHook = Callable[[httpx.Request], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Wiring:
    """What a provider is built with besides its account: the I/O seams, injected."""

    clock: Clock
    # Where tokens are kept across runs (the store); None keeps them in memory only.
    persistence: TokenPersistence | None = None
    # The HTTP transport (tests put a mock or the simulator here); None is the network.
    transport: httpx.AsyncBaseTransport | None = None
    # Called with every request of the account's API client (not its token requests): the
    # bridge counts API calls there, and refuses one over the budget by raising.
    meter: RequestHook | None = None


# A link flow: given the account and the wiring, build the provider, let the user grant
# access, and return the cars the account now has.
LinkFlow = Callable[[A, Wiring], Awaitable[Sequence[VehicleState]]]


class LinkRunner(Protocol):
    """What the command line lends a plug-in's `link` command: everything but the flow."""

    def link(
        self,
        config: Path | None,
        account: str,
        model: type[A],
        flow: Callable[[A, Wiring], Awaitable[Sequence[VehicleState]]],
        *,
        title: str,
        done: str | None = None,
    ) -> None:
        """Load `config`, find `account` (refused unless it is a `model`), run `flow`.

        Then the link state and the cars are saved for `car2mqtt status`, `done` (rich
        markup) is printed if given, and the cars are shown in a table called `title`. Errors
        become one line and exit code 2, as in every command.
        """
        ...


# Adds `car2mqtt link <name>` to the `link` command group it is given.
LinkCommand = Callable[["typer.Typer", LinkRunner], None]


@dataclass(frozen=True, slots=True)
class LinkField:
    """One optional text field of a cloud's link form in the web UI."""

    name: str
    label: str
    hint: str = ""


@dataclass(frozen=True, slots=True)
class LinkStart:
    """Where the web UI sends the browser to grant access, and how it comes back."""

    url: str  # the cloud's page that grants access
    redirect_uri: str  # where the cloud sends the browser afterwards (finish needs it)
    comes_back: bool  # whether that is the UI's own callback; else the user pastes it


@dataclass(frozen=True, slots=True)
class WebLink:
    """How the web UI links an account of a cloud: the browser leaves, and comes back.

    The UI owns the single-use `state` and checks it before `finish` sees a redirect. Both
    functions get the running bridge's provider of the account (its one token owner) and the
    account's configuration; a `LinkFailed` (or any car2mqtt error) is shown to the user.
    """

    # (provider, account, the UI's callback URL, state, the form's fields) -> where to go
    start: Callable[[Provider, AccountBase, str, str, Mapping[str, str]], Awaitable[LinkStart]]
    # (provider, account, the redirect's query, the redirect URI used): keep what was granted
    finish: Callable[[Provider, AccountBase, Mapping[str, str], str], Awaitable[None]]
    fields: tuple[LinkField, ...] = ()
    # Whether the user may paste the address the cloud sent the browser to (or the code).
    paste: bool = False
    explain: str = ""  # one sentence above the button, on the link page


@dataclass(frozen=True, slots=True)
class ProviderPlugin:
    """One vehicle cloud, as the registry, the configuration and the command line see it."""

    spec: ProviderSpec
    account_model: type[AccountBase]
    # Build the provider of one configured account (of `account_model`, or TypeError).
    create: Callable[[AccountBase, Wiring], Provider]
    link_command: LinkCommand | None = None
    web_link: WebLink | None = None

    @property
    def name(self) -> str:
        """The `provider:` value in the configuration, and the cloud's part of topics."""
        return self.spec.name

    @property
    def title(self) -> str:
        """The cloud's name in sentences, e.g. "an Acme account"."""
        return self.spec.title


def provider_plugin(
    spec: ProviderSpec,
    account_model: type[A],
    factory: Callable[[A, Wiring], Provider],
    *,
    link_command: LinkCommand | None = None,
    web_link: WebLink | None = None,
) -> ProviderPlugin:
    """Return the plug-in of a cloud whose accounts are `account_model`s, built by `factory`."""
    tag = account_model.provider_name()
    if tag != spec.name:
        msg = f"{account_model.__name__} is for provider {tag!r}, its spec for {spec.name!r}"
        raise ValueError(msg)

    def create(account: AccountBase, wiring: Wiring) -> Provider:
        if not isinstance(account, account_model):
            got = type(account).__name__
            msg = f"the {spec.name} plug-in builds from a {account_model.__name__}, not a {got}"
            raise TypeError(msg)
        return factory(account, wiring)

    return ProviderPlugin(spec, account_model, create, link_command, web_link)
