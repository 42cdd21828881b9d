"""A provider defined here, in the test suite, registered and bridged with no core change.

Its own account model and factory; configured from YAML; polled by the bridge through
`runtime.run_config`; published to a real mosquitto; and named by the configuration's errors.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field, SecretStr

from car2mqtt.clock import SystemClock
from car2mqtt.config import AccountBase, ConfigPath, secret_text
from car2mqtt.errors import ConfigError
from car2mqtt.models import CommandResult, VehicleInfo, VehicleRef, VehicleState
from car2mqtt.providers.base import Command, CommandValue, Grant, ProviderSpec
from car2mqtt.providers.plugin import ProviderPlugin, Wiring, provider_plugin
from car2mqtt.providers.registry import PLUGINS, create_provider, load_config, registered
from car2mqtt.runtime import run_config, secrets_of
from tests.mqtt_support import Mosquitto, probe

TOKEN = "acme-t0ken-value"


class AcmeAccount(AccountBase):
    """An account at the Acme cloud: one API token."""

    provider: Literal["acme"]
    token: SecretStr = Field(min_length=1)
    token_file: ConfigPath | None = None
    fleet: str = "road"

    def summary(self) -> str:
        """One line, the token as ***."""
        return (
            f"account {self.name}: acme fleet {self.fleet}, token {secret_text(self.token, None)}"
        )


SPEC = ProviderSpec(
    name="acme",
    title="Acme",
    grant=Grant.CLIENT_CREDENTIALS,
    poll_interval_s=60.0,
    active_poll_interval_s=60.0,
    min_poll_interval_s=60.0,
    commands=frozenset(),
)


class AcmeProvider:
    """One car, always at 42 %."""

    spec = SPEC

    def __init__(self, account: AcmeAccount) -> None:
        self.account = account.name
        self.fleet = account.fleet
        self.link_problem: str | None = None
        self.unreadable: frozenset[str] = frozenset()

    def _cars(self) -> list[VehicleState]:
        ref = VehicleRef("acme", self.account, f"{self.fleet}-1")
        info = VehicleInfo(ref, vendor="ACME", display_name="Roadrunner")
        return [VehicleState(info, battery_pct=42.0, last_seen=datetime.now(UTC))]

    async def poll(self) -> Sequence[VehicleState]:
        return self._cars()

    async def pages(self) -> AsyncIterator[Sequence[VehicleState]]:
        yield self._cars()

    async def send_command(
        self, ref: VehicleRef, command: Command, value: CommandValue = None
    ) -> CommandResult:
        raise NotImplementedError

    async def command_status(self, ref: VehicleRef, result: CommandResult) -> CommandResult:
        return result

    async def reload_credentials(self) -> bool:
        return False

    async def aclose(self) -> None:
        return None


def build(account: AcmeAccount, wiring: Wiring) -> AcmeProvider:
    return AcmeProvider(account)


ACME = provider_plugin(SPEC, AcmeAccount, build)


@pytest.fixture
def acme() -> Iterator[ProviderPlugin]:
    with registered(ACME) as plugin:
        yield plugin
    assert "acme" not in PLUGINS


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "car2mqtt.yaml"
    path.write_text(text)
    return path


def test_its_accounts_load_from_yaml_with_a_secret_file(
    acme: ProviderPlugin, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    text = "accounts:\n  - name: yard\n    provider: acme\n    token_file: token\n    fleet: f9\n"
    config = load_config(write(tmp_path, text), {"CAR2MQTT__ACCOUNTS__YARD__FLEET": "f7"})
    (account,) = config.accounts
    assert isinstance(account, AcmeAccount)
    assert account.fleet == "f7"
    assert account.token.get_secret_value() == TOKEN
    assert TOKEN in secrets_of(config)  # the log redactor knows it
    provider = create_provider(account, clock=SystemClock())
    assert isinstance(provider, AcmeProvider)
    assert provider.fleet == "f7"


def test_the_errors_name_it_and_hide_its_secret(acme: ProviderPlugin, tmp_path: Path) -> None:
    text = (
        "accounts:\n  - name: a\n    provider: nope\n  - name: b\n    provider: acme\n"
        "    flet: x\n    token: 12345\n  - name: c\n    provider: acme\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), {})
    lines = str(caught.value).splitlines()[1:]
    assert "  accounts[a].provider: got 'nope'; expected one of: enode, xee, acme" in lines
    assert (
        "  accounts[b].flet: unknown key (did you mean fleet?); expected one of: name, "
        "poll_interval_s, privacy, budget, provider, token, token_file, fleet"
    ) in lines
    assert "  accounts[b].token: expected a string (quote it in YAML)" in lines
    assert "  accounts[c].token: required: set token or token_file" in lines


def test_without_it_the_provider_is_unknown(tmp_path: Path) -> None:
    text = "accounts:\n  - name: yard\n    provider: acme\n    token: t\n"
    with pytest.raises(ConfigError, match=r"expected one of: enode, xee$"):
        load_config(write(tmp_path, text), {})


async def test_the_bridge_polls_and_publishes_it(
    acme: ProviderPlugin, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    text = (
        f"mqtt:\n  url: {mosquitto.url}\n  client_id: car2mqtt-acme\nstore: car2mqtt.db\n"
        f"accounts:\n  - name: yard\n    provider: acme\n    token: {TOKEN}\n"
    )
    config = load_config(write(tmp_path, text), {})
    async with probe(mosquitto.port, "car2mqtt/#") as seen:
        task = asyncio.create_task(run_config(config))
        try:
            state = await seen.wait_json(
                "car2mqtt/acme/road-1/state", lambda s: s.get("battery") == 42
            )
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert state["battery"] == 42
    bridge = json.loads(seen.last("car2mqtt/bridge/state") or b"{}")
    assert bridge["accounts"]["yard"]["provider"] == "acme"
