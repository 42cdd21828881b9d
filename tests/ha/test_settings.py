"""Controls that take a value: max current, smart charging minimum and deadline, charge now."""

from __future__ import annotations

import re

import pytest

from car2mqtt.errors import CommandRejected
from car2mqtt.ha.discovery import (
    applicable_keys,
    device_discovery,
    parse_command,
    requested_command,
)
from car2mqtt.ha.entities import DEADLINE_PATTERN
from car2mqtt.models import Capability
from car2mqtt.mqtt.topics import Topics
from car2mqtt.providers.base import Command
from tests.ha.cars import enode_car

T = Topics()
EVERYTHING = frozenset(Capability)


def components(ha_version: tuple[int, int] | None = None) -> dict[str, dict[str, object]]:
    state = enode_car()
    keys = applicable_keys(state, ha_version)
    found: dict[str, dict[str, object]] = device_discovery(state, T, keys, origin_version="1")[1][
        "components"
    ]
    return found


@pytest.mark.parametrize(
    ("control", "payload", "expected"),
    [
        ("max_current", b"16", (Command.SET_MAX_CURRENT, 16.0)),
        ("max_current", b" 6.0 ", (Command.SET_MAX_CURRENT, 6.0)),
        ("max_current", b"47.5", (Command.SET_MAX_CURRENT, 47.5)),
        ("min_charge_limit", b"0", (Command.SET_MIN_CHARGE_LIMIT, 0.0)),
        ("min_charge_limit", b"100", (Command.SET_MIN_CHARGE_LIMIT, 100.0)),
        ("charge_deadline", b"07:30:00", (Command.SET_CHARGE_DEADLINE, "07:30")),
        ("charge_deadline", b"23:59", (Command.SET_CHARGE_DEADLINE, "23:59")),
        ("charge_deadline", b"24:00", (Command.SET_CHARGE_DEADLINE, "24:00")),
        ("smart_charging", b"ON", (Command.ENABLE_SMART_CHARGING, None)),
        ("smart_charging", b"off", (Command.DISABLE_SMART_CHARGING, None)),
        ("charge_now", b"START", (Command.CHARGE_NOW, None)),
        ("charge_now", b"END", (Command.END_CHARGE_NOW, None)),
    ],
)
def test_setting_payloads_become_commands_with_values(
    control: str, payload: bytes, expected: tuple[Command, object]
) -> None:
    assert parse_command(control, payload, EVERYTHING) == expected


@pytest.mark.parametrize(
    ("control", "payload", "message"),
    [
        ("max_current", b"5", "not a number from 6 to 48"),
        ("max_current", b"49", "not a number from 6 to 48"),
        ("max_current", b"sixteen", "'sixteen' for 'max_current' is not a number"),
        ("max_current", b"nan", "not a number"),
        ("max_current", b"inf", "not a number"),
        ("max_current", b"", "not a number"),
        ("min_charge_limit", b"-1", "from 0 to 100"),
        ("min_charge_limit", b"101", "from 0 to 100"),
        ("charge_deadline", b"7:30", "expected HH:MM"),
        ("charge_deadline", b"07:30:15", "expected HH:MM"),
        ("charge_deadline", b"25:00", "expected HH:MM"),
        ("charge_deadline", b"noon", "expected HH:MM"),
        ("charge_deadline", b"\xff", "not UTF-8"),
        ("charge_now", b"PRESS", "expected one of: START, END"),
    ],
)
def test_bad_setting_payloads_are_rejected_with_what_is_expected(
    control: str, payload: bytes, message: str
) -> None:
    with pytest.raises(CommandRejected, match=re.escape(message)):
        parse_command(control, payload, EVERYTHING)


@pytest.mark.parametrize(
    ("control", "payload", "lacking"),
    [
        ("max_current", b"16", "set_max_current"),
        ("smart_charging", b"ON", "smart_charging"),
        ("min_charge_limit", b"50", "smart_charging"),
        ("charge_deadline", b"07:00", "smart_charging"),
        ("charge_now", b"START", "smart_charging"),
    ],
)
def test_settings_need_their_capability(control: str, payload: bytes, lacking: str) -> None:
    basic = frozenset({Capability.START_CHARGING, Capability.STOP_CHARGING})
    with pytest.raises(CommandRejected, match=f"lacks '{lacking}'"):
        parse_command(control, payload, basic)


def test_a_rejected_setting_still_names_its_command() -> None:
    assert requested_command("max_current", b"banana") == "set_max_current"
    assert requested_command("charge_deadline", b"") == "set_charge_deadline"
    assert requested_command("charge_now", b"END") == "end_charge_now"


def test_the_max_current_number_declares_its_bounds_and_unit() -> None:
    number = components()["max_current_setting"]
    assert number["platform"] == "number"
    assert (number["min"], number["max"], number["step"], number["mode"]) == (6, 48, 1, "box")
    assert (number["unit_of_measurement"], number["device_class"]) == ("A", "current")
    assert number["command_topic"] == T.command(enode_car().ref, "max_current")
    assert number["value_template"] == "{{ value_json.max_current }}"
    assert number["entity_category"] == "config"
    assert "max_current" not in components()  # the read-only sensor gives way to the number


def test_smart_charging_controls_are_a_switch_a_number_and_two_buttons() -> None:
    found = components()
    assert found["smart_charging"]["platform"] == "switch"
    assert str(found["smart_charging"]["command_topic"]).endswith("/smart_charging/set")
    assert (found["min_charge_limit"]["min"], found["min_charge_limit"]["max"]) == (0, 100)
    assert found["min_charge_limit"]["unit_of_measurement"] == "%"
    now, end = found["charge_now"], found["end_charge_now"]
    assert now["command_topic"] == end["command_topic"]
    assert (now["payload_press"], end["payload_press"]) == ("START", "END")
    assert found["smart_charging_status"]["device_class"] == "enum"
    assert found["smart_charging_start"]["device_class"] == "timestamp"


def test_the_deadline_is_a_time_entity_only_where_home_assistant_has_one() -> None:
    old, new = components(None), components((2026, 4))
    assert "charge_deadline" not in old
    text = old["charge_deadline_text"]
    assert (text["platform"], text["pattern"], text["max"]) == ("text", DEADLINE_PATTERN, 5)
    assert text["value_template"] == "{{ value_json.charge_deadline or '' }}"
    assert "charge_deadline_text" not in new
    assert new["charge_deadline"]["platform"] == "time"
    assert new["charge_deadline"]["command_topic"] == text["command_topic"]
    assert {c["platform"] for c in old.values()}.isdisjoint({"time"})
    assert re.fullmatch(DEADLINE_PATTERN, "07:30")
    assert not re.fullmatch(DEADLINE_PATTERN, "24:30")
    assert re.fullmatch(DEADLINE_PATTERN, "")  # no deadline yet: HA checks its state too


def test_a_car_without_smart_charging_gets_none_of_its_entities() -> None:
    car = enode_car(capabilities=frozenset({Capability.START_CHARGING, Capability.STOP_CHARGING}))
    keys = applicable_keys(car, (2026, 11))
    smart = {"smart_charging", "min_charge_limit", "charge_deadline", "smart_charging_status"}
    assert not keys & (smart | {"charge_now", "end_charge_now", "max_current_setting"})
    assert "max_current" in keys  # read-only, as before
