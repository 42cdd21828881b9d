"""The MQTT topic layout: exact strings, command topics parsed back, discovery ids HA accepts."""

from __future__ import annotations

import re

import pytest

from car2mqtt.errors import ConfigError
from car2mqtt.ha.entities import CONTROLS, VEHICLE_ENTITIES
from car2mqtt.models import VehicleRef, safe_id
from car2mqtt.mqtt.topics import Topics

REF = VehicleRef("enode", "home", "4b6e1f0c-9f3a")
ODD_REF = VehicleRef("xee", "family", "car/1+#x y")
# Home Assistant's own discovery topic pattern (homeassistant/components/mqtt/discovery.py).
HA_DISCOVERY_TOPIC = re.compile(
    r"(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?(?P<object_id>[a-zA-Z0-9_-]+)/config"
)


def matches(subscription: str, topic: str) -> bool:
    """Whether an MQTT subscription with `+` wildcards matches `topic`."""
    wanted, got = subscription.split("/"), topic.split("/")
    return len(wanted) == len(got) and all(w in ("+", g) for w, g in zip(wanted, got, strict=True))


def test_vehicle_topics() -> None:
    t = Topics()
    root = "car2mqtt/enode/4b6e1f0c-9f3a"
    assert t.vehicle_root(REF) == root
    assert t.availability(REF) == f"{root}/availability"
    assert t.state(REF) == f"{root}/state"
    assert t.location(REF) == f"{root}/location"
    assert t.command_result(REF) == f"{root}/command"
    assert t.error(REF) == f"{root}/error"
    assert t.command(REF, "charging") == f"{root}/charging/set"


def test_bridge_and_home_assistant_topics() -> None:
    t = Topics(base="cars", discovery_prefix="ha")
    assert t.bridge_availability == "cars/bridge/availability"
    assert t.bridge_state == "cars/bridge/state"
    assert t.command_subscription == "cars/+/+/+/set"
    assert t.ha_status == "ha/status"
    assert t.device_config(REF) == "ha/device/car2mqtt_enode_4b6e1f0c-9f3a/config"
    assert t.entity_config("sensor", REF, "battery") == (
        "ha/sensor/car2mqtt_enode_4b6e1f0c-9f3a/battery/config"
    )
    # Not the default base: this bridge is a device of its own.
    assert t.bridge_device_config == "ha/device/car2mqtt_bridge_cars/config"
    assert t.bridge_entity_config("sensor", "version") == (
        "ha/sensor/car2mqtt_bridge_cars/version/config"
    )


def test_vehicle_ids_are_made_topic_safe() -> None:
    t = Topics()
    assert t.vehicle_root(ODD_REF) == "car2mqtt/xee/car_1__x_y"
    assert matches(t.command_subscription, t.command(ODD_REF, "refresh"))
    assert t.parse_command_topic(t.command(ODD_REF, "refresh")) == ("xee", "car_1__x_y", "refresh")


@pytest.mark.parametrize("base", ["car2mqtt", "home/cars"])
@pytest.mark.parametrize("control", sorted(CONTROLS))
def test_command_topics_round_trip(base: str, control: str) -> None:
    t = Topics(base=base)
    topic = t.command(REF, control)
    assert matches(t.command_subscription, topic)
    assert t.parse_command_topic(topic) == ("enode", "4b6e1f0c-9f3a", control)


@pytest.mark.parametrize("ref", [REF, ODD_REF])
def test_a_parsed_command_topic_leads_back_to_the_ref_key(ref: VehicleRef) -> None:
    parsed = Topics().parse_command_topic(Topics().command(ref, "charging"))
    assert parsed is not None
    provider, vehicle, _ = parsed
    assert (provider, vehicle) == (ref.provider, safe_id(ref.vehicle_id))
    assert f"{provider}_{vehicle}" == ref.key


@pytest.mark.parametrize(
    "topic",
    [
        "car2mqtt/enode/4b6e1f0c-9f3a/state",
        "car2mqtt/bridge/availability",
        "car2mqtt/enode/4b6e1f0c-9f3a/charging/get",
        "car2mqtt/enode/4b6e1f0c-9f3a/charging/set/extra",
        "car2mqtt/enode//charging/set",
        "car2mqtt/enode/+/charging/set",
        "other/enode/4b6e1f0c-9f3a/charging/set",
        "car2mqttx/enode/4b6e1f0c-9f3a/charging/set",
        "homeassistant/status",
    ],
)
def test_other_topics_are_not_commands(topic: str) -> None:
    assert Topics().parse_command_topic(topic) is None


@pytest.mark.parametrize("ref", [REF, ODD_REF])
def test_discovery_topics_match_home_assistant_pattern(ref: VehicleRef) -> None:
    t = Topics()
    topics = [t.device_config(ref), t.bridge_device_config]
    topics += [t.entity_config(row.platform, ref, row.key) for row in VEHICLE_ENTITIES]
    for topic in topics:
        prefix, _, rest = topic.partition("/")
        assert prefix == "homeassistant"
        assert HA_DISCOVERY_TOPIC.fullmatch(rest), topic


@pytest.mark.parametrize(
    ("base", "prefix"),
    [("", "homeassistant"), ("cars/", "homeassistant"), ("car#", "homeassistant"), ("c", "h+")],
)
def test_unusable_bases_are_config_errors(base: str, prefix: str) -> None:
    with pytest.raises(ConfigError, match="MQTT"):
        Topics(base=base, discovery_prefix=prefix)


def test_the_bridge_device_id_follows_a_non_default_base_topic() -> None:
    assert Topics().bridge_id == "car2mqtt_bridge"  # what every existing install has
    garage = Topics(base="home/garage")
    assert garage.bridge_id == "car2mqtt_bridge_home_garage"
    assert garage.bridge_device_config == "homeassistant/device/car2mqtt_bridge_home_garage/config"


def test_a_discovery_topic_names_its_vehicle_by_whole_segments() -> None:
    t = Topics()
    v1, v10 = VehicleRef("enode", "a", "v1"), VehicleRef("enode", "a", "v10")
    assert t.config_vehicle_key(t.device_config(v1)) == v1.key
    assert t.config_vehicle_key(t.device_config(v10)) == v10.key
    assert t.config_vehicle_key(t.entity_config("sensor", v10, "battery")) == v10.key
    # A prefix of another car's id is a different car.
    assert t.config_vehicle_key(t.device_config(v10)) != v1.key
    assert t.config_vehicle_key("homeassistant/device/other_thing/config") is None
    assert t.config_vehicle_key("elsewhere/device/car2mqtt_enode_v1/config") is None
    assert t.config_vehicle_key(t.state(v1)) is None


def test_a_command_error_topic_lives_with_the_vehicle() -> None:
    t = Topics()
    ref = VehicleRef("enode", "a", "v1")
    assert t.command_error(ref.provider, safe_id(ref.vehicle_id)) == t.error(ref)
