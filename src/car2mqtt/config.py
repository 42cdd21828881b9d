"""car2mqtt's configuration: a YAML file, overridden by `CAR2MQTT__*` environment variables.

`load_config` turns every mistake into one `ConfigError` that lists each problem on its own line,
named by the key path as the user wrote it (`accounts[home].environment`, with the environment
variable when one set it), with the bad value (never a secret's) and what is expected. No
pydantic message or traceback ever reaches the user.

Relative paths (`store`, `ca_file`, `*_file`) are resolved against the config file's directory.
Each provider is one `AccountBase` subclass with a `provider: Literal[...]` field, in the
`Account` union.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from collections.abc import Hashable, Mapping
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Final, Literal, NamedTuple, Self, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from car2mqtt.errors import ConfigError
from car2mqtt.mqtt.url import BadMqttUrl, MqttUrl, hide_credentials, parse_mqtt_url

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_PATH",
    "ENODE_ENVIRONMENTS",
    "ENV_PREFIX",
    "MAX_FILE_BYTES",
    "XEE_API_URL",
    "XEE_SCOPES",
    "Account",
    "AccountBase",
    "Config",
    "DiscoveryMode",
    "EnodeAccount",
    "EnodeEnvironment",
    "EnodeUrls",
    "LogFormat",
    "LogLevel",
    "LogSettings",
    "MqttProtocol",
    "MqttSettings",
    "XeeAccount",
    "config_path",
    "describe",
    "load_config",
    "read_small_file",
]

CONFIG_ENV_VAR: Final = "CAR2MQTT_CONFIG"
ENV_PREFIX: Final = "CAR2MQTT__"
DEFAULT_CONFIG_PATH: Final = Path("car2mqtt.yaml")

EnodeEnvironment = Literal["production", "sandbox"]
MqttProtocol = Literal["auto", "5", "3.1.1"]
DiscoveryMode = Literal["device", "entity"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["text", "json"]


class EnodeUrls(NamedTuple):
    """Where one Enode environment lives."""

    api_url: str
    token_url: str


ENODE_ENVIRONMENTS: Final[Mapping[str, EnodeUrls]] = MappingProxyType(
    {
        "production": EnodeUrls(
            "https://enode-api.production.enode.io",
            "https://oauth.production.enode.io/oauth2/token",
        ),
        "sandbox": EnodeUrls(
            "https://enode-api.sandbox.enode.io",
            "https://oauth.sandbox.enode.io/oauth2/token",
        ),
    }
)

XEE_API_URL: Final = "https://api.xee.com/v4"
# What a status bridge needs (reference/xee.md §3); account.read guards users/me.
XEE_SCOPES: Final = (
    "account.read",
    "vehicles.read",
    "vehicles.signals.read",
    "vehicles.locations.read",
)
XEE_REDIRECT_URI: Final = "http://127.0.0.1:8765/callback"

# Setting one side of a pair from the environment drops the other side read from the file, so
# CAR2MQTT__MQTT__PASSWORD replaces a file's password_file instead of clashing with it.
_ALTERNATIVES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "password": ("password_file",),
        "password_file": ("password",),
        "client_secret": ("client_secret_file",),
        "client_secret_file": ("client_secret",),
        "environment": ("api_url", "token_url"),
        "api_url": ("environment",),
        "token_url": ("environment",),
    }
)

_NAME_RE: Final = re.compile(r"[a-z0-9_-]{1,32}")
_CUSTOM: Final = "car2mqtt"  # the error type of every problem this module words itself
_SECRET_WORDS: Final = ("secret", "password", "passwd")


# --- validation helpers -------------------------------------------------------------------------


def _invalid(message: str, *, quiet: bool = False) -> PydanticCustomError:
    """Return an error worded for the user; `quiet` keeps the bad value out of the message."""
    return PydanticCustomError(_CUSTOM, message, {"quiet": True} if quiet else None)


def _problem(loc: tuple[str | int, ...], message: str) -> InitErrorDetails:
    """Return a cross-key problem found on the raw input, at `loc` relative to the model."""
    return {"type": _invalid(message, quiet=True), "loc": loc, "input": None}


def _base_dir(context: Any) -> Path | None:
    base = context.get("base_dir") if isinstance(context, Mapping) else None
    return base if isinstance(base, Path) else None


def _resolve(value: str | os.PathLike[str], context: Any) -> Path:
    path = Path(value).expanduser()
    base = _base_dir(context)
    return base / path if base is not None and not path.is_absolute() else path


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    return _resolve(value, info.context)


ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _topic(value: str) -> str:
    if (
        not value
        or any(c in value for c in "+#\0")
        or value.startswith("/")
        or value.endswith("/")
        or "//" in value
    ):
        raise _invalid(
            "expected an MQTT topic without wildcards (+, #), empty levels or a leading or "
            "trailing '/'"
        )
    return value


def _http_url(value: str, *, keep_slash: bool = False) -> str:
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _invalid("expected an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise _invalid("expected a URL without credentials in it", quiet=True)
    try:
        _ = parts.port
    except ValueError:
        raise _invalid("expected a URL with a port between 0 and 65535") from None
    return value if keep_slash else value.rstrip("/")


@cache
def _secret_fields(cls: type[BaseModel]) -> tuple[str, ...]:
    """Return the `SecretStr` fields of `cls` that have a `<name>_file` companion."""
    return tuple(
        name
        for name, field in cls.model_fields.items()
        if (field.annotation is SecretStr or SecretStr in get_args(field.annotation))
        and f"{name}_file" in cls.model_fields
    )


MAX_FILE_BYTES: Final = 1024 * 1024


class _Refused(ValueError):
    """A file that is not read at all: not a regular file, or too big."""


def read_small_file(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """Return a regular file's bytes; raise _Refused for anything else or more than `limit`."""
    # O_NONBLOCK: opening a named pipe must not wait for a writer before we can refuse it.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise _Refused("it is a directory")
        if not stat.S_ISREG(info.st_mode):
            # /dev/zero or a pipe would be read for ever.
            raise _Refused("not a regular file (a device, pipe or socket)")
        if info.st_size > limit:
            raise _Refused(f"it is larger than {_size(limit)} ({info.st_size:,} bytes)")
        chunks, total = [], 0
        while chunk := os.read(fd, min(65536, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise _Refused(f"it is larger than {_size(limit)}")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _size(count: int) -> str:
    mib = 1024 * 1024
    return f"{count // mib} MB" if count % mib == 0 else f"{count:,} bytes"


def _read_secret_files(
    cls: type[BaseModel], data: dict[str, Any], context: Any
) -> list[InitErrorDetails]:
    """Fill each secret from its `*_file` (trailing newline stripped); report clashes."""
    problems: list[InitErrorDetails] = []
    for name in _secret_fields(cls):
        key = f"{name}_file"
        value, file = data.get(name), data.get(key)
        if file is None:
            continue
        if value is not None:
            problems.append(_problem((key,), f"set either {name} or {key}, not both"))
            continue
        if not isinstance(file, str | os.PathLike):
            continue  # the field's own validation reports the type
        path = _resolve(file, context)
        try:
            text = read_small_file(path).decode("utf-8-sig")
        except _Refused as exc:
            problems.append(_problem((key,), f"cannot read {path}: {exc}"))
            continue
        except UnicodeDecodeError:
            problems.append(_problem((key,), f"cannot read {path}: not UTF-8 text"))
            continue
        except OSError as exc:
            problems.append(_problem((key,), f"cannot read {path}: {exc.strerror or exc}"))
            continue
        secret = text.rstrip("\r\n")
        if not secret:
            problems.append(_problem((key,), f"{path} is empty; expected the {name} in it"))
            continue
        data[name] = secret
    return problems


def _with_problems(
    title: str, errors: list[ErrorDetails], problems: list[InitErrorDetails]
) -> ValidationError:
    """One ValidationError holding pydantic's errors and ours, so none is lost."""
    line_errors: list[InitErrorDetails] = [
        {
            "type": PydanticCustomError(e["type"], e["msg"], e.get("ctx")),
            "loc": e["loc"],
            "input": e["input"],
        }
        for e in errors
    ]
    return ValidationError.from_exception_data(title, [*line_errors, *problems], hide_input=True)


class _Model(BaseModel):
    """Frozen, strict about unknown keys, and reporting every problem at once."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    @classmethod
    def _cross_check(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        """Problems between keys, found on the raw input so they show up with all others."""
        return []

    @model_validator(mode="wrap")
    @classmethod
    def _validate_together(
        cls, data: Any, handler: ModelWrapValidatorHandler[Self], info: ValidationInfo
    ) -> Self:
        if not isinstance(data, Mapping):
            return handler(data)
        data = dict(data)
        problems = [*_read_secret_files(cls, data, info.context), *cls._cross_check(data)]
        try:
            model = handler(data)
        except ValidationError as exc:
            # A secret whose file could not be read is reported there, not also as missing.
            unread = {p["loc"][0] for p in problems if str(p["loc"][0]).endswith("_file")}
            errors = [
                e
                for e in exc.errors(include_url=False)
                if not (e["type"] == "missing" and f"{e['loc'][0]}_file" in unread)
            ]
            raise _with_problems(cls.__name__, errors, problems) from None
        if problems:
            raise _with_problems(cls.__name__, [], problems)
        return model


# --- the models ---------------------------------------------------------------------------------


class MqttSettings(_Model):
    """The MQTT broker and the Home Assistant discovery conventions."""

    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = Field(None, min_length=1)
    password: SecretStr | None = Field(None, min_length=1)
    password_file: ConfigPath | None = None
    ca_file: ConfigPath | None = None
    tls_insecure: bool = False
    client_id: str = Field("car2mqtt", min_length=1)
    # "auto": MQTT 5, or 3.1.1 when the broker does not take an MQTT 5 CONNECT.
    protocol: MqttProtocol = "auto"
    keepalive: int = Field(60, ge=5, le=65535)
    discovery_prefix: str = "homeassistant"
    base_topic: str = "car2mqtt"
    discovery_mode: DiscoveryMode = "device"
    explicit_ha_status_topic: str | None = Field(None, alias="ha_status_topic")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        try:
            parse_mqtt_url(value)
        except BadMqttUrl as exc:
            raise _invalid(exc.message, quiet=exc.shows_secret) from None
        return value.strip()

    @field_validator("ca_file")
    @classmethod
    def _check_ca_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                value.open("rb").close()
            except OSError as exc:
                raise _invalid(f"cannot read {value}: {exc.strerror or exc}", quiet=True) from None
        return value

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_as_text(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # `protocol: 5` in YAML is a number
        return value

    @field_validator("discovery_mode", mode="before")
    @classmethod
    def _case_insensitive(cls, value: Any) -> Any:
        return _lower(value)

    @field_validator("discovery_prefix", "base_topic", "explicit_ha_status_topic")
    @classmethod
    def _check_topic(cls, value: str | None) -> str | None:
        return None if value is None else _topic(value)

    @classmethod
    def _cross_check(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        url = data.get("url", cls.model_fields["url"].default)
        if not (isinstance(url, str) and url.strip().lower().startswith("mqtt://")):
            return []
        problems = []
        if data.get("ca_file") is not None:
            problems.append(_problem(("ca_file",), "only used with mqtts:// URLs (TLS)"))
        insecure = data.get("tls_insecure")
        if insecure is True or (isinstance(insecure, str) and _lower(insecure) in ("true", "1")):
            problems.append(_problem(("tls_insecure",), "only used with mqtts:// URLs (TLS)"))
        return problems

    @property
    def broker(self) -> MqttUrl:
        """What `url` says: host, port (8883 with TLS and 1883 without, unless given) and TLS."""
        return parse_mqtt_url(self.url)

    @property
    def tls(self) -> bool:
        """Whether the broker is reached over TLS (an mqtts:// URL)."""
        return self.broker.tls

    @property
    def host(self) -> str:
        """The broker's host name or address."""
        return self.broker.host

    @property
    def port(self) -> int:
        """The broker's port: the URL's, else 8883 with TLS and 1883 without."""
        return self.broker.port

    @property
    def ha_status_topic(self) -> str:
        """Where Home Assistant announces its birth: `<discovery_prefix>/status` unless set."""
        return self.explicit_ha_status_topic or f"{self.discovery_prefix}/status"


class LogSettings(_Model):
    """How car2mqtt logs."""

    level: LogLevel = "info"
    format: LogFormat = "text"

    @field_validator("level", "format", mode="before")
    @classmethod
    def _case_insensitive(cls, value: Any) -> Any:
        return _lower(value)


class AccountBase(_Model):
    """What every account has, whatever its provider."""

    name: str
    poll_interval_s: int = Field(300, ge=60, le=86400)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME_RE.fullmatch(value):
            raise _invalid("expected 1 to 32 lowercase letters, digits, '_' or '-'")
        return value

    def summary(self) -> str:
        """One line about this account, secrets shown as ***."""
        raise NotImplementedError

    def secrets(self) -> list[str]:
        """Return the account's secret values, for the log redactor."""
        return [
            value.get_secret_value()
            for name in _secret_fields(type(self))
            if isinstance(value := getattr(self, name), SecretStr)
        ]


class EnodeAccount(AccountBase):
    """An Enode client (client id and secret) and the Enode user whose cars we read."""

    provider: Literal["enode"]
    environment: EnodeEnvironment | None = None
    explicit_api_url: str | None = Field(None, alias="api_url")
    explicit_token_url: str | None = Field(None, alias="token_url")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr = Field(min_length=1)
    client_secret_file: ConfigPath | None = None
    user_id: str = Field(min_length=1)

    @field_validator("environment", mode="before")
    @classmethod
    def _case_insensitive(cls, value: Any) -> Any:
        return _lower(value)

    @field_validator("explicit_api_url", "explicit_token_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)

    @classmethod
    def _cross_check(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        environment = data.get("environment")
        api_url, token_url = data.get("api_url"), data.get("token_url")
        if environment is not None:
            if api_url is not None or token_url is not None:
                return [
                    _problem(
                        ("environment",), "set either environment or api_url + token_url, not both"
                    )
                ]
            return []
        if api_url is None and token_url is None:
            return [
                _problem(
                    ("environment",),
                    "required: set environment (production or sandbox), "
                    "or both api_url and token_url",
                )
            ]
        if api_url is None:
            return [_problem(("api_url",), "required with token_url (or set environment instead)")]
        if token_url is None:
            return [_problem(("token_url",), "required with api_url (or set environment instead)")]
        return []

    @property
    def urls(self) -> EnodeUrls:
        """The API and token URLs: the environment's, or the explicit ones."""
        if self.environment is not None:
            return ENODE_ENVIRONMENTS[self.environment]
        assert self.explicit_api_url is not None
        assert self.explicit_token_url is not None
        return EnodeUrls(self.explicit_api_url, self.explicit_token_url)

    @property
    def api_url(self) -> str:
        """The Enode API's base URL, without a trailing slash."""
        return self.urls.api_url

    @property
    def token_url(self) -> str:
        """The OAuth token endpoint for the client-credentials grant."""
        return self.urls.token_url

    def summary(self) -> str:
        """One line about this account, secrets shown as ***."""
        where = self.environment or "custom URLs"
        secret = _secret_text(self.client_secret, self.client_secret_file)
        return (
            f"account {self.name}: enode ({where}), api {self.api_url}, token {self.token_url}, "
            f"client_id {self.client_id}, client_secret {secret}, user_id {self.user_id}, "
            f"poll every {self.poll_interval_s} s"
        )


class XeeAccount(AccountBase):
    """A Xee v4 OAuth client, and the Xee user who consented (or whose password is given)."""

    provider: Literal["xee"]
    api_url: str = XEE_API_URL
    explicit_authorize_url: str | None = Field(None, alias="authorize_url")
    explicit_token_url: str | None = Field(None, alias="token_url")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr = Field(min_length=1)
    client_secret_file: ConfigPath | None = None
    redirect_uri: str = XEE_REDIRECT_URI
    scopes: tuple[str, ...] = Field(XEE_SCOPES, min_length=1)
    # The password grant, for those who prefer it to a browser consent.
    username: str | None = Field(None, min_length=1)
    password: SecretStr | None = Field(None, min_length=1)
    password_file: ConfigPath | None = None

    @field_validator("api_url", "explicit_authorize_url", "explicit_token_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)

    @field_validator("redirect_uri")
    @classmethod
    def _check_redirect(cls, value: str) -> str:
        # Compared character for character with the one registered at Xee: keep it as written.
        return _http_url(value, keep_slash=True)

    @classmethod
    def _cross_check(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        has_user = data.get("username") is not None
        has_password = data.get("password") is not None or data.get("password_file") is not None
        if has_user and not has_password:
            return [_problem(("password",), "required with username (the password grant)")]
        if has_password and not has_user:
            return [_problem(("username",), "required with password (the password grant)")]
        return []

    @property
    def authorize_url(self) -> str:
        """Where the user consents: `<api_url>/oauth/authorize` unless set."""
        return self.explicit_authorize_url or f"{self.api_url}/oauth/authorize"

    @property
    def token_url(self) -> str:
        """The OAuth token endpoint: `<api_url>/oauth/token` unless set."""
        return self.explicit_token_url or f"{self.api_url}/oauth/token"

    def summary(self) -> str:
        """One line about this account, secrets shown as ***."""
        secret = _secret_text(self.client_secret, self.client_secret_file)
        grant = (
            f"password grant as {self.username}, password "
            f"{_secret_text(self.password, self.password_file)}"
            if self.username
            else f"authorization code via {self.redirect_uri}"
        )
        return (
            f"account {self.name}: xee, api {self.api_url}, token {self.token_url}, "
            f"client_id {self.client_id}, client_secret {secret}, {grant}, "
            f"poll every {self.poll_interval_s} s"
        )


# One class per provider; the `provider` key picks it.
Account = Annotated[EnodeAccount | XeeAccount, Field(discriminator="provider")]


class Config(_Model):
    """The whole configuration, as `load_config` returns it."""

    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    store: ConfigPath = Field(Path("car2mqtt.db"), validate_default=True)
    log: LogSettings = Field(default_factory=LogSettings)
    heartbeat_s: int = Field(300, ge=10, le=86400)
    expose_vin: bool = False
    accounts: tuple[Account, ...]

    sections: ClassVar[Mapping[str, type[_Model]]] = MappingProxyType(
        {"mqtt": MqttSettings, "log": LogSettings}
    )

    @field_validator("mqtt", "log", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        return {} if value is None else value  # `mqtt:` with every key commented out

    @classmethod
    def _cross_check(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        accounts = data.get("accounts")
        if not isinstance(accounts, list | tuple):
            return []
        if not accounts:
            return [_problem(("accounts",), "expected at least one account")]
        problems = []
        first: dict[str, int] = {}
        for index, account in enumerate(accounts):
            name = account.get("name") if isinstance(account, Mapping) else None
            if not isinstance(name, str):
                continue
            if name in first:
                problems.append(
                    _problem(
                        ("accounts", index, "name"),
                        f"duplicate account name {name!r} (already used by "
                        f"accounts[{first[name]}]); names must be unique",
                    )
                )
            else:
                first[name] = index
        return problems

    def account(self, name: str) -> Account:
        """Return the account called `name`; raise KeyError if there is none."""
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(name)


def _account_classes() -> dict[str, type[AccountBase]]:
    """Map each provider name to its account class, read from the `Account` union."""
    member = get_args(Account)[0]
    classes: tuple[type[AccountBase], ...] = get_args(member) or (member,)
    return {get_args(cls.model_fields["provider"].annotation)[0]: cls for cls in classes}


_PROVIDERS: Final = _account_classes()


# --- loading ------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep)


def config_path(path: Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """Return the config file to read: `path`, else $CAR2MQTT_CONFIG, else ./car2mqtt.yaml."""
    env = os.environ if env is None else env
    if path is None:
        path = Path(env[CONFIG_ENV_VAR]) if env.get(CONFIG_ENV_VAR) else DEFAULT_CONFIG_PATH
    return path.expanduser()


def _parse_yaml(path: Path) -> tuple[Any, str | None]:
    """Return the file's document, or None and what is wrong with the file."""
    try:
        data = read_small_file(path)
    except _Refused as exc:
        return None, f"cannot read config file {path}: {exc}"
    except FileNotFoundError:
        return None, f"config file not found: {path} (pass --config or set {CONFIG_ENV_VAR})"
    except IsADirectoryError:
        return None, f"cannot read config file {path}: it is a directory"
    except OSError as exc:
        return None, f"cannot read config file {path}: {exc.strerror or exc}"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, f"{path}: not UTF-8 text (bad byte at offset {exc.start})"
    try:
        return yaml.load(text, Loader=_StrictLoader), None  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "unreadable"
        context = exc.context_mark
        if exc.problem and exc.context and context is not None and context != mark:
            problem += (
                f" ({exc.context} started at line {context.line + 1}, column {context.column + 1})"
            )
        if "'\\t'" in problem:
            problem += "; indent with spaces, not tabs"
        return None, f"{path}: invalid YAML{where}: {problem}"
    except yaml.YAMLError as exc:
        return None, f"{path}: invalid YAML: {exc}"


def _read_yaml(path: Path) -> dict[str, Any]:
    """Return the file's top-level mapping, or raise a one-line ConfigError."""
    document, error = _parse_yaml(path)
    if error is not None:
        raise ConfigError(error)  # raised outside `except`, so no parser error is chained
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys (mqtt:, accounts:, ...), "
            f"got {_show(document)}"
        )
    return document


def _norm(name: str) -> str:
    return name.lower().replace("-", "_")


Loc = tuple[str | int, ...]


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> tuple[dict[Loc, str], list[str]]:
    """Write CAR2MQTT__* variables into `raw`; return which key each set, and problems."""
    sources: dict[Loc, str] = {}
    problems: list[str] = []
    form = "CAR2MQTT__<KEY>, CAR2MQTT__<SECTION>__<KEY> or CAR2MQTT__ACCOUNTS__<NAME>__<KEY>"

    def put(container: dict[str, Any], prefix: Loc, key: str, var: str) -> None:
        loc = (*prefix, key)
        if loc in sources:
            problems.append(f"{var}: sets the same key as {sources[loc]}; keep one")
            return
        for other in _ALTERNATIVES.get(key, ()):
            if other in container and (*prefix, other) not in sources:
                del container[other]
        container[key] = env[var] or None  # an empty variable unsets the key
        sources[loc] = var

    for var in sorted(env):
        if not var.upper().startswith(ENV_PREFIX):
            continue
        parts = [part.lower() for part in var[len(ENV_PREFIX) :].split("__")]
        if not all(parts):
            problems.append(f"{var}: not a setting; expected {form}")
        elif len(parts) == 1:
            if parts[0] in Config.sections or parts[0] == "accounts":
                example = f"{ENV_PREFIX}{parts[0].upper()}__<KEY>"
                problems.append(f"{var}: {parts[0]} is a section; name a key in it, as {example}")
            else:
                put(raw, (), parts[0], var)
        elif parts[0] == "accounts":
            if len(parts) != 3:
                problems.append(
                    f"{var}: expected CAR2MQTT__ACCOUNTS__<NAME>__<KEY>, "
                    "e.g. CAR2MQTT__ACCOUNTS__HOME__CLIENT_SECRET"
                )
                continue
            accounts = raw.get("accounts")
            items = accounts if isinstance(accounts, list) else []
            names = [a.get("name") if isinstance(a, dict) else None for a in items]
            hits = [i for i, n in enumerate(names) if isinstance(n, str) and _norm(n) == parts[1]]
            if len(hits) != 1:
                known = ", ".join(n for n in names if isinstance(n, str)) or "none"
                why = "no account" if not hits else "more than one account"
                problems.append(
                    f"{var}: {why} named {parts[1]!r} in the config file (accounts: {known}); "
                    "the environment can change an account, not add one"
                )
                continue
            put(items[hits[0]], ("accounts", hits[0]), parts[2], var)
        elif len(parts) == 2:
            section = raw.get(parts[0])
            if parts[0] in Config.model_fields and parts[0] not in Config.sections:
                problems.append(
                    f"{var}: {parts[0]} is not a section; use {ENV_PREFIX}{parts[0].upper()}"
                )
            elif section is None:
                raw[parts[0]] = section = {}
                sources[(parts[0],)] = var
                put(section, (parts[0],), parts[1], var)
            elif isinstance(section, dict):
                put(section, (parts[0],), parts[1], var)
            # else: the file's section is not a mapping, and validation says so
        else:
            problems.append(f"{var}: not a setting; expected {form}")
    return sources, problems


# --- error messages -----------------------------------------------------------------------------

_HINTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "poll_interval_s": (
            "Enode refreshes its own cache about every 7 minutes, so polling faster only burns "
            "API quota"
        ),
    }
)


def _show(value: Any) -> str:
    """Render a bad value as the user would recognise it (lists and mappings summarised)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        text = hide_credentials(value)
        return repr(text if len(text) <= 80 else text[:77] + "...")
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _is_secret(key: str | int | None) -> bool:
    if not isinstance(key, str) or key.endswith("_file"):
        return False
    return any(word in key.lower() for word in _SECRET_WORDS)


def _options(expected: str) -> str:
    return ", ".join(re.findall(r"'([^']*)'", expected)) or expected


def _allowed_keys(loc: Loc, raw: Mapping[str, Any]) -> list[str]:
    """Return the keys the mapping at `loc` accepts."""
    cls: type[BaseModel] | None = None
    if not loc:
        cls = Config
    elif len(loc) == 1 and isinstance(loc[0], str):
        cls = Config.sections.get(loc[0])
    elif len(loc) == 2 and loc[0] == "accounts" and isinstance(loc[1], int):
        accounts = raw.get("accounts")
        item = accounts[loc[1]] if isinstance(accounts, list) else None
        provider = item.get("provider") if isinstance(item, dict) else None
        cls = _PROVIDERS.get(provider) if isinstance(provider, str) else None
    if cls is None:
        return []
    return [field.alias or name for name, field in cls.model_fields.items()]


def _expectation(error: ErrorDetails, loc: Loc, raw: Mapping[str, Any]) -> tuple[str, bool]:
    """Return what was expected, and whether showing the bad value helps."""
    kind, ctx, key = error["type"], error.get("ctx") or {}, loc[-1] if loc else None
    value = error["input"]
    if kind == _CUSTOM:
        return error["msg"], not ctx.get("quiet")
    if kind == "missing":
        if key == "accounts":
            return "required: list at least one account", False
        if (
            isinstance(key, str)
            and _is_secret(key)
            and f"{key}_file" in _allowed_keys(loc[:-1], raw)
        ):
            return f"required: set {key} or {key}_file", False
        return "required key is missing", False
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1], raw)
        text = "unknown key"
        close = difflib.get_close_matches(str(key).lower(), allowed, n=1, cutoff=0.6)
        if close:
            text += f" (did you mean {close[0]}?)"
        if allowed:
            text += f"; expected one of: {', '.join(allowed)}"
        return text, False
    if kind in ("literal_error", "enum"):
        return f"expected one of: {_options(str(ctx.get('expected', '')))}", True
    if kind == "union_tag_invalid":
        return f"expected one of: {_options(str(ctx.get('expected_tags', '')))}", True
    if kind == "union_tag_not_found":
        return f"required key is missing; expected one of: {', '.join(_PROVIDERS)}", False
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "expected a mapping of keys", True
    if kind in ("list_type", "tuple_type"):
        return "expected a list", True
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "expected a whole number", True
    if kind in ("bool_type", "bool_parsing"):
        return "expected true or false", True
    if kind in ("string_type", "path_type"):
        what = "a path" if kind == "path_type" else "a string"
        hint = " (quote it in YAML)" if isinstance(value, int | float | bool) else ""
        return f"expected {what}{hint}", True
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign = {"greater_than_equal": ">=", "greater_than": ">"}.get(kind, "<=")
        sign = "<" if kind == "less_than" else sign
        bound = next(iter(ctx.values()), "?")
        hint = f" ({_HINTS[key]})" if isinstance(key, str) and key in _HINTS else ""
        return f"expected a number {sign} {bound}{hint}", True
    if kind in ("string_too_short", "too_short"):
        least = ctx.get("min_length", 1)
        return ("expected a non-empty value" if least == 1 else f"expected >= {least} items"), True
    if kind in ("string_too_long", "too_long"):
        return f"expected at most {ctx.get('max_length', '?')} characters", True
    message = error["msg"].removeprefix("Value error, ")
    return message[:1].lower() + message[1:], True


def _format(
    error: ErrorDetails,
    raw: Mapping[str, Any],
    labels: Mapping[int, str],
    sources: Mapping[Loc, str],
) -> str:
    """Word one problem: key path (and variable), bad value unless secret, expectation."""
    loc: Loc = tuple(error["loc"])
    if len(loc) >= 3 and loc[0] == "accounts" and isinstance(loc[1], int) and loc[2] in _PROVIDERS:
        loc = loc[:2] + loc[3:]  # the discriminated union's tag is not a key the user wrote
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc = (*loc, "provider")
    text, show_value = _expectation(error, loc, raw)
    value = error.get("ctx", {}).get("tag") if error["type"] == "union_tag_invalid" else None
    value = value if value is not None else error["input"]
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{labels.get(part, part)}]" if path == "accounts" else f"[{part}]"
        else:
            path += f".{part}" if path else part
    source = sources.get(loc)
    where = f"{path or '(top level)'}" + (f" (from {source})" if source else "")
    if show_value and not _is_secret(loc[-1] if loc else None):
        return f"{where}: got {_show(value)}; {text}"
    return f"{where}: {text}"


def _account_labels(raw: Mapping[str, Any]) -> dict[int, str]:
    """Label each accounts[i] by its name when that is unambiguous, else by its index."""
    accounts = raw.get("accounts")
    if not isinstance(accounts, list):
        return {}
    names = [a.get("name") if isinstance(a, dict) else None for a in accounts]
    return {
        i: n if isinstance(n, str) and _NAME_RE.fullmatch(n) and names.count(n) == 1 else str(i)
        for i, n in enumerate(names)
    }


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read, override from the environment and check the config; raise ConfigError if wrong."""
    env = os.environ if env is None else env
    path = config_path(path, env)
    raw = _read_yaml(path)
    sources, lines = _apply_env(raw, env)
    context = {"base_dir": path.absolute().parent}
    config: Config | None = None
    try:
        config = Config.model_validate(raw, context=context)
    except ValidationError as exc:
        labels = _account_labels(raw)
        for error in exc.errors(include_url=False):
            line = _format(error, raw, labels, sources)
            if line not in lines:
                lines.append(line)
    if lines or config is None:
        count = f"{len(lines)} problem{'s' if len(lines) != 1 else ''}"
        header = f"{path}: invalid configuration, {count}:"
        raise ConfigError("\n".join([header, *(f"  {line}" for line in lines)]))
    return config


# --- describing ---------------------------------------------------------------------------------


def _secret_text(secret: SecretStr | None, file: Path | None) -> str:
    if secret is None:
        return "none"
    return f"*** (from {file})" if file is not None else "***"


def describe(config: Config) -> list[str]:
    """Human summary lines of `config`, with every secret shown as ***."""
    mqtt = config.mqtt
    if not mqtt.tls:
        tls = "no TLS"
    elif mqtt.tls_insecure:
        tls = "TLS without certificate checks"
    else:
        tls = f"TLS, CA {mqtt.ca_file}" if mqtt.ca_file else "TLS, system CAs"
    return [
        f"mqtt: {mqtt.host}:{mqtt.port} ({tls}), MQTT {_protocol_text(mqtt.protocol)}, "
        f"client_id {mqtt.client_id}, keepalive {mqtt.keepalive} s",
        f"mqtt login: username {mqtt.username or 'none'}, "
        f"password {_secret_text(mqtt.password, mqtt.password_file)}",
        f"topics: base {mqtt.base_topic}, discovery {mqtt.discovery_prefix} "
        f"({mqtt.discovery_mode} discovery), Home Assistant status {mqtt.ha_status_topic}",
        f"store: {config.store}",
        f"log: {config.log.level}, {config.log.format}",
        f"heartbeat every {config.heartbeat_s} s, VIN {'shown' if config.expose_vin else 'hidden'}",
        *(account.summary() for account in config.accounts),
    ]


def _protocol_text(protocol: str) -> str:
    """Say what `mqtt.protocol` means in words."""
    return "5, or 3.1.1 if the broker refuses 5" if protocol == "auto" else protocol
