"""Pure builders of Home Assistant discovery, state and command payloads from the entity table.

Nothing here publishes: every function returns (topic, payload) pairs or JSON-ready dicts, and
the caller serialises them (discovery retained, QoS 1). Full key names are used throughout;
Home Assistant's abbreviations buy nothing on a LAN broker and hide meaning.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal

from car2mqtt.errors import CommandRejected
from car2mqtt.ha.entities import (
    BRIDGE_ENTITIES,
    COMMAND_CAPABILITY,
    CONTROLS,
    DEADLINE_PATTERN,
    HISTORY_SOURCES,
    SETTINGS,
    VEHICLE_ENTITIES,
    EntityDescription,
    HaVersion,
    Setting,
    Source,
    ValueContext,
)
from car2mqtt.models import (
    NOT_HOME,
    Capability,
    CommandResult,
    CommandStatus,
    LocationMode,
    VehicleRef,
    VehicleState,
)
from car2mqtt.mqtt.topics import Topics
from car2mqtt.providers.base import Command, CommandValue

JsonObject = dict[str, Any]

ORIGIN_NAME = "car2mqtt"
BRIDGE_IDENTIFIER = "car2mqtt_bridge"
# Clouds report no accuracy; Home Assistant needs one to match zones, and 10 m is typical GPS.
GPS_ACCURACY_M = 10

_VEHICLE_ROWS: Mapping[str, EntityDescription] = {row.key: row for row in VEHICLE_ENTITIES}


# "device": one config per vehicle (Home Assistant 2024.11 and later); "entity": one per entity.
DiscoveryMode = Literal["device", "entity"]


@dataclass(frozen=True, slots=True)
class _Device:
    """What the rows of one device resolve against."""

    identifier: str
    slug: str
    sources: Mapping[Source, str]
    command_topic: Callable[[str], str]
    bridge_only: list[JsonObject] | None  # the availability of "bridge" rows, if it differs
    root: JsonObject  # device, origin and availability, shared by every component


def slugify(text: str) -> str:
    """Return `text` as an entity-id slug: lower-case ASCII letters, digits and `_`."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = "".join(c if c.isalnum() else "_" for c in ascii_text.lower())
    return "_".join(part for part in slug.split("_") if part)


def on_ha(row: EntityDescription, ha_version: HaVersion | None) -> bool:
    """Whether Home Assistant `ha_version` has `row`'s platform (None: an unknown version)."""
    if row.ha_since is not None and (ha_version is None or ha_version < row.ha_since):
        return False
    return row.ha_before is None or ha_version is None or ha_version < row.ha_before


def applicable_keys(
    state: VehicleState, ha_version: HaVersion | None = None, *, history: bool = False
) -> frozenset[str]:
    """Return the keys of the entities `state` calls for (data reported or capability held).

    `history`: the history recorder runs, so the entities it feeds exist.
    """
    return frozenset(
        row.key
        for row in VEHICLE_ENTITIES
        if row.applies(state)
        and on_ha(row, ha_version)
        and (history or row.state_topic not in HISTORY_SOURCES)
    )


def keys_on_ha(keys: Collection[str], ha_version: HaVersion | None) -> frozenset[str]:
    """Return the `keys` whose platform Home Assistant `ha_version` has."""
    rows = _VEHICLE_ROWS
    return frozenset(k for k in keys if k not in rows or on_ha(rows[k], ha_version))


def _origin(version: str, support_url: str | None) -> JsonObject:
    origin: JsonObject = {"name": ORIGIN_NAME, "sw_version": version}
    if support_url:
        origin["support_url"] = support_url
    return origin


def _vehicle_device(
    state: VehicleState,
    topics: Topics,
    origin_version: str,
    expose_vin: bool,
    support_url: str | None,
    name: str | None,
) -> _Device:
    info, ref = state.info, state.ref
    identifier = f"car2mqtt_{ref.key}"
    name = name or info.name
    device: JsonObject = {
        "identifiers": [identifier],
        "name": name,
        "manufacturer": info.brand or info.vendor.title(),
    }
    if info.model:
        device["model"] = info.model
    if expose_vin and info.vin:
        device["serial_number"] = info.vin
    device["via_device"] = topics.bridge_id
    return _Device(
        identifier=identifier,
        slug=slugify(name) or slugify(ref.key),
        sources={
            "state": topics.state(ref),
            "location": topics.location(ref),
            "command_result": topics.command_result(ref),
            "history": topics.history(ref),
            "bridge_state": topics.bridge_state,
            "bridge_history": topics.bridge_history,
        },
        command_topic=lambda control: topics.command(ref, control),
        bridge_only=[{"topic": topics.bridge_availability}],
        root={
            "device": device,
            "origin": _origin(origin_version, support_url),
            "availability": [
                {"topic": topics.bridge_availability},
                {"topic": topics.availability(ref)},
            ],
            "availability_mode": "all",
        },
    )


def _bridge_device(topics: Topics, version: str, support_url: str | None) -> _Device:
    def no_commands(control: str) -> str:
        msg = f"bridge entities have no controls, got {control!r}"
        raise ValueError(msg)

    # A second bridge (another base topic) gets its own name, so its entity ids differ too.
    name = ORIGIN_NAME if topics.bridge_id == BRIDGE_IDENTIFIER else f"{ORIGIN_NAME} {topics.base}"
    return _Device(
        identifier=topics.bridge_id,
        slug=slugify(name),
        sources={
            "bridge_state": topics.bridge_state,
            "bridge_history": topics.bridge_history,
            "bridge_health": topics.bridge_health,
        },
        command_topic=no_commands,
        bridge_only=None,
        root={
            "device": {
                "identifiers": [topics.bridge_id],
                "name": name,
                "sw_version": version,
            },
            "origin": _origin(version, support_url),
            "availability": [{"topic": topics.bridge_availability}],
        },
    )


def _component(row: EntityDescription, device: _Device) -> JsonObject:
    config: JsonObject = {
        "platform": row.platform,
        "unique_id": f"{device.identifier}_{row.key}",
        # Home Assistant before 2025.10 reads only object_id; from 2026.4 only default_entity_id.
        "default_entity_id": f"{row.platform}.{device.slug}_{row.key}",
        "object_id": f"{device.slug}_{row.key}",
    }
    if row.name is not None:
        config["name"] = row.name
    optional: dict[str, object] = {
        "device_class": row.device_class,
        "state_class": row.state_class,
        "unit_of_measurement": row.unit,
        "entity_category": row.entity_category,
        "icon": row.icon,
        "options": list(row.options) or None,
        "suggested_display_precision": row.precision if row.platform == "sensor" else None,
        "source_type": row.source_type,
    }
    config.update({name: value for name, value in optional.items() if value is not None})
    if not row.enabled_by_default:
        config["enabled_by_default"] = False
    if row.state_topic is not None:
        config["state_topic"] = device.sources[row.state_topic]
        field = row.state_field or row.key
        # A text entity shows what it is given: unknown reads empty, not "None".
        shown = f"value_json.{field} or ''" if row.platform == "text" else f"value_json.{field}"
        config["value_template"] = f"{{{{ {shown} }}}}"
    if row.setting is not None:
        config.update(_setting_config(row.platform, row.setting))
    if row.attributes_topic is not None:
        config["json_attributes_topic"] = device.sources[row.attributes_topic]
    if row.control is not None:
        config["command_topic"] = device.command_topic(row.control)
        config["retain"] = False
    for name, payload in (
        ("payload_on", row.payload_on),
        ("payload_off", row.payload_off),
        ("payload_press", row.payload_press),
    ):
        if payload is not None:
            config[name] = payload
    if row.availability == "bridge" and device.bridge_only is not None:
        config["availability"] = device.bridge_only
    config["qos"] = 1
    return config


def _setting_config(platform: str, setting: Setting) -> JsonObject:
    if platform == "number":
        bounds = {"min": setting.minimum, "max": setting.maximum, "step": setting.step}
        return {"mode": "box", **{k: v for k, v in bounds.items() if v is not None}}
    if platform == "text":
        return {"pattern": DEADLINE_PATTERN, "min": 0, "max": 5}
    return {}


def _components(
    rows: Iterable[EntityDescription], device: _Device, keys: Collection[str]
) -> dict[str, JsonObject]:
    # Table order, not `keys` order, so payloads are stable and diffable.
    return {row.key: _component(row, device) for row in rows if row.key in keys}


def _vehicle_components(
    state: VehicleState, device: _Device, keys: Collection[str]
) -> dict[str, JsonObject]:
    components = _components(VEHICLE_ENTITIES, device, keys)
    tracker = components.get("location")
    if tracker is not None and state.location_mode is LocationMode.ZONE:
        # No coordinates: the tracker's state is the zone's name on the location topic
        # (Home Assistant shows any other payload than these two as the location's name).
        topic = tracker.pop("json_attributes_topic")
        tracker.update(state_topic=topic, payload_home="home", payload_not_home=NOT_HOME)
        tracker.pop("source_type", None)
    return components


def _per_entity(components: Mapping[str, JsonObject], device: _Device) -> dict[str, JsonObject]:
    payloads: dict[str, JsonObject] = {}
    for key, component in components.items():
        # The topic names the platform; a single-entity config leaves it out.
        payload = {name: value for name, value in component.items() if name != "platform"}
        payloads[key] = {**device.root, **payload}
    return payloads


def device_discovery(
    state: VehicleState,
    topics: Topics,
    keys: Collection[str],
    *,
    origin_version: str,
    expose_vin: bool = False,
    support_url: str | None = None,
    name: str | None = None,
) -> tuple[str, JsonObject]:
    """Return the device-discovery topic and payload of a vehicle, with a component per key.

    `name` overrides the cloud's name for the car (the bridge makes names of equal cars unique).
    """
    device = _vehicle_device(state, topics, origin_version, expose_vin, support_url, name)
    components = _vehicle_components(state, device, keys)
    if state.location_mode is LocationMode.OFF:
        # A component of only its platform removes an entity announced before.
        components["location"] = {"platform": "device_tracker"}
    payload = {**device.root, "components": components}
    return topics.device_config(state.ref), payload


def entity_discoveries(
    state: VehicleState,
    topics: Topics,
    keys: Collection[str],
    *,
    origin_version: str,
    expose_vin: bool = False,
    support_url: str | None = None,
    name: str | None = None,
) -> list[tuple[str, JsonObject]]:
    """Return one discovery topic and payload per entity of a vehicle (pre-2024.11 HA)."""
    device = _vehicle_device(state, topics, origin_version, expose_vin, support_url, name)
    components = _vehicle_components(state, device, keys)
    return [
        (topics.entity_config(_VEHICLE_ROWS[key].platform, state.ref, key), payload)
        for key, payload in _per_entity(components, device).items()
    ]


def removal(
    topics: Topics, ref: VehicleRef, keys: Collection[str], mode: DiscoveryMode
) -> list[tuple[str, bytes]]:
    """Return the empty retained payloads that remove a vehicle's entities from HA."""
    if mode == "device":
        return [(topics.device_config(ref), b"")]
    return [
        (topics.entity_config(row.platform, ref, row.key), b"")
        for row in VEHICLE_ENTITIES
        if row.key in keys
    ]


def migration_markers(
    topics: Topics, ref: VehicleRef, keys: Collection[str], to: DiscoveryMode
) -> list[tuple[str, JsonObject]]:
    """Return the markers that hand a vehicle's entities over to discovery mode `to`.

    Publish them, then the new mode's discovery, then `removal` of the old mode's topics:
    Home Assistant keeps the entities' registry entries across the move.
    """
    marker: JsonObject = {"migrate_discovery": True}
    if to == "device":
        return [
            (topics.entity_config(row.platform, ref, row.key), marker)
            for row in VEHICLE_ENTITIES
            if row.key in keys
        ]
    return [(topics.device_config(ref), marker)]


def bridge_discovery(
    topics: Topics,
    version: str,
    mode: DiscoveryMode,
    *,
    support_url: str | None = None,
    history: bool = False,
) -> list[tuple[str, JsonObject]]:
    """Return the discovery topics and payloads of the bridge's own device."""
    device = _bridge_device(topics, version, support_url)
    keys = {row.key for row in BRIDGE_ENTITIES if history or row.state_topic not in HISTORY_SOURCES}
    components = _components(BRIDGE_ENTITIES, device, keys)
    if mode == "device":
        return [(topics.bridge_device_config, {**device.root, "components": components})]
    platforms = {row.key: row.platform for row in BRIDGE_ENTITIES}
    return [
        (topics.bridge_entity_config(platforms[key], key), payload)
        for key, payload in _per_entity(components, device).items()
    ]


def _iso(moment: datetime) -> str:
    # Naive datetimes are taken as UTC: Home Assistant rejects timestamps without a zone.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def _on_off(value: bool) -> str:
    return "ON" if value else "OFF"


def _json_value(value: object, precision: int | None) -> object:
    if value is None:
        return None
    if isinstance(value, bool):
        return _on_off(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return None
        if precision is None:
            return value
        return round(value) if precision == 0 else round(float(value), precision)
    msg = f"cannot publish {value!r} ({type(value).__name__}) as an entity state"
    raise TypeError(msg)


def state_payload(
    state: VehicleState,
    now: datetime,
    *,
    relink_required: bool = False,
    keys: Collection[str] = (),
) -> JsonObject:
    """Return the vehicle's state JSON: every field its entities read, null when unknown.

    `keys` adds the fields of entities published before that no longer apply, so they read
    null (unknown) rather than a missing field.
    """
    ctx = ValueContext(now=now, relink_required=relink_required)
    wanted = applicable_keys(state) | frozenset(keys)
    fields = {
        row.state_field or row.key
        for row in VEHICLE_ENTITIES
        if row.key in wanted and row.state_topic == "state"
    }
    payload: JsonObject = {}
    for row in VEHICLE_ENTITIES:
        if row.key in fields and row.value is not None:
            payload[row.key] = _json_value(row.value(state, ctx), row.precision)
    return payload


def location_payload(state: VehicleState) -> JsonObject | None:
    """Return the device tracker's attributes JSON, or None without a usable fix."""
    fix = state.location
    if fix is None or not (math.isfinite(fix.latitude) and math.isfinite(fix.longitude)):
        return None
    payload: JsonObject = {
        "latitude": fix.latitude,
        "longitude": fix.longitude,
        # A coarse fix says how coarse (half its grid cell's diagonal).
        "gps_accuracy": fix.accuracy_m if fix.accuracy_m is not None else GPS_ACCURACY_M,
    }
    optional: dict[str, object] = {
        "heading": fix.heading_deg,
        "altitude": fix.altitude_m,
        "satellites": fix.satellites,
        "updated_at": _iso(fix.updated_at) if fix.updated_at else None,
    }
    payload.update({name: value for name, value in optional.items() if value is not None})
    return payload


def location_topic_payload(state: VehicleState) -> JsonObject | str | None:
    """Return what the location topic carries: attributes JSON, a zone's name, or None.

    `exact`/`coarse`: the tracker's attributes; `zone`: the zone's name (or `not_home`) as
    the tracker's state; `off`, or no usable fix: None (the publisher clears the topic in `off`).
    """
    if state.location_mode is LocationMode.OFF:
        return None
    if state.location_mode is LocationMode.ZONE:
        return state.zone
    return location_payload(state)


def command_payload(result: CommandResult) -> JsonObject:
    """Return the last-command JSON: its state is `status`, the rest are attributes."""
    payload: JsonObject = {
        "command": result.command,
        "status": result.status.value,
        "at": _iso(result.at),
        "action_id": result.action_id,
        "reason": result.reason,
    }
    if result.value is not None:
        payload["value"] = result.value  # what a setting was set to
    return payload


def command_from_payload(saved: Mapping[str, Any]) -> CommandResult | None:
    """Read back a `command_payload` (as saved in the state file); None if it is not one."""
    try:
        return CommandResult(
            command=str(saved["command"]),
            status=CommandStatus(saved["status"]),
            at=datetime.fromisoformat(str(saved["at"]).replace("Z", "+00:00")),
            action_id=saved.get("action_id"),
            reason=saved.get("reason"),
            value=saved.get("value"),
        )
    except (KeyError, ValueError, TypeError):
        return None


def requested_command(control: str, payload: bytes) -> str | None:
    """Return the name of the command `payload` asks `control` for, valid or not for the car."""
    setting = SETTINGS.get(control)
    if setting is not None:
        return setting.command.value
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return None
    command = CONTROLS.get(control, {}).get(text.strip().upper())
    return command.value if command is not None else None


def parse_command(
    control: str, payload: bytes, capabilities: Collection[Capability]
) -> tuple[Command, CommandValue]:
    """Return the command (and value) an MQTT message asks for; raise CommandRejected if invalid.

    Payloads are matched ignoring case and surrounding whitespace ("on", " ON "), but take no
    synonyms ("true", "1"): Home Assistant sends exactly the payloads discovery declared.
    """
    setting = SETTINGS.get(control)
    accepted = CONTROLS.get(control)
    if accepted is None and setting is None:
        known = ", ".join(sorted({*CONTROLS, *SETTINGS}))
        msg = f"unknown control {control!r}; known controls: {known}"
        raise CommandRejected(msg)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        msg = f"payload for {control!r} is not UTF-8 text"
        raise CommandRejected(msg) from None
    shown = text if len(text) <= 40 else f"{text[:40]}..."
    if setting is not None:
        value = setting_value(setting, text.strip(), f"payload {shown!r} for {control!r}")
        check_capable(setting.command, capabilities)
        return setting.command, value
    assert accepted is not None
    command = accepted.get(text.strip().upper())
    if command is None:
        msg = (
            f"payload {shown!r} is not valid for {control!r}; "
            f"expected one of: {', '.join(accepted)} (case-insensitive)"
        )
        raise CommandRejected(msg)
    check_capable(command, capabilities)
    return command, None


_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d)(?::00(?:\.0+)?)?|24:00")


def setting_value(setting: Setting, text: str, what: str) -> float | str:
    """Return the value `text` sets `setting` to; raise CommandRejected, naming `what`, if bad."""
    if setting.kind == "time":
        # HA's time entity sends "07:30:00"; deadlines are whole minutes ("HH:MM").
        if not _TIME.fullmatch(text):
            msg = f"{what} is not a time of day: expected HH:MM (00:00 to 23:59, or 24:00)"
            raise CommandRejected(msg)
        return text[:5]
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    low = setting.minimum if setting.minimum is not None else -math.inf
    high = setting.maximum if setting.maximum is not None else math.inf
    if not (math.isfinite(number) and low <= number <= high):
        msg = f"{what} is not a number from {_num(low)} to {_num(high)}"
        raise CommandRejected(msg)
    return number


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def check_capable(command: Command, capabilities: Collection[Capability]) -> None:
    """Raise CommandRejected unless a car with `capabilities` can carry out `command`."""
    needed = COMMAND_CAPABILITY[command]
    if needed not in capabilities:
        msg = f"this vehicle cannot {command.value.replace('_', ' ')}: it lacks {needed.value!r}"
        raise CommandRejected(msg)
