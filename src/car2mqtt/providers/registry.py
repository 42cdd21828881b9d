"""The provider registry: the one place outside their folders where the clouds are named.

`PLUGINS` maps each `provider:` name to its `ProviderPlugin`, in the order errors list them.
Everything generic asks it instead of naming a cloud: the configuration's `Account` union
(`load_config` here passes the registered account models to `car2mqtt.config.load_config`),
provider construction (`create_provider`), and the `car2mqtt link <name>` commands. A third
cloud is one folder under `providers/` with a `plugin.py`, plus one line in `_BUILT_IN`; a
plug-in from elsewhere (a test's) is added at run time with `register` and taken away with
`unregister` (or both, around a block, with `registered`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import httpx

from car2mqtt import config as _config
from car2mqtt.auth.tokens import TokenPersistence
from car2mqtt.clock import Clock
from car2mqtt.config import AccountBase, Config
from car2mqtt.errors import ConfigError
from car2mqtt.providers.base import Provider
from car2mqtt.providers.enode.plugin import PLUGIN as ENODE
from car2mqtt.providers.plugin import ProviderPlugin, RequestHook, Wiring
from car2mqtt.providers.xee.plugin import PLUGIN as XEE

__all__ = [
    "PLUGINS",
    "account_models",
    "create_provider",
    "linkable",
    "load_config",
    "plugin_of",
    "register",
    "registered",
    "unregister",
]

# The clouds car2mqtt ships with, in the order they are listed to the user.
_BUILT_IN: tuple[ProviderPlugin, ...] = (ENODE, XEE)

_PLUGINS: dict[str, ProviderPlugin] = {}
PLUGINS: Mapping[str, ProviderPlugin] = MappingProxyType(_PLUGINS)


def register(plugin: ProviderPlugin) -> ProviderPlugin:
    """Make `plugin` known to the configuration, the runtime and the command line."""
    if plugin.name in _PLUGINS:
        msg = f"a provider plug-in named {plugin.name!r} is registered already"
        raise ValueError(msg)
    _PLUGINS[plugin.name] = plugin
    return plugin


def unregister(name: str) -> None:
    """Forget the plug-in called `name` (a test's, when it is done)."""
    del _PLUGINS[name]


@contextlib.contextmanager
def registered(plugin: ProviderPlugin) -> Iterator[ProviderPlugin]:
    """Register `plugin` for the duration of the block."""
    register(plugin)
    try:
        yield plugin
    finally:
        unregister(plugin.name)


for _plugin in _BUILT_IN:
    register(_plugin)


def account_models() -> tuple[type[AccountBase], ...]:
    """Return the account model of every registered plug-in, in registration order."""
    return tuple(plugin.account_model for plugin in _PLUGINS.values())


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load the configuration with every registered provider (`car2mqtt.config.load_config`)."""
    return _config.load_config(path, env, accounts=account_models())


def plugin_of(account: AccountBase) -> ProviderPlugin:
    """Return the plug-in a configured account belongs to."""
    try:
        return _PLUGINS[account.provider]
    except KeyError:
        msg = f"account {account.name!r}: no provider plug-in {account.provider!r} is registered"
        raise ConfigError(msg) from None


def create_provider(
    account: AccountBase,
    *,
    clock: Clock,
    persistence: TokenPersistence | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    meter: RequestHook | None = None,
) -> Provider:
    """Build the provider for a configured account (`meter` sees its API requests)."""
    return plugin_of(account).create(account, Wiring(clock, persistence, transport, meter))


def linkable(order: Sequence[str] = ()) -> list[ProviderPlugin]:
    """Return the plug-ins with a `car2mqtt link` command, those named in `order` first."""
    ranked = [*order, *_PLUGINS]
    seen = dict.fromkeys(name for name in ranked if name in _PLUGINS)
    return [_PLUGINS[name] for name in seen if _PLUGINS[name].link_command is not None]
