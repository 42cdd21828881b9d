"""Xee as a car2mqtt plug-in: what the registry lists (spec, account model, factory, link)."""

from __future__ import annotations

from car2mqtt.providers.plugin import provider_plugin
from car2mqtt.providers.xee import SPEC, XeeProvider
from car2mqtt.providers.xee.cli import add_link_command
from car2mqtt.providers.xee.config import XeeAccount
from car2mqtt.providers.xee.link import WEB_LINK

__all__ = ["PLUGIN"]

PLUGIN = provider_plugin(
    SPEC, XeeAccount, XeeProvider.from_account, link_command=add_link_command, web_link=WEB_LINK
)
