"""The add-on's files: the linter's schema and rules, versions in step, labels for every option."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import jsonschema
import yaml

import car2mqtt

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "ha-addon" / "car2mqtt"
# The add-on linter's schema (frenck/action-addon-linter v2.21, MIT), read from the reference
# material and never copied into the repository.
LINTER_SCHEMA = ROOT.parent / "shared" / "tools" / "ha-addon" / "config.schema.json"
DEPRECATED_ARCH = {"armhf", "armv7", "i386"}
RENAMED_MAPS = {"config"}  # -> homeassistant_config


def config() -> dict[str, Any]:
    """The add-on's config.yaml."""
    document: dict[str, Any] = yaml.safe_load((ADDON / "config.yaml").read_text())
    return document


def lint(document: dict[str, Any]) -> list[str]:
    """What the add-on linter says about `document`, as far as its schema and rules go."""
    schema = json.loads(LINTER_SCHEMA.read_text())
    problems = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(document)]
    for key, value in document.items():
        default = schema["properties"].get(key, {}).get("default", object())
        if value == default:
            problems.append(f"'{key}' should be removed, it uses a default value")
    if "watchdog" in document:
        problems.append("'watchdog' is deprecated, use a HEALTHCHECK")
    if "webui" in document and document.get("ingress"):
        problems.append("'webui' should be removed, ingress is used")
    problems += [f"arch {a} is deprecated" for a in DEPRECATED_ARCH & set(document["arch"])]
    for entry in document.get("map", []):
        kind = entry["type"] if isinstance(entry, dict) else entry.split(":")[0]
        if kind in RENAMED_MAPS:
            problems.append(f"map {kind} is deprecated")
    return problems


def test_config_yaml_passes_the_linters_schema_and_rules() -> None:
    assert lint(config()) == []


def test_the_lint_catches_what_the_linter_refuses() -> None:
    # The check itself is checked: each of these the real linter refused (tested by hand).
    for change in ({"init": True}, {"ingress_port": 8099}, {"startup": "application"}):
        assert any("default value" in p for p in lint({**config(), **change})), change
    assert lint({**config(), "arch": ["armv7", "amd64"]}) == ["arch armv7 is deprecated"]
    assert lint({**config(), "map": ["app_config:rw"]})  # linter v2.21 knows only the old names
    assert lint({**config(), "watchdog": "http://[HOST]:[PORT:8099]/healthz"})


def test_the_add_on_follows_todays_conventions() -> None:
    document = config()
    assert document["init"] is False  # the base images run s6-overlay v3
    assert document["ingress"] is True
    assert document["services"] == ["mqtt:need"]
    assert document["map"] == ["addon_config:rw"]
    assert set(document["arch"]) == {"aarch64", "amd64"}
    schema = document["schema"]["accounts"][0]
    assert schema["client_secret"] == "password"


def test_every_version_is_the_packages() -> None:
    assert config()["version"] == car2mqtt.__version__
    dockerfile = (ADDON / "Dockerfile").read_text()
    assert f"ARG BUILD_VERSION={car2mqtt.__version__}\n" in dockerfile
    assert f"ARG VERSION={car2mqtt.__version__}\n" in (ROOT / "Containerfile").read_text()
    assert f"## {car2mqtt.__version__}" in (ADDON / "CHANGELOG.md").read_text()
    assert f"## {car2mqtt.__version__} (" in (ROOT / "CHANGELOG.md").read_text()


def test_every_option_has_a_label_and_a_description() -> None:
    labels = yaml.safe_load((ADDON / "translations" / "en.yaml").read_text())["configuration"]
    assert set(labels) == set(config()["schema"])
    for key, text in labels.items():
        assert text["name"], key
        assert len(text["description"]) > 20, key


def test_the_docs_name_every_option() -> None:
    docs = (ADDON / "DOCS.md").read_text()
    schema = config()["schema"]
    for option in set(schema) - {"accounts"}:
        assert f"`{option}`" in docs, option
    for field in schema["accounts"][0]:
        assert f"`accounts[].{field}`" in docs or f"`{field}`" in docs, field


def test_the_repository_and_the_pictures() -> None:
    repository = yaml.safe_load((ROOT / "repository.yaml").read_text())
    assert {"name", "url", "maintainer"} <= set(repository)
    for name, size in (("icon.png", (128, 128)), ("logo.png", (250, 100))):
        head = (ADDON / name).read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n", name
        assert struct.unpack(">II", head[16:24]) == size, name
