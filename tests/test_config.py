"""The config loader, against real files in tmp_path: every mistake is one clear ConfigError."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from car2mqtt.config import Config, config_path, describe
from car2mqtt.errors import ConfigError
from car2mqtt.providers.enode.config import ENODE_ENVIRONMENTS, EnodeAccount
from car2mqtt.providers.registry import load_config
from car2mqtt.providers.xee.config import XeeAccount

SECRET = "s3cr3t-client-value"
PASSWORD = "hunter2-mqtt-pass"

MINIMAL = f"""\
accounts:
  - name: home
    provider: enode
    environment: sandbox
    client_id: my-client
    client_secret: {SECRET}
    user_id: user-1
"""

SIMULATOR = f"""\
accounts:
  - name: sim
    provider: enode
    api_url: http://127.0.0.1:8765/enode/
    token_url: http://127.0.0.1:8765/enode/oauth2/token
    client_id: sim-client
    client_secret: {SECRET}
    user_id: demo
"""


def write(tmp_path: Path, text: str, name: str = "car2mqtt.yaml") -> Path:
    """A config file with `text` in it."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path, env: dict[str, str] | None = None) -> str:
    """The message of the ConfigError that loading `path` raises."""
    with pytest.raises(ConfigError) as caught:
        load_config(path, env or {})
    message = str(caught.value)
    assert "pydantic" not in message.lower()
    assert "Input should" not in message  # pydantic's own wording never leaks
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None  # no ValidationError (with its inputs) chained
    return message


def problems(message: str) -> list[str]:
    """The problem lines under the header of a validation ConfigError."""
    header, *lines = message.splitlines()
    assert "invalid configuration" in header
    assert header.endswith(f"{len(lines)} problem{'s' if len(lines) != 1 else ''}:")
    return [line.strip() for line in lines]


# --- valid files ----------------------------------------------------------------------------------


def test_minimal_file_takes_every_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), {})
    mqtt = config.mqtt
    assert mqtt.url == "mqtt://127.0.0.1:1883"
    assert (mqtt.host, mqtt.port, mqtt.tls) == ("127.0.0.1", 1883, False)
    assert mqtt.username is None
    assert mqtt.password is None
    assert mqtt.ca_file is None
    assert mqtt.tls_insecure is False
    assert mqtt.client_id == "car2mqtt"
    assert mqtt.protocol == "auto"
    assert mqtt.keepalive == 60
    assert mqtt.discovery_prefix == "homeassistant"
    assert mqtt.base_topic == "car2mqtt"
    assert mqtt.discovery_mode == "device"
    assert mqtt.ha_status_topic == "homeassistant/status"
    assert config.store == tmp_path / "car2mqtt.db"  # next to the config file
    assert (config.log.level, config.log.format) == ("info", "text")
    assert config.heartbeat_s == 300
    assert config.expose_vin is False
    (account,) = config.accounts
    assert isinstance(account, EnodeAccount)
    assert account.name == "home"
    assert account.environment == "sandbox"
    assert account.api_url == "https://enode-api.sandbox.enode.io"
    assert account.token_url == "https://oauth.sandbox.enode.io/oauth2/token"
    assert account.client_id == "my-client"
    assert account.client_secret.get_secret_value() == SECRET
    assert account.user_id == "user-1"
    assert account.poll_interval_s == 300
    assert config.account("home") is account


def test_every_key_set(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not really a CA\n")
    (tmp_path / "mqtt-password").write_text(PASSWORD + "\n")
    path = write(
        tmp_path,
        f"""\
mqtt:
  url: mqtts://broker.example
  username: car2mqtt
  password_file: mqtt-password
  ca_file: ca.pem
  tls_insecure: false
  client_id: bridge-1
  protocol: 3.1.1
  keepalive: 30
  discovery_prefix: ha
  base_topic: cars/bridge
  discovery_mode: entity
  ha_status_topic: ha/online
store: /var/lib/car2mqtt/state.db
log: {{level: DEBUG, format: json}}
heartbeat_s: 60
expose_vin: true
accounts:
  - name: work-car
    provider: enode
    environment: production
    client_id: prod-client
    client_secret: {SECRET}
    user_id: user-2
    poll_interval_s: 600
""",
    )
    config = load_config(path, {})
    mqtt = config.mqtt
    assert (mqtt.host, mqtt.port, mqtt.tls) == ("broker.example", 8883, True)
    assert mqtt.username == "car2mqtt"
    assert mqtt.password is not None
    assert mqtt.password.get_secret_value() == PASSWORD
    assert mqtt.password_file == tmp_path / "mqtt-password"
    assert mqtt.ca_file == tmp_path / "ca.pem"
    assert mqtt.client_id == "bridge-1"
    assert mqtt.protocol == "3.1.1"
    assert mqtt.keepalive == 30
    assert mqtt.base_topic == "cars/bridge"
    assert mqtt.discovery_mode == "entity"
    assert mqtt.ha_status_topic == "ha/online"
    assert config.store == Path("/var/lib/car2mqtt/state.db")
    assert (config.log.level, config.log.format) == ("debug", "json")
    assert config.heartbeat_s == 60
    assert config.expose_vin is True
    account = config.account("work-car")
    assert isinstance(account, EnodeAccount)
    assert (account.api_url, account.token_url) == ENODE_ENVIRONMENTS["production"]
    assert account.poll_interval_s == 600


def test_simulator_form_takes_explicit_urls(tmp_path: Path) -> None:
    (account,) = load_config(write(tmp_path, SIMULATOR), {}).accounts
    assert isinstance(account, EnodeAccount)
    assert account.environment is None
    assert account.api_url == "http://127.0.0.1:8765/enode"  # trailing slash dropped
    assert account.token_url == "http://127.0.0.1:8765/enode/oauth2/token"


def test_empty_sections_and_yaml_numbers_are_read_kindly(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "mqtt:\nlog:\n" + MINIMAL), {})
    assert config.mqtt.url == "mqtt://127.0.0.1:1883"
    path = write(tmp_path, "mqtt: {protocol: 5, url: 'mqtt://[::1]:1884'}\n" + MINIMAL)
    config = load_config(path, {})
    assert config.mqtt.protocol == "5"
    assert (config.mqtt.host, config.mqtt.port) == ("::1", 1884)


def test_models_are_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), {})
    with pytest.raises(pydantic.ValidationError):
        config.heartbeat_s = 5  # type: ignore[misc]


# --- file-level errors: one line each ----------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    message = str(caught.value)
    assert message == f"config file not found: {path} (pass --config or set CAR2MQTT_CONFIG)"


def test_default_path_comes_from_car2mqtt_config(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL, "elsewhere.yaml")
    assert config_path(None, {"CAR2MQTT_CONFIG": str(path)}) == path
    assert config_path(None, {}) == Path("car2mqtt.yaml")
    assert config_path(tmp_path / "x.yaml", {"CAR2MQTT_CONFIG": str(path)}) == tmp_path / "x.yaml"
    account = load_config(None, {"CAR2MQTT_CONFIG": str(path)}).account("home")
    assert isinstance(account, EnodeAccount)
    assert account.user_id == "user-1"


def test_unreadable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, {})
    assert str(caught.value) == f"cannot read config file {tmp_path}: it is a directory"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"mqtt: \xff\xfe\n")
    with pytest.raises(ConfigError) as caught:
        load_config(binary, {})
    assert str(caught.value) == f"{binary}: not UTF-8 text (bad byte at offset 6)"


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("mqtt:\n  url: [mqtt://x\n", "line 3, column 1", "expected ',' or ']'"),
        ("mqtt:\n  url: x\n    port: 1\n", "line 3, column 9", "mapping values are not allowed"),
        ("mqtt:\n\turl: x\n", "line 2, column 1", "indent with spaces, not tabs"),
        ("mqtt: {}\nstore: a\nmqtt: {}\n", "line 3, column 1", "duplicate key 'mqtt'"),
    ],
)
def test_yaml_errors_name_line_and_column(tmp_path: Path, text: str, where: str, what: str) -> None:
    path = write(tmp_path, text)
    message = error_of(path)
    assert "\n" not in message
    assert message.startswith(f"{path}: invalid YAML at {where}: ")
    assert what in message


@pytest.mark.parametrize(
    ("text", "got"), [("- mqtt\n- accounts\n", "a list"), ("just words\n", "'just words'")]
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, got: str) -> None:
    path = write(tmp_path, text)
    message = error_of(path)
    assert message == (
        f"{path}: the top level must be a mapping of keys (mqtt:, accounts:, ...), got {got}"
    )


def test_empty_file_asks_for_accounts(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "# nothing yet\n"))
    assert problems(message) == ["accounts: required: list at least one account"]
    message = error_of(write(tmp_path, "accounts: []\n"))
    assert problems(message) == ["accounts: expected at least one account"]


# --- validation errors: key path, bad value, expectation -----------------------------------------


def test_bad_environment_names_key_value_and_choices(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, MINIMAL.replace("sandbox", "sandbx")))
    assert problems(message) == [
        "accounts[home].environment: got 'sandbx'; expected one of: production, sandbox"
    ]
    assert message.startswith(f"{tmp_path / 'car2mqtt.yaml'}: invalid configuration, 1 problem:")


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    text = f"""\
mqtt:
  url: http://broker
  keepalive: often
  protocol: "4"
  discovery_mode: legacy
  base_topic: cars/#
log: {{level: loud, format: xml}}
heartbeat_s: 1
expose_vin: maybe
store: [a]
accounts:
  - name: home
    provider: enode
    environment: sandbox
    client_id: 42
    client_secret: {SECRET}
    user_id: ""
    poll_interval_s: 30
  - name: Bad Name
    provider: enode
    environment: sandbox
    client_id: c
    client_secret: {SECRET}
    user_id: u
  - name: other
    provider: tesla
  - name: nosecret
    provider: xee
    client_id: c
    username: me
  - name: third
"""
    lines = problems(error_of(write(tmp_path, text)))
    expected = [
        "mqtt.url: got 'http://broker'; expected a URL starting with mqtt:// or mqtts:// (TLS)",
        "mqtt.keepalive: got 'often'; expected a whole number",
        "mqtt.protocol: got '4'; expected one of: auto, 5, 3.1.1",
        "mqtt.base_topic: got 'cars/#'; expected an MQTT topic without wildcards",
        "mqtt.discovery_mode: got 'legacy'; expected one of: device, entity",
        "store: got a list; expected a path",
        "log.level: got 'loud'; expected one of: debug, info, warning, error, critical",
        "log.format: got 'xml'; expected one of: text, json",
        "heartbeat_s: got 1; expected a number >= 10",
        "expose_vin: got 'maybe'; expected true or false",
        "accounts[home].poll_interval_s: got 30; expected a number >= 60",
        "accounts[home].client_id: got 42; expected a string (quote it in YAML)",
        "accounts[home].user_id: got ''; expected a non-empty value",
        "accounts[1].name: got 'Bad Name'; expected 1 to 32 lowercase letters, digits, '_' or '-'",
        "accounts[other].provider: got 'tesla'; expected one of: enode, xee",
        "accounts[nosecret].client_secret: required: set client_secret or client_secret_file",
        "accounts[nosecret].password: required with username (the password grant)",
        "accounts[third].provider: required key is missing; expected one of: enode, xee",
    ]
    for want in expected:
        assert any(line.startswith(want) for line in lines), (want, lines)
    assert len(lines) == len(expected)


def test_poll_interval_below_60_is_rejected_with_the_reason(tmp_path: Path) -> None:
    text = MINIMAL + "    poll_interval_s: 59\n"
    (line,) = problems(error_of(write(tmp_path, text)))
    assert line.startswith("accounts[home].poll_interval_s: got 59; expected a number >= 60 (")
    assert "quota" in line
    assert load_config(write(tmp_path, MINIMAL + "    poll_interval_s: 60\n"), {})


def test_unknown_keys_are_caught_with_a_suggestion(tmp_path: Path) -> None:
    text = "mqtt:\n  usrname: me\n" + MINIMAL + "    user: typo\n"
    lines = problems(error_of(write(tmp_path, text)))
    assert lines[0].startswith("mqtt.usrname: unknown key (did you mean username?); expected one")
    assert "ha_status_topic" in lines[0]
    assert lines[1].startswith("accounts[home].user: unknown key (did you mean user_id?)")
    assert "'me'" not in lines[0]  # an unknown key's value is never echoed: it may be a secret


def test_duplicate_account_names_are_named(tmp_path: Path) -> None:
    second = MINIMAL.split("\n", 1)[1]
    (line,) = problems(error_of(write(tmp_path, MINIMAL + second)))
    assert line == (
        "accounts[1].name: duplicate account name 'home' (already used by accounts[0]); "
        "names must be unique"
    )


@pytest.mark.parametrize(
    ("change", "want"),
    [
        (
            "",
            "accounts[home].environment: required: set environment (production or sandbox), "
            "or both api_url and token_url",
        ),
        (
            "    environment: sandbox\n",
            "accounts[home].environment: set either environment or api_url + token_url, not both",
        ),
        (
            "    api_url: http://127.0.0.1:1/enode\n",
            "accounts[home].token_url: required with api_url (or set environment instead)",
        ),
        (
            "    token_url: http://127.0.0.1:1/token\n",
            "accounts[home].api_url: required with token_url (or set environment instead)",
        ),
    ],
)
def test_environment_or_both_urls(tmp_path: Path, change: str, want: str) -> None:
    base = MINIMAL.replace("    environment: sandbox\n", "")
    if change.startswith("    environment"):
        base += "    api_url: http://127.0.0.1:1/enode\n    token_url: http://127.0.0.1:1/t\n"
    assert problems(error_of(write(tmp_path, base + change))) == [want]


def test_urls_are_checked(tmp_path: Path) -> None:
    text = SIMULATOR.replace("http://127.0.0.1:8765/enode/\n", "ftp://sim/enode\n")
    assert problems(error_of(write(tmp_path, text))) == [
        "accounts[sim].api_url: got 'ftp://sim/enode'; expected an http:// or https:// URL"
    ]
    text = "mqtt: {url: 'mqtt://broker:99999'}\n" + MINIMAL
    assert problems(error_of(write(tmp_path, text))) == [
        "mqtt.url: got 'mqtt://broker:99999'; expected a port between 0 and 65535"
    ]


def test_tls_options_need_a_tls_url(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("ca\n")
    text = "mqtt: {url: 'mqtt://broker', ca_file: ca.pem, tls_insecure: true}\n" + MINIMAL
    assert problems(error_of(write(tmp_path, text))) == [
        "mqtt.ca_file: only used with mqtts:// URLs (TLS)",
        "mqtt.tls_insecure: only used with mqtts:// URLs (TLS)",
    ]
    text = "mqtt: {url: 'mqtts://broker', ca_file: missing.pem}\n" + MINIMAL
    (line,) = problems(error_of(write(tmp_path, text)))
    assert (
        line == f"mqtt.ca_file: cannot read {tmp_path / 'missing.pem'}: No such file or directory"
    )


# --- secrets -------------------------------------------------------------------------------------


def test_secrets_never_appear_in_errors(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(PASSWORD)
    text = f"""\
mqtt:
  url: mqtt://me:{PASSWORD}@broker
  password: {PASSWORD}
  password_file: pw
  pasword: {PASSWORD}
accounts:
  - name: home
    provider: enode
    api_url: https://user:{SECRET}@api.example
    token_url: https://oauth.example/token
    client_id: c
    client_secret: [{SECRET}]
    user_id: u
    client_secrett: {SECRET}
  - name: away
    provider: enode
    environment: sandbox
    client_id: c
    client_secret: ""
    user_id: u
"""
    message = error_of(write(tmp_path, text))
    lines = problems(message)
    assert PASSWORD not in message
    assert SECRET not in message
    assert "mqtt.url: expected no credentials in the URL; set mqtt.username and mqtt.password" in (
        lines
    )
    assert "mqtt.password_file: set either password or password_file, not both" in lines
    assert "accounts[home].client_secret: expected a string" in lines
    assert "accounts[home].api_url: expected a URL without credentials in it" in lines
    assert "accounts[away].client_secret: expected a non-empty value" in lines


def test_secrets_never_appear_in_describe_or_repr(tmp_path: Path) -> None:
    text = f"mqtt: {{username: me, password: {PASSWORD}}}\n" + MINIMAL
    config = load_config(write(tmp_path, text), {})
    lines = describe(config)
    summary = "\n".join(lines)
    assert PASSWORD not in summary
    assert SECRET not in summary
    assert PASSWORD not in repr(config)
    assert SECRET not in repr(config)
    assert "mqtt login: username me, password ***" in lines
    assert any(line.startswith("account home: enode (sandbox)") for line in lines)
    assert "client_secret ***" in summary
    assert "127.0.0.1:1883 (no TLS)" in lines[0]


def test_secret_files_are_read_and_stripped(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "client").write_text(SECRET + "\n")
    (secrets / "mqtt").write_text(f"{PASSWORD}\r\n")
    text = "mqtt: {password_file: secrets/mqtt}\n" + MINIMAL.replace(
        f"client_secret: {SECRET}", f"client_secret_file: {secrets / 'client'}"
    )
    config = load_config(write(tmp_path, text), {})
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == PASSWORD
    assert config.mqtt.password_file == secrets / "mqtt"  # relative to the config file
    account = config.account("home")
    assert isinstance(account, EnodeAccount)
    assert account.client_secret.get_secret_value() == SECRET
    assert f"client_secret *** (from {secrets / 'client'})" in "\n".join(describe(config))


def test_secret_file_problems_name_key_and_path(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "client").write_text(SECRET)
    text = "mqtt: {password_file: empty}\n" + MINIMAL.replace(
        f"client_secret: {SECRET}", "client_secret_file: nowhere/client"
    )
    text += "  - " + MINIMAL.split("- ", 1)[1].replace("home", "away")
    text += "    client_secret_file: client\n"
    lines = problems(error_of(write(tmp_path, text)))
    assert lines == [
        f"mqtt.password_file: {tmp_path / 'empty'} is empty; expected the password in it",
        f"accounts[home].client_secret_file: cannot read {tmp_path / 'nowhere/client'}: "
        "No such file or directory",
        "accounts[away].client_secret_file: set either client_secret or client_secret_file, "
        "not both",
    ]


def test_missing_secret_says_both_ways_to_give_it(tmp_path: Path) -> None:
    text = MINIMAL.replace(f"    client_secret: {SECRET}\n", "")
    assert problems(error_of(write(tmp_path, text))) == [
        "accounts[home].client_secret: required: set client_secret or client_secret_file"
    ]


# --- environment overrides -----------------------------------------------------------------------


def test_env_overrides_the_file(tmp_path: Path) -> None:
    env = {
        "CAR2MQTT__MQTT__URL": "mqtts://broker.lan:8884",
        "CAR2MQTT__MQTT__USERNAME": "bridge",
        "CAR2MQTT__MQTT__PASSWORD": PASSWORD,
        "car2mqtt__log__level": "WARNING",  # names are case-insensitive
        "CAR2MQTT__HEARTBEAT_S": "120",
        "CAR2MQTT__EXPOSE_VIN": "true",
        "CAR2MQTT__ACCOUNTS__HOME__CLIENT_SECRET": "from-env",
        "CAR2MQTT__ACCOUNTS__Home__POLL_INTERVAL_S": "900",
        "OTHER__MQTT__URL": "ignored",
    }
    config = load_config(write(tmp_path, MINIMAL), env)
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.tls) == ("broker.lan", 8884, True)
    assert config.mqtt.username == "bridge"
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == PASSWORD
    assert config.log.level == "warning"
    assert config.heartbeat_s == 120
    assert config.expose_vin is True
    account = config.account("home")
    assert isinstance(account, EnodeAccount)
    assert account.client_secret.get_secret_value() == "from-env"
    assert account.poll_interval_s == 900


def test_env_reaches_accounts_with_dashes_and_replaces_the_other_form(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file")
    text = "mqtt: {password_file: pw, username: me}\n" + MINIMAL.replace("home", "my-car")
    env = {
        "CAR2MQTT__MQTT__PASSWORD": PASSWORD,
        "CAR2MQTT__MQTT__USERNAME": "",  # an empty variable unsets the key
        "CAR2MQTT__ACCOUNTS__MY_CAR__API_URL": "http://127.0.0.1:1/enode",
        "CAR2MQTT__ACCOUNTS__MY_CAR__TOKEN_URL": "http://127.0.0.1:1/token",
    }
    config = load_config(write(tmp_path, text), env)
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == PASSWORD
    assert config.mqtt.password_file is None
    assert config.mqtt.username is None
    account = config.account("my-car")
    assert isinstance(account, EnodeAccount)
    assert account.environment is None  # the file's environment gave way to explicit URLs
    assert account.api_url == "http://127.0.0.1:1/enode"


def test_env_errors_name_the_variable(tmp_path: Path) -> None:
    env = {
        "CAR2MQTT__MQTT__KEEPALIVE": "soon",
        "CAR2MQTT__MQTT__PASSWORD": PASSWORD,
        "CAR2MQTT__MQTT__PASSWORD_FILE": "/run/secrets/nope",
        "CAR2MQTT__MQQT__URL": "mqtt://x",
        "CAR2MQTT__ACCOUNTS__WORK__CLIENT_SECRET": SECRET,
        "CAR2MQTT__ACCOUNTS__HOME__POLL_INTERVAL_S": "10",
        "CAR2MQTT__MQTT": "x",
        "CAR2MQTT__STORE__PATH": "x",
    }
    message = error_of(write(tmp_path, MINIMAL), env)
    lines = problems(message)
    assert SECRET not in message
    assert PASSWORD not in message
    for want in [
        "CAR2MQTT__ACCOUNTS__WORK__CLIENT_SECRET: no account named 'work' in the config file "
        "(accounts: home)",
        "CAR2MQTT__MQTT: mqtt is a section; name a key in it, as CAR2MQTT__MQTT__<KEY>",
        "CAR2MQTT__STORE__PATH: store is not a section; use CAR2MQTT__STORE",
        "mqtt.keepalive (from CAR2MQTT__MQTT__KEEPALIVE): got 'soon'; expected a whole number",
        "mqtt.password_file (from CAR2MQTT__MQTT__PASSWORD_FILE): set either password or "
        "password_file, not both",
        "accounts[home].poll_interval_s (from CAR2MQTT__ACCOUNTS__HOME__POLL_INTERVAL_S): "
        "got '10'; expected a number >= 60",
        "mqqt (from CAR2MQTT__MQQT__URL): unknown key (did you mean mqtt?)",
    ]:
        assert any(line.startswith(want) for line in lines), (want, lines)
    assert len(lines) == 7


def test_direct_construction_checks_the_same_rules() -> None:
    with pytest.raises(pydantic.ValidationError):
        Config.model_validate({"accounts": []})
    account = EnodeAccount.model_validate(
        {
            "name": "x",
            "provider": "enode",
            "environment": "production",
            "client_id": "c",
            "client_secret": SECRET,
            "user_id": "u",
        }
    )
    assert account.api_url == "https://enode-api.production.enode.io"


XEE = """\
accounts:
  - name: car
    provider: xee
    client_id: xee-client
    client_secret_file: secret.txt
    redirect_uri: https://localhost/
"""


def test_xee_account_defaults_and_secret_file(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text(f"{SECRET}\n")
    (account,) = load_config(write(tmp_path, XEE), {}).accounts
    assert isinstance(account, XeeAccount)
    assert account.client_secret.get_secret_value() == SECRET
    assert account.api_url == "https://api.xee.com/v4"
    assert account.token_url == "https://api.xee.com/v4/oauth/token"
    assert account.authorize_url == "https://api.xee.com/v4/oauth/authorize"
    assert account.redirect_uri == "https://localhost/"  # as registered, trailing slash kept
    assert "account.read" in account.scopes
    assert account.username is None


def test_xee_password_grant_from_environment_is_never_shown(tmp_path: Path) -> None:
    env = {
        "CAR2MQTT__ACCOUNTS__CAR__USERNAME": "me@example.com",
        "CAR2MQTT__ACCOUNTS__CAR__PASSWORD": "hunter2-password",
    }
    (tmp_path / "secret.txt").write_text(SECRET)
    config = load_config(write(tmp_path, XEE), env)
    account = config.account("car")
    assert isinstance(account, XeeAccount)
    assert account.password is not None
    assert account.password.get_secret_value() == "hunter2-password"
    text = "\n".join(describe(config))
    assert "password grant as me@example.com" in text
    assert "hunter2" not in text
    assert SECRET not in text


def test_xee_account_explains_its_mistakes(tmp_path: Path) -> None:
    text = XEE.replace("client_secret_file: secret.txt", "client_secret: s") + (
        "    password: p\n    api_url: ftp://xee\n    scopes: []\n"
    )
    lines = problems(error_of(write(tmp_path, text)))
    assert any(line.startswith("accounts[car].username: required with password") for line in lines)
    assert any(line.startswith("accounts[car].api_url: got 'ftp://xee'") for line in lines)
    assert any(line.startswith("accounts[car].scopes:") for line in lines), lines


def test_every_account_secret_reaches_the_log_redactor(tmp_path: Path) -> None:
    from car2mqtt.runtime import secrets_of

    (tmp_path / "secret.txt").write_text(SECRET)
    text = XEE + "    username: me\n    password: hunter2-password\n"
    config = load_config(write(tmp_path, text), {})
    assert set(secrets_of(config)) == {SECRET, "hunter2-password"}


def test_the_state_file_goes_where_the_service_manager_says_unless_the_file_says(
    tmp_path: Path,
) -> None:
    (tmp_path / "etc").mkdir()
    path = write(tmp_path / "etc", MINIMAL)
    # systemd's StateDirectory= sets STATE_DIRECTORY (a list when there are several).
    state = {"STATE_DIRECTORY": "/var/lib/car2mqtt:/var/lib/other"}
    assert load_config(path, state).store == Path("/var/lib/car2mqtt/car2mqtt.db")
    assert load_config(path, {}).store == tmp_path / "etc" / "car2mqtt.db"
    explicit = write(tmp_path, MINIMAL + "store: mine.db\n")
    assert load_config(explicit, state).store == tmp_path / "mine.db"
