"""The add-on's entrypoint against a fake Supervisor over HTTP: options in, a configuration out."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from car2mqtt.addon import AddonError, one_line, prepare
from car2mqtt.errors import ConfigError
from car2mqtt.providers.registry import load_config
from tests.install.supervisor import TOKEN, FakeSupervisor, running_supervisor
from tests.mqtt_support import free_port

ENODE = {
    "name": "home",
    "provider": "enode",
    "client_id": "client-1",
    "client_secret": "s3cret-enode",
    "environment": "sandbox",
    "user_id": "user-1",
}
XEE = {"name": "dongle", "provider": "xee", "client_id": "x", "client_secret": "s3cret-xee"}


@pytest.fixture
def supervisor() -> Iterator[FakeSupervisor]:
    """A fake Supervisor on loopback that offers a broker with a login."""
    with running_supervisor() as fake:
        fake.offer(host="172.30.32.1", port=1883, ssl=False, username="addons", password="pw-1")
        yield fake


def options(tmp_path: Path, **values: Any) -> Path:
    """Write /data/options.json as the Supervisor would."""
    path = tmp_path / "options.json"
    path.write_text(json.dumps({"accounts": [ENODE], "log_level": "info", **values}))
    return path


def prepared(tmp_path: Path, supervisor: FakeSupervisor, **kwargs: Any) -> Path:
    """Run the entrypoint's preparation with the test's files."""
    return prepare(
        options_file=kwargs.pop("options_file", None) or options(tmp_path),
        config_file=tmp_path / "car2mqtt.yaml",
        extra_file=kwargs.pop("extra_file", tmp_path / "no-extra.yaml"),
        supervisor_url=supervisor.url,
        env=kwargs.pop("env", {"SUPERVISOR_TOKEN": TOKEN}),
    )


def test_the_supervisors_broker_and_the_options_make_the_configuration(
    tmp_path: Path, supervisor: FakeSupervisor
) -> None:
    xee = {**XEE, "redirect_uri": "", "user_id": None}  # optional fields left empty
    path = prepared(
        tmp_path,
        supervisor,
        options_file=options(tmp_path, accounts=[ENODE, xee], poll_interval_s=120),
    )
    bearer = f"Bearer {TOKEN}"
    assert supervisor.asked == [("/services/mqtt", bearer), ("/core/info", bearer)]
    assert path.stat().st_mode & 0o777 == 0o600  # it holds the broker's password
    config = load_config(path, env={})
    assert (config.mqtt.host, config.mqtt.port) == ("172.30.32.1", 1883)
    assert config.mqtt.username == "addons"
    assert config.mqtt.password is not None
    assert config.web.host == "0.0.0.0"  # noqa: S104
    assert config.web.port == 8099
    assert config.web.trusted_proxies == ("172.30.32.2",)
    assert config.web.password is None
    assert [a.name for a in config.accounts] == ["home", "dongle"]
    assert all(a.poll_interval_s == 120 for a in config.accounts)
    assert str(config.store) == "/data/car2mqtt.db"
    # The Supervisor said which Home Assistant runs: its newer entity platforms are announced.
    assert config.mqtt.ha_release == (2026, 11)


@pytest.mark.parametrize(
    "core",
    [None, {"result": "ok", "data": {"version": "landingpage"}}, {"result": "ok", "data": []}],
)
def test_without_a_home_assistant_version_the_add_on_still_starts(
    tmp_path: Path, supervisor: FakeSupervisor, core: dict[str, Any] | None
) -> None:
    supervisor.core = core
    config = load_config(prepared(tmp_path, supervisor), env={})
    assert config.mqtt.ha_version is None  # the platforms every Home Assistant has


def test_a_users_own_ha_version_wins(tmp_path: Path, supervisor: FakeSupervisor) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text('mqtt:\n  ha_version: "2025.4"\n')
    config = load_config(prepared(tmp_path, supervisor, extra_file=extra), env={})
    assert config.mqtt.ha_release == (2025, 4)


def test_a_tls_broker_and_the_ingress_port_from_the_environment(
    tmp_path: Path, supervisor: FakeSupervisor
) -> None:
    supervisor.offer(host="core-mosquitto", port=8883, ssl=True, username="u", password="p")
    port = free_port()
    path = prepared(
        tmp_path, supervisor, env={"SUPERVISOR_TOKEN": TOKEN, "INGRESS_PORT": str(port)}
    )
    document = yaml.safe_load(path.read_text())
    assert document["mqtt"]["url"] == "mqtts://core-mosquitto:8883"
    assert document["web"]["port"] == port


def test_a_users_extra_file_adds_settings_but_not_the_add_ons_own(
    tmp_path: Path, supervisor: FakeSupervisor
) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        yaml.safe_dump(
            {
                "mqtt": {"url": "mqtt://elsewhere:1883", "base_topic": "cars"},
                "web": {"port": 1234, "trusted_proxies": []},
                "store": "/elsewhere.db",
                "accounts": [{**ENODE, "name": "second"}],
            }
        )
    )
    config = load_config(prepared(tmp_path, supervisor, extra_file=extra), env={})
    assert config.mqtt.base_topic == "cars"
    assert config.mqtt.host == "172.30.32.1"
    assert config.mqtt.username == "addons"
    assert config.web.port == 8099
    assert config.web.trusted_proxies == ("172.30.32.2",)
    assert str(config.store) == "/data/car2mqtt.db"
    assert [a.name for a in config.accounts] == ["second", "home"]


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (
            400,
            {"result": "error", "message": "Service not enabled"},
            "install and start the Mosquitto",
        ),
        (200, {"result": "ok", "data": {}}, "install and start the Mosquitto"),
        (
            403,
            {"result": "error", "message": "No access to mqtt service!"},
            "refused the MQTT service: HTTP 403, No access",
        ),
        (500, {"oops": True}, "refused the MQTT service: HTTP 500"),
        (200, {"result": "ok", "data": {"host": "", "port": 1883}}, "makes no sense: host"),
    ],
)
def test_a_supervisor_without_a_usable_broker_gets_one_clear_line(
    tmp_path: Path, supervisor: FakeSupervisor, status: int, body: dict[str, Any], says: str
) -> None:
    supervisor.status, supervisor.body = status, body
    with pytest.raises(AddonError, match=says):
        prepared(tmp_path, supervisor)
    assert not (tmp_path / "car2mqtt.yaml").exists()


def test_no_token_and_no_supervisor_are_said_plainly(
    tmp_path: Path, supervisor: FakeSupervisor
) -> None:
    with pytest.raises(AddonError, match="SUPERVISOR_TOKEN is not set"):
        prepared(tmp_path, supervisor, env={})
    supervisor.url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    with pytest.raises(AddonError, match="the Supervisor did not answer"):
        prepared(tmp_path, supervisor)


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ("{not json", "cannot read the add-on options"),
        (json.dumps({"log_level": "loud"}), "add-on option log_level: Input should be"),
        (json.dumps({"accounts": "home"}), "add-on option accounts: Input should be a valid list"),
        (json.dumps([1, 2]), "add-on option options: Input should be"),
    ],
)
def test_bad_options_get_one_clear_line(
    tmp_path: Path, supervisor: FakeSupervisor, document: str, says: str
) -> None:
    path = tmp_path / "options.json"
    path.write_text(document)
    with pytest.raises(AddonError, match=says):
        prepared(tmp_path, supervisor, options_file=path)


def test_an_account_that_does_not_fit_its_provider_is_named(
    tmp_path: Path, supervisor: FakeSupervisor
) -> None:
    broken = {k: v for k, v in ENODE.items() if k != "user_id"}
    path = prepared(tmp_path, supervisor, options_file=options(tmp_path, accounts=[broken]))
    with pytest.raises(ConfigError, match=r"accounts\[home\]\.user_id") as caught:
        load_config(path, env={})
    assert "s3cret" not in str(caught.value)


def test_no_account_at_all_says_where_to_add_one(
    tmp_path: Path, supervisor: FakeSupervisor
) -> None:
    # The add-on's default options: what a first start without configuring anything gets.
    with pytest.raises(AddonError, match="no accounts yet: add one under accounts"):
        prepared(tmp_path, supervisor, options_file=options(tmp_path, accounts=[]))


def test_several_problems_become_one_log_line(tmp_path: Path, supervisor: FakeSupervisor) -> None:
    broken = [
        {k: v for k, v in ENODE.items() if k != "user_id"},
        {**XEE, "client_id": ""},
    ]
    path = prepared(tmp_path, supervisor, options_file=options(tmp_path, accounts=broken))
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    line = one_line(str(caught.value))
    assert "\n" not in line
    assert line.startswith("invalid configuration: accounts[home].user_id")
    assert "; accounts[dongle].client_id" in line
    assert one_line("just one line") == "just one line"
