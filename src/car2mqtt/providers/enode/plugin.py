"""Enode as a car2mqtt plug-in: what the registry lists (spec, account model, factory, link)."""

from __future__ import annotations

from car2mqtt.providers.enode import SPEC, EnodeProvider
from car2mqtt.providers.enode.cli import add_link_command
from car2mqtt.providers.enode.config import EnodeAccount
from car2mqtt.providers.enode.link import WEB_LINK
from car2mqtt.providers.plugin import provider_plugin

__all__ = ["PLUGIN"]

PLUGIN = provider_plugin(
    SPEC, EnodeAccount, EnodeProvider.from_account, link_command=add_link_command, web_link=WEB_LINK
)
