"""car2mqtt's configuration: a YAML file, overridden by `CAR2MQTT__*` environment variables.

`load_config` turns every mistake into one `ConfigError` that lists each problem on its own line,
named by the key path as the user wrote it (`accounts[home].environment`, with the environment
variable when one set it), with the bad value (never a secret's) and what is expected. No
pydantic message or traceback ever reaches the user.

Relative paths (`store`, `ca_file`, `*_file`) are resolved against the config file's directory.
Without a `store`, the state file goes in `$STATE_DIRECTORY` when set (systemd, the image).

This module names no provider and imports none. Each provider's folder has an `AccountBase`
subclass with a `provider: Literal["<name>"]` field; the caller passes those models in
(`load_config(..., accounts=...)`; in practice `car2mqtt.providers.registry.load_config` passes
every registered plug-in's), and `config_model` builds the `accounts` union, discriminated by
`provider`, from them. What the loader needs to know about a provider beyond its fields is on
its model: `bound_reasons` (why a limit is what it is, shown with a value out of range) and
`alternatives` (the keys one environment variable replaces).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import stat
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Final, Literal, Self, Union, get_args
from urllib.parse import unquote, urlsplit

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
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from car2mqtt.errors import ConfigError
from car2mqtt.mqtt.topics import default_ha_status
from car2mqtt.mqtt.url import BadMqttUrl, MqttUrl, hide_credentials, parse_mqtt_url

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_PATH",
    "ENV_PREFIX",
    "MAX_FILE_BYTES",
    "AccountBase",
    "Config",
    "ConfigPath",
    "DiscoveryMode",
    "HistorySettings",
    "LogFormat",
    "LogLevel",
    "LogSettings",
    "MqttProtocol",
    "MqttSettings",
    "PrivacySettings",
    "WebSettings",
    "Zone",
    "config_model",
    "config_path",
    "describe",
    "http_url",
    "invalid",
    "is_loopback",
    "load_config",
    "lowercase",
    "problem",
    "read_small_file",
    "secret_text",
]

CONFIG_ENV_VAR: Final = "CAR2MQTT_CONFIG"
STATE_DIR_ENV_VAR: Final = "STATE_DIRECTORY"  # systemd's name, set by StateDirectory=
DEFAULT_STORE_NAME: Final = "car2mqtt.db"
ENV_PREFIX: Final = "CAR2MQTT__"
DEFAULT_CONFIG_PATH: Final = Path("car2mqtt.yaml")

MqttProtocol = Literal["auto", "5", "3.1.1"]
DiscoveryMode = Literal["device", "entity"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["text", "json"]


_NAME_RE: Final = re.compile(r"[a-z0-9_-]{1,32}")
_CUSTOM: Final = "car2mqtt"  # the error type of every problem this module words itself
_SECRET_WORDS: Final = ("secret", "password", "passwd")


# --- validation helpers -------------------------------------------------------------------------


def invalid(message: str, *, quiet: bool = False) -> PydanticCustomError:
    """Return an error worded for the user; `quiet` keeps the bad value out of the message."""
    return PydanticCustomError(_CUSTOM, message, {"quiet": True} if quiet else None)


def problem(loc: tuple[str | int, ...], message: str) -> InitErrorDetails:
    """Return a cross-key problem found on the raw input, at `loc` relative to the model."""
    return {"type": invalid(message, quiet=True), "loc": loc, "input": None}


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


def lowercase(value: Any) -> Any:
    """Return a string stripped and lowercased (a case-insensitive choice), anything else as is."""
    return value.strip().lower() if isinstance(value, str) else value


def _ha_release(text: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"(20\d\d)\.(1[0-2]|[1-9])(?:\.\d+)?(?:[a-z]+\d*)?", text.strip())
    return None if match is None else (int(match[1]), int(match[2]))


def _topic(value: str) -> str:
    if (
        not value
        or any(c in value for c in "+#\0")
        or value.startswith("/")
        or value.endswith("/")
        or "//" in value
    ):
        raise invalid(
            "expected an MQTT topic without wildcards (+, #), empty levels or a leading or "
            "trailing '/'"
        )
    return value


def http_url(value: str, *, keep_slash: bool = False) -> str:
    """Check an http(s) URL without credentials; strip its trailing slash unless `keep_slash`."""
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise invalid("expected an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise invalid("expected a URL without credentials in it", quiet=True)
    try:
        _ = parts.port
    except ValueError:
        raise invalid("expected a URL with a port between 0 and 65535") from None
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
            problems.append(problem((key,), f"set either {name} or {key}, not both"))
            continue
        if not isinstance(file, str | os.PathLike):
            continue  # the field's own validation reports the type
        path = _resolve(file, context)
        try:
            text = read_small_file(path).decode("utf-8-sig")
        except _Refused as exc:
            problems.append(problem((key,), f"cannot read {path}: {exc}"))
            continue
        except UnicodeDecodeError:
            problems.append(problem((key,), f"cannot read {path}: not UTF-8 text"))
            continue
        except OSError as exc:
            problems.append(problem((key,), f"cannot read {path}: {exc.strerror or exc}"))
            continue
        secret = text.rstrip("\r\n")
        if not secret:
            problems.append(problem((key,), f"{path} is empty; expected the {name} in it"))
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

    # Why a key's limit is what it is, added to the message for a value out of range.
    bound_reasons: ClassVar[Mapping[str, str]] = MappingProxyType({})
    # Keys that setting one from the environment drops from the file (beside the automatic
    # pair of a secret and its `<secret>_file`), so they do not clash.
    alternatives: ClassVar[Mapping[str, tuple[str, ...]]] = MappingProxyType({})

    @classmethod
    def replaced_by(cls, key: str) -> tuple[str, ...]:
        """Return the keys that setting `key` from the environment drops from the file."""
        secrets = _secret_fields(cls)
        pair: tuple[str, ...] = ()
        if key in secrets:
            pair = (f"{key}_file",)
        elif key.endswith("_file") and key.removesuffix("_file") in secrets:
            pair = (key.removesuffix("_file"),)
        return (*pair, *cls.alternatives.get(key, ()))

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
    # The Home Assistant release ("2026.11"): platforms newer than the oldest supported one
    # (the MQTT time entity, 2026.4) are announced only when it has them.
    ha_version: str | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        try:
            parse_mqtt_url(value)
        except BadMqttUrl as exc:
            raise invalid(exc.message, quiet=exc.shows_secret) from None
        return value.strip()

    @field_validator("ca_file")
    @classmethod
    def _check_ca_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                value.open("rb").close()
            except OSError as exc:
                raise invalid(f"cannot read {value}: {exc.strerror or exc}", quiet=True) from None
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
        return lowercase(value)

    @field_validator("ha_version", mode="before")
    @classmethod
    def _check_ha_version(cls, value: Any) -> Any:
        if isinstance(value, float):  # `ha_version: 2026.11` in YAML is a number
            value = repr(value)
            if value.endswith(".1"):
                raise invalid('YAML reads 2026.10 as 2026.1: put the version in quotes ("2026.10")')
        if value is not None and _ha_release(str(value)) is None:
            raise invalid("expected a Home Assistant release such as 2026.11 or 2026.11.2")
        return None if value is None else str(value).strip()

    @property
    def ha_release(self) -> tuple[int, int] | None:
        """Return `ha_version` as (year, month), None when not set."""
        return None if self.ha_version is None else _ha_release(self.ha_version)

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
            problems.append(problem(("ca_file",), "only used with mqtts:// URLs (TLS)"))
        insecure = data.get("tls_insecure")
        if insecure is True or (isinstance(insecure, str) and lowercase(insecure) in ("true", "1")):
            problems.append(problem(("tls_insecure",), "only used with mqtts:// URLs (TLS)"))
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
        return default_ha_status(self.discovery_prefix, self.explicit_ha_status_topic)


class LogSettings(_Model):
    """How car2mqtt logs."""

    level: LogLevel = "info"
    format: LogFormat = "text"

    @field_validator("level", "format", mode="before")
    @classmethod
    def _case_insensitive(cls, value: Any) -> Any:
        return lowercase(value)


_BASE_PATH_RE: Final = re.compile(r"(/[A-Za-z0-9._~-]+)*")


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class WebSettings(_Model):
    """The web UI: where it listens, under which path, and who may use it."""

    enabled: bool = True
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8780, ge=0, le=65535)  # 0: any free port
    # The path a reverse proxy serves the UI under ("/car2mqtt"); HA ingress needs none.
    base_path: str = ""
    password: SecretStr | None = Field(None, min_length=1)
    password_file: ConfigPath | None = None
    # Addresses (or networks) of proxies that authenticate users themselves, such as Home
    # Assistant's ingress (172.30.32.2): their requests need no password.
    trusted_proxies: tuple[str, ...] = ()

    @field_validator("base_path")
    @classmethod
    def _check_base_path(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith("/"):
            value = "/" + value
        if not _BASE_PATH_RE.fullmatch(value) or "/../" in f"{value}/":
            raise invalid("expected a path such as /car2mqtt (letters, digits, . _ ~ - and /)")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise invalid(
                    f"{item!r} is not an IP address or network (such as 172.30.32.2 or 10.0.0.0/8)"
                ) from None
        return value

    @classmethod
    def _cross_check(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        enabled = data.get("enabled", True)
        host = data.get("host", "127.0.0.1")
        if enabled in (False, "false", "False", "0") or not isinstance(host, str):
            return []
        guarded = any(data.get(k) is not None for k in ("password", "password_file"))
        if is_loopback(host) or guarded or data.get("trusted_proxies"):
            return []
        return [
            problem(
                ("host",),
                f"the web UI would answer anyone who can reach {host}, and it can control "
                "your cars: set web.password (or web.password_file), or web.trusted_proxies "
                "for a proxy that logs users in, or keep host 127.0.0.1",
            )
        ]


class WebhookSettings(_Model):
    """Receiving webhooks: on the web UI's server, or on a listener of its own; the watchdog."""

    # A listener for the receiver alone (port set), so the web UI can stay on loopback while
    # only the receiver is exposed; its requests prove themselves by signature.
    host: str = Field("127.0.0.1", min_length=1)
    port: int | None = Field(None, ge=0, le=65535)  # None: the web UI's server; 0: any
    # Nothing received for this long (not even a heartbeat): polling takes over again.
    watchdog_s: int = Field(900, ge=60, le=86400)
    # While pushes arrive, each account is still listed this often, to catch what was missed.
    safety_poll_s: int = Field(3600, ge=300, le=86400)


class HistorySettings(_Model):
    """Where history goes (SQLite beside the state file, or PostgreSQL) and how long it stays."""

    enabled: bool = True
    # None: SQLite in `<store>-history.db`; `postgresql://user:password@host/db` for PostgreSQL.
    # A secret: it may carry the database's password.
    url: SecretStr | None = None
    keep_samples_days: int | None = Field(400, ge=1, le=36500)
    keep_sessions_days: int | None = Field(None, ge=1, le=36500)  # None: forever
    keep_trips_days: int | None = Field(None, ge=1, le=36500)
    # States waiting to be recorded; past this the recorder drops (and counts) rather than wait.
    queue: int = Field(10_000, ge=100, le=1_000_000)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value().strip()
        if not text.startswith(("postgresql://", "postgres://", "sqlite:///")):
            raise invalid(
                "expected postgresql://user:password@host/database or sqlite:///path/to/file.db",
                quiet=True,
            )
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - read for its check: a port that is not a number raises
        except ValueError as exc:
            raise invalid(f"not a database URL: {exc}", quiet=True) from None
        return SecretStr(text)

    def url_secrets(self) -> list[str]:
        """Return the URL and every password in it, as written and decoded (for the redactor)."""
        if self.url is None:
            return []
        text = self.url.get_secret_value()
        parts = urlsplit(text)
        found = [text]
        passwords = [parts.password] if parts.password else []
        for pair in parts.query.split("&"):
            name, _, given = pair.partition("=")
            if unquote(name) == "password" and given:
                passwords.append(given)
        for password in passwords:
            found += [password, unquote(password)]
        return found

    def sqlite_path(self, store: Path) -> Path | None:
        """Return the SQLite file history goes to, None when it goes to PostgreSQL."""
        if self.url is None:
            return store.with_name(f"{store.stem}-history.db")
        text = self.url.get_secret_value()
        return Path(text.removeprefix("sqlite://")) if text.startswith("sqlite:///") else None


class Zone(_Model):
    """A named place: sessions and trips that begin or end inside it are named after it."""

    name: str = Field(min_length=1, max_length=64)
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    radius_m: float = Field(100.0, gt=0, le=100_000)


LocationPrivacy = Literal["exact", "coarse", "zone", "off"]


class PrivacySettings(_Model):
    """How precisely an account's cars' positions leave the bridge (docs/privacy.md)."""

    location: LocationPrivacy = "exact"
    grid_m: int = Field(1000, ge=10, le=100_000)  # the `coarse` grid's cell, in metres
    # Per car, by vehicle id or by the car's name: a mode of its own.
    cars: dict[str, LocationPrivacy] = Field(default_factory=dict)

    @field_validator("location", mode="before")
    @classmethod
    def _case_insensitive(cls, value: Any) -> Any:
        return _mode(value)

    @field_validator("cars", mode="before")
    @classmethod
    def _cars_case_insensitive(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, Mapping):
            return {k: _mode(v) for k, v in value.items()}
        return value


def _mode(value: Any) -> Any:
    # YAML reads a bare `off` as false: what the user wrote is the mode `off`.
    return "off" if value is False else lowercase(value)


class BudgetSettings(_Model):
    """An account's monthly API budget (docs/bridge.md, "API budget"); no cap by default."""

    calls_per_month: int | None = Field(None, ge=10, le=100_000_000)
    calls_per_vehicle_month: int | None = Field(None, ge=10, le=10_000_000)
    # The share kept for commands and the polls that follow them.
    reserve_pct: int = Field(10, ge=0, le=50)


class AccountBase(_Model):
    """What every account has, whatever its provider.

    A provider's account model subclasses this, declares `provider: Literal["<name>"]` (the
    tag that picks it), its own keys and a `summary()`, and may override `_cross_check`
    (problems between keys), `bound_reasons` and `alternatives`. Secrets are `SecretStr`
    fields; one with a `<name>_file` companion is read from that file, is required as "set
    <name> or <name>_file" and reaches the log redactor by itself.
    """

    name: str
    # No cloud is worth polling more than once a minute; a provider may raise the floor by
    # declaring the field again, and say why in `bound_reasons`.
    poll_interval_s: int = Field(300, ge=60, le=86400)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    if TYPE_CHECKING:
        # Each subclass declares it as a Literal; not a field here, so that it keeps its place
        # among the subclass's own keys in "expected one of" lists.
        provider: str

    @classmethod
    def provider_name(cls) -> str:
        """Return the `provider` tag of this model; TypeError for a model without one."""
        field = cls.model_fields.get("provider")
        tags = get_args(field.annotation) if field is not None else ()
        if len(tags) != 1 or not isinstance(tags[0], str):
            msg = f"{cls.__name__} needs a field provider: Literal['<name>'], with one name"
            raise TypeError(msg)
        return tags[0]

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME_RE.fullmatch(value):
            raise invalid("expected 1 to 32 lowercase letters, digits, '_' or '-'")
        return value

    def summary(self) -> str:
        """One line about this account, secrets shown as ***."""
        return f"account {self.name}: {self.provider}, poll every {self.poll_interval_s} s"

    def secrets(self) -> list[str]:
        """Return the account's secret values, for the log redactor."""
        return [
            value.get_secret_value()
            for name in _secret_fields(type(self))
            if isinstance(value := getattr(self, name), SecretStr)
        ]


class Config(_Model):
    """The whole configuration, as `load_config` returns it.

    Its accounts are each provider's own account model. Validate with `config_model(models)`,
    which knows them: `Config` itself knows only `AccountBase`, so it takes no real account.
    """

    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    store: ConfigPath = Field(Path(DEFAULT_STORE_NAME), validate_default=True)
    log: LogSettings = Field(default_factory=LogSettings)
    heartbeat_s: int = Field(300, ge=10, le=86400)
    expose_vin: bool = False
    web: WebSettings = Field(default_factory=WebSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    zones: tuple[Zone, ...] = ()
    accounts: tuple[AccountBase, ...]

    @field_validator("zones")
    @classmethod
    def _unique_zones(cls, zones: tuple[Zone, ...]) -> tuple[Zone, ...]:
        seen: set[str] = set()
        for zone in zones:
            if zone.name.casefold() in seen:
                raise invalid(f"two zones are named {zone.name!r}: give each its own name")
            seen.add(zone.name.casefold())
        return zones

    sections: ClassVar[Mapping[str, type[_Model]]] = MappingProxyType(
        {
            "mqtt": MqttSettings,
            "log": LogSettings,
            "web": WebSettings,
            "webhook": WebhookSettings,
            "history": HistorySettings,
        }
    )

    @field_validator("mqtt", "log", "web", "webhook", "history", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        return {} if value is None else value  # `mqtt:` with every key commented out

    @classmethod
    def _cross_check(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        accounts = data.get("accounts")
        if not isinstance(accounts, list | tuple):
            return []
        if not accounts:
            return [problem(("accounts",), "expected at least one account")]
        problems = []
        first: dict[str, int] = {}
        for index, account in enumerate(accounts):
            name = account.get("name") if isinstance(account, Mapping) else None
            if not isinstance(name, str):
                continue
            if name in first:
                problems.append(
                    problem(
                        ("accounts", index, "name"),
                        f"duplicate account name {name!r} (already used by "
                        f"accounts[{first[name]}]); names must be unique",
                    )
                )
            else:
                first[name] = index
        return problems + _zones_needed(accounts, data.get("zones"))

    def account(self, name: str) -> AccountBase:
        """Return the account called `name`; raise KeyError if there is none."""
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(name)


def _zones_needed(accounts: Sequence[Any], zones: Any) -> list[InitErrorDetails]:
    """Return a problem for each `zone` mode when no zone is set (every car: `not_home`)."""
    if zones:
        return []
    problems = []
    for index, account in enumerate(accounts):
        privacy = account.get("privacy") if isinstance(account, Mapping) else None
        if not isinstance(privacy, Mapping):
            continue
        cars = privacy.get("cars")
        modes = {"location": privacy.get("location")}
        if isinstance(cars, Mapping):
            modes |= {f"cars.{car}": mode for car, mode in cars.items()}
        for where, mode in modes.items():
            if isinstance(mode, str) and mode.strip().lower() == "zone":
                problems.append(
                    problem(
                        ("accounts", index, "privacy", *where.split(".", 1)),
                        "'zone' needs at least one zone in the top-level zones: list "
                        "(without one every car reads not_home; 'off' publishes no location)",
                    )
                )
    return problems


@cache
def _config_model(models: tuple[type[AccountBase], ...]) -> type[Config]:
    # The union of classes known only at run time, discriminated by their `provider` tag.
    account: Any = Annotated[Union[models], Field(discriminator="provider")]  # noqa: UP007
    return create_model(
        "Config", __base__=Config, __module__=__name__, accounts=(tuple[account, ...], ...)
    )


def config_model(models: Sequence[type[AccountBase]]) -> type[Config]:
    """Return the `Config` model whose accounts are one of `models`, picked by `provider`."""
    names = [model.provider_name() for model in models]
    if not names or len(set(names)) != len(names):
        msg = f"expected account models with distinct provider names, got {names}"
        raise ValueError(msg)
    return _config_model(tuple(models))


@dataclass(frozen=True, slots=True)
class _Schema:
    """What one load validates with: the Config model and each provider's account model."""

    model: type[Config]
    accounts: Mapping[str, type[AccountBase]]

    @classmethod
    def of(cls, models: Sequence[type[AccountBase]]) -> _Schema:
        return cls(config_model(models), {m.provider_name(): m for m in models})

    def account_model(self, raw: Mapping[str, Any], index: int) -> type[AccountBase] | None:
        """Return the model that the raw `accounts[index]` names with its `provider`."""
        accounts = raw.get("accounts")
        item = accounts[index] if isinstance(accounts, list) and index < len(accounts) else None
        provider = item.get("provider") if isinstance(item, dict) else None
        return self.accounts.get(provider) if isinstance(provider, str) else None


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


def _apply_env(
    raw: dict[str, Any], env: Mapping[str, str], schema: _Schema
) -> tuple[dict[Loc, str], list[str]]:
    """Write CAR2MQTT__* variables into `raw`; return which key each set, and problems."""
    sources: dict[Loc, str] = {}
    problems: list[str] = []
    form = "CAR2MQTT__<KEY>, CAR2MQTT__<SECTION>__<KEY> or CAR2MQTT__ACCOUNTS__<NAME>__<KEY>"

    def put(
        container: dict[str, Any], prefix: Loc, key: str, var: str, model: type[_Model] | None
    ) -> None:
        loc = (*prefix, key)
        if loc in sources:
            problems.append(f"{var}: sets the same key as {sources[loc]}; keep one")
            return
        # Setting one side of a pair drops the other side read from the file, so
        # CAR2MQTT__MQTT__PASSWORD replaces a file's password_file instead of clashing with it.
        for other in model.replaced_by(key) if model is not None else ():
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
                put(raw, (), parts[0], var, None)
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
            model = schema.account_model(raw, hits[0])
            put(items[hits[0]], ("accounts", hits[0]), parts[2], var, model)
        elif len(parts) == 2:
            section = raw.get(parts[0])
            if parts[0] in Config.model_fields and parts[0] not in Config.sections:
                problems.append(
                    f"{var}: {parts[0]} is not a section; use {ENV_PREFIX}{parts[0].upper()}"
                )
            elif section is None:
                raw[parts[0]] = section = {}
                sources[(parts[0],)] = var
                put(section, (parts[0],), parts[1], var, Config.sections.get(parts[0]))
            elif isinstance(section, dict):
                put(section, (parts[0],), parts[1], var, Config.sections.get(parts[0]))
            # else: the file's section is not a mapping, and validation says so
        else:
            problems.append(f"{var}: not a setting; expected {form}")
    return sources, problems


# --- error messages -----------------------------------------------------------------------------


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


def _is_secret_at(loc: Loc, raw: Mapping[str, Any], schema: _Schema) -> bool:
    """Whether the key at `loc` holds a secret: by its name, or as a model's `SecretStr`."""
    key = loc[-1] if loc else None
    if _is_secret(key):
        return True
    model = _model_at(loc[:-1], raw, schema)
    if not isinstance(key, str) or model is None:
        return False
    field = model.model_fields.get(key)
    return field is not None and (
        field.annotation is SecretStr or SecretStr in get_args(field.annotation)
    )


def _options(expected: str) -> str:
    return ", ".join(re.findall(r"'([^']*)'", expected)) or expected


def _model_at(loc: Loc, raw: Mapping[str, Any], schema: _Schema) -> type[_Model] | None:
    """Return the model of the mapping at `loc`, as far as the raw input tells."""
    if not loc:
        return Config
    if len(loc) == 1 and isinstance(loc[0], str):
        return Config.sections.get(loc[0])
    if len(loc) == 2 and loc[0] == "accounts" and isinstance(loc[1], int):
        return schema.account_model(raw, loc[1])
    if len(loc) == 3 and loc[0] == "accounts" and isinstance(loc[1], int):
        # A section of an account (privacy, budget, a provider's own): its field's model.
        account = schema.account_model(raw, loc[1])
        field = account.model_fields.get(str(loc[2])) if account is not None else None
        section = field.annotation if field is not None else None
        return section if isinstance(section, type) and issubclass(section, _Model) else None
    return None


def _allowed_keys(loc: Loc, raw: Mapping[str, Any], schema: _Schema) -> list[str]:
    """Return the keys the mapping at `loc` accepts."""
    cls = _model_at(loc, raw, schema)
    if cls is None:
        return []
    return [field.alias or name for name, field in cls.model_fields.items()]


def _expectation(
    error: ErrorDetails, loc: Loc, raw: Mapping[str, Any], schema: _Schema
) -> tuple[str, bool]:
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
            and _is_secret_at(loc, raw, schema)
            and f"{key}_file" in _allowed_keys(loc[:-1], raw, schema)
        ):
            return f"required: set {key} or {key}_file", False
        return "required key is missing", False
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1], raw, schema)
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
        return f"required key is missing; expected one of: {', '.join(schema.accounts)}", False
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
        model = _model_at(loc[:-1], raw, schema)
        reason = model.bound_reasons.get(str(key)) if model is not None else None
        hint = f" ({reason})" if reason else ""
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
    schema: _Schema,
) -> str:
    """Word one problem: key path (and variable), bad value unless secret, expectation."""
    loc: Loc = tuple(error["loc"])
    tagged = len(loc) >= 3 and loc[0] == "accounts" and isinstance(loc[1], int)
    if tagged and loc[2] in schema.accounts:
        loc = loc[:2] + loc[3:]  # the discriminated union's tag is not a key the user wrote
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc = (*loc, "provider")
    text, show_value = _expectation(error, loc, raw, schema)
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
    if show_value and not _is_secret_at(loc, raw, schema):
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


def load_config(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    accounts: Sequence[type[AccountBase]],
) -> Config:
    """Read, override from the environment and check the config; raise ConfigError if wrong.

    `accounts` are the account models of the providers there are (one per `provider` name):
    the registry's, which `car2mqtt.providers.registry.load_config` passes.
    """
    env = os.environ if env is None else env
    schema = _Schema.of(accounts)
    path = config_path(path, env)
    raw = _read_yaml(path)
    sources, lines = _apply_env(raw, env, schema)
    if "store" not in raw and env.get(STATE_DIR_ENV_VAR):
        # systemd's StateDirectory= (and the container image) say where state belongs; a
        # `store` in the file still wins, unlike a CAR2MQTT__STORE override.
        state_dir = env[STATE_DIR_ENV_VAR].split(":")[0]
        raw["store"] = str(Path(state_dir) / DEFAULT_STORE_NAME)
    context = {"base_dir": path.absolute().parent}
    config: Config | None = None
    try:
        config = schema.model.model_validate(raw, context=context)
    except ValidationError as exc:
        labels = _account_labels(raw)
        for error in exc.errors(include_url=False):
            line = _format(error, raw, labels, sources, schema)
            if line not in lines:
                lines.append(line)
    if lines or config is None:
        count = f"{len(lines)} problem{'s' if len(lines) != 1 else ''}"
        header = f"{path}: invalid configuration, {count}:"
        raise ConfigError("\n".join([header, *(f"  {line}" for line in lines)]))
    return config


# --- describing ---------------------------------------------------------------------------------


def secret_text(secret: SecretStr | None, file: Path | None) -> str:
    """Show a secret in a summary line: `***`, with the file it came from."""
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
        f"password {secret_text(mqtt.password, mqtt.password_file)}",
        f"topics: base {mqtt.base_topic}, discovery {mqtt.discovery_prefix} "
        f"({mqtt.discovery_mode} discovery), Home Assistant status {mqtt.ha_status_topic}",
        f"store: {config.store}",
        f"log: {config.log.level}, {config.log.format}",
        f"heartbeat every {config.heartbeat_s} s, VIN {'shown' if config.expose_vin else 'hidden'}",
        _web_text(config.web),
        f"webhooks: receiver {_receiver_text(config.webhook)}, polling again after "
        f"{config.webhook.watchdog_s} s without a delivery, a safety listing every "
        f"{config.webhook.safety_poll_s} s (for accounts with webhook.public_url)",
        _history_text(config),
        *(account.summary() for account in config.accounts),
        *(line for account in config.accounts if (line := _guard_text(account))),
    ]


def _guard_text(account: AccountBase) -> str | None:
    """Say an account's location privacy and API budget, when either is not the default."""
    privacy, budget = account.privacy, account.budget
    said = []
    if privacy.location != "exact" or privacy.cars:
        grid = f" ({privacy.grid_m} m grid)" if privacy.location == "coarse" else ""
        cars = f", {len(privacy.cars)} car(s) their own" if privacy.cars else ""
        said.append(f"location {privacy.location}{grid}{cars}")
    caps = []
    if budget.calls_per_month is not None:
        caps.append(f"{budget.calls_per_month} calls a month")
    if budget.calls_per_vehicle_month is not None:
        caps.append(f"{budget.calls_per_vehicle_month} calls a month per car")
    if caps:
        said.append(f"API budget {' and '.join(caps)}, {budget.reserve_pct} % kept for commands")
    return f"account {account.name}: {'; '.join(said)}" if said else None


def shown_database_url(url: str) -> str:
    """Return a database URL without its login or query (either may carry a password)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


def _history_text(config: Config) -> str:
    history = config.history
    if not history.enabled:
        return "history: off"
    path = history.sqlite_path(config.store)
    if path is not None:
        where = f"SQLite {path}"
    else:
        text = history.url.get_secret_value() if history.url else ""
        where = f"PostgreSQL {shown_database_url(text)}"

    def days(value: int | None) -> str:
        return "forever" if value is None else f"{value} days"

    return (
        f"history: {where}; sessions {days(history.keep_sessions_days)}, trips "
        f"{days(history.keep_trips_days)}, samples {days(history.keep_samples_days)}"
    )


def _web_text(web: WebSettings) -> str:
    """Say where the web UI is and who may use it."""
    if not web.enabled:
        return "web UI: off"
    guards = []
    if web.password is not None:
        guards.append(f"password {secret_text(web.password, web.password_file)}")
    if web.trusted_proxies:
        guards.append(f"trusted proxies {', '.join(web.trusted_proxies)}")
    if not guards:
        guards.append("no login (this machine only)")
    where = f"{web.host}:{web.port}{web.base_path or ''}"
    return f"web UI: http://{where}/, {', '.join(guards)}"


def _receiver_text(webhook: WebhookSettings) -> str:
    """Say where webhook deliveries are received."""
    if webhook.port is None:
        return "on the web UI's server"
    return f"on its own listener {webhook.host}:{webhook.port}"


def _protocol_text(protocol: str) -> str:
    """Say what `mqtt.protocol` means in words."""
    return "5, or 3.1.1 if the broker refuses 5" if protocol == "auto" else protocol
