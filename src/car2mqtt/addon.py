"""The Home Assistant add-on's entrypoint: options and the Supervisor's broker become a config.

Then `car2mqtt run` takes over the process. Run as `python -m car2mqtt.addon` inside the add-on's
container. Every problem a user can cause or fix (an option, a missing Mosquitto add-on, a
Supervisor that does not answer) ends it with one line in the add-on's log tab and exit code 1,
never a traceback.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from car2mqtt.errors import Car2MqttError
from car2mqtt.files import write_private
from car2mqtt.providers.registry import load_config

OPTIONS_FILE = Path("/data/options.json")
CONFIG_FILE = Path("/data/car2mqtt.yaml")
STORE_FILE = Path("/data/car2mqtt.db")
EXTRA_FILE = Path("/config/car2mqtt.yaml")  # addon_config: the user's own advanced settings
SUPERVISOR_URL = "http://supervisor"
# The Supervisor's ingress proxy: the only client the add-on's web UI answers.
INGRESS_PROXY = "172.30.32.2"
INGRESS_PORT = 8099
# What the add-on decides and a user's extra file cannot change: where the state and the web UI
# are, and which broker (the rest of `mqtt`, such as base_topic or ca_file, is the user's).
OWNED = ("store", "web")
BROKER_KEYS = ("url", "username", "password", "password_file")


class AddonError(Car2MqttError):
    """The add-on cannot start; the message says what to change."""


class AddonOptions(BaseModel):
    """The add-on's Configuration tab, as the Supervisor writes it to /data/options.json."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    accounts: list[dict[str, Any]] = Field(default_factory=list)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    poll_interval_s: int | None = None


class MqttService(BaseModel):
    """The broker the Supervisor announces (the Mosquitto add-on's, usually)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    host: str = Field(min_length=1)
    port: int = Field(gt=0, lt=65536)
    ssl: bool = False
    username: str | None = None
    password: str | None = None
    protocol: str | None = None


def read_options(path: Path = OPTIONS_FILE) -> AddonOptions:
    """Read and check the add-on's options."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"{path} is missing: is this running as a Home Assistant add-on?"
        raise AddonError(msg) from None
    except (OSError, ValueError) as exc:
        msg = f"cannot read the add-on options in {path}: {exc}"
        raise AddonError(msg) from None
    try:
        return AddonOptions.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "options"
        msg = f"add-on option {where}: {first['msg']}"
        raise AddonError(msg) from None


def fetch_mqtt(token: str | None, client: httpx.Client) -> MqttService:
    """Ask the Supervisor for the MQTT service (`GET /services/mqtt`)."""
    if not token:
        msg = "SUPERVISOR_TOKEN is not set: the Supervisor starts the add-on with it"
        raise AddonError(msg)
    try:
        answer = client.get("/services/mqtt", headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        msg = f"the Supervisor did not answer ({type(exc).__name__}); try restarting the add-on"
        raise AddonError(msg) from None
    try:
        body = answer.json()
    except ValueError:
        body = {}
    said = body.get("message") if isinstance(body, dict) else None
    if answer.status_code in (400, 404) or (answer.is_success and not body.get("data")):
        msg = (
            "no MQTT broker: install and start the Mosquitto broker add-on (Settings > Add-ons), "
            "then restart this add-on"
        )
        raise AddonError(msg + (f" (the Supervisor said: {said})" if said else ""))
    if not answer.is_success or body.get("result") != "ok":
        msg = f"the Supervisor refused the MQTT service: HTTP {answer.status_code}"
        raise AddonError(msg + (f", {said}" if said else ""))
    try:
        return MqttService.model_validate(body["data"])
    except ValidationError as exc:
        first = exc.errors()[0]
        msg = f"the Supervisor's MQTT service makes no sense: {first['loc'][0]} {first['msg']}"
        raise AddonError(msg) from None


def fetch_ha_version(token: str, client: httpx.Client) -> str | None:
    """Ask the Supervisor which Home Assistant runs (`GET /core/info`); None if it won't say."""
    # Only decides which entity platforms are announced: without an answer the add-on runs
    # with the platforms every Home Assistant has.
    try:
        answer = client.get("/core/info", headers={"Authorization": f"Bearer {token}"})
        body = answer.json()
    except (httpx.HTTPError, ValueError):
        return None
    data = body.get("data") if isinstance(body, dict) else None
    version = data.get("version") if isinstance(data, dict) else None
    if not answer.is_success or not isinstance(version, str):
        return None
    return version if re.fullmatch(r"20\d\d\.\d{1,2}(\.\d+)?", version) else None


def read_extra(path: Path = EXTRA_FILE) -> dict[str, Any]:
    """Return the user's own settings in the add-on's config folder, if any."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, yaml.YAMLError) as exc:
        msg = f"cannot read {path}: {exc}"
        raise AddonError(msg) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        msg = f"{path} must hold settings (key: value), not a {type(document).__name__}"
        raise AddonError(msg)
    return document


def configuration(
    options: AddonOptions,
    mqtt: MqttService,
    extra: Mapping[str, Any] | None = None,
    *,
    ingress_port: int = INGRESS_PORT,
    store: Path = STORE_FILE,
    ha_version: str | None = None,
) -> dict[str, Any]:
    """Return the car2mqtt configuration the add-on runs with."""
    document = {k: v for k, v in (extra or {}).items() if k not in OWNED}
    scheme = "mqtts" if mqtt.ssl else "mqtt"
    broker = {k: v for k, v in (document.get("mqtt") or {}).items() if k not in BROKER_KEYS}
    broker["url"] = f"{scheme}://{mqtt.host}:{mqtt.port}"
    if mqtt.username:
        broker["username"] = mqtt.username
    if mqtt.password:
        broker["password"] = mqtt.password
    if ha_version is not None:
        broker.setdefault("ha_version", ha_version)  # the user's own setting wins
    document["mqtt"] = broker
    document["store"] = str(store)
    document["web"] = {
        "host": "0.0.0.0",  # noqa: S104 - inside the add-on's container; only ingress is trusted
        "port": ingress_port,
        "trusted_proxies": [INGRESS_PROXY],
    }
    document["log"] = {**document.get("log", {}), "level": options.log_level}
    accounts = [dict(a) for a in document.get("accounts") or []]
    for account in options.accounts:
        # The Supervisor leaves optional fields out, or empty; car2mqtt wants them absent.
        given = {k: v for k, v in account.items() if v not in (None, "")}
        if options.poll_interval_s is not None:
            given.setdefault("poll_interval_s", options.poll_interval_s)
        accounts.append(given)
    if not accounts:
        msg = (
            "no accounts yet: add one under accounts on the add-on's Configuration tab "
            "(its provider, client id and secret), then start it again"
        )
        raise AddonError(msg)
    document["accounts"] = accounts
    return document


def prepare(
    *,
    options_file: Path = OPTIONS_FILE,
    config_file: Path = CONFIG_FILE,
    extra_file: Path = EXTRA_FILE,
    supervisor_url: str = SUPERVISOR_URL,
    env: Mapping[str, str] | None = None,
) -> Path:
    """Write the configuration from the options and the Supervisor; return its path."""
    env = os.environ if env is None else env
    options = read_options(options_file)
    token = env.get("SUPERVISOR_TOKEN")
    with httpx.Client(base_url=supervisor_url, timeout=10) as client:
        mqtt = fetch_mqtt(token, client)
        ha_version = fetch_ha_version(token or "", client)
    port = int(env.get("INGRESS_PORT") or INGRESS_PORT)
    extra = read_extra(extra_file)
    document = configuration(options, mqtt, extra, ingress_port=port, ha_version=ha_version)
    # It holds the broker's password and the clouds' secrets: 0600, written atomically.
    write_private(config_file, yaml.safe_dump(document, sort_keys=False))
    return config_file


def one_line(message: str) -> str:
    """Fold a configuration error's list of problems into the one line the log tab shows."""
    header, *problems = message.splitlines()
    if not problems:
        return header
    return "invalid configuration: " + "; ".join(problem.strip() for problem in problems)


def main() -> None:
    """Prepare the configuration, check it, and become `car2mqtt run`."""
    try:
        path = prepare()
        load_config(path, env={})  # a bad account shows here, before anything starts
    except Car2MqttError as exc:
        print(f"car2mqtt add-on: {one_line(str(exc))}", file=sys.stderr, flush=True)
        sys.exit(1)
    print(f"car2mqtt add-on: configuration written to {path}; starting", flush=True)
    os.execv(sys.executable, [sys.executable, "-m", "car2mqtt", "run", "--config", str(path)])  # noqa: S606


if __name__ == "__main__":
    main()
