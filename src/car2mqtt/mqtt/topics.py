"""The MQTT topic layout of car2mqtt: pure string builders, one place for every topic.

```
<base>/bridge/availability                        retained online|offline (the will)
<base>/bridge/state                               retained JSON for the bridge device
<base>/bridge/health                              retained JSON: uptime, memory, counters
<base>/bridge/request/health                      any payload: publish the health now
<base>/<provider>/<vehicle>/availability          retained online|offline
<base>/<provider>/<vehicle>/state                 retained JSON, one field per entity
<base>/<provider>/<vehicle>/location              retained JSON for the device tracker
<base>/<provider>/<vehicle>/command               JSON: what became of the last command
<base>/<provider>/<vehicle>/error                 the last error, as text
<base>/<provider>/<vehicle>/<control>/set         commands in (never retained)
<prefix>/device/car2mqtt_<key>/config             device discovery
<prefix>/<platform>/car2mqtt_<key>/<entity>/config    per-entity discovery
```
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from car2mqtt.errors import ConfigError
from car2mqtt.models import VehicleRef, safe_id

_FORBIDDEN = ("+", "#", "\0")


def default_ha_status(discovery_prefix: str, explicit: str | None = None) -> str:
    """Return Home Assistant's birth topic: `explicit`, else `<discovery_prefix>/status`."""
    return explicit or f"{discovery_prefix}/status"


@dataclass(frozen=True)
class Topics:
    """Every topic the bridge publishes or subscribes to, under one base and one prefix."""

    base: str = "car2mqtt"
    discovery_prefix: str = "homeassistant"
    # Home Assistant lets users move its birth topic; None means <discovery_prefix>/status.
    ha_status_topic: str | None = None

    def __post_init__(self) -> None:
        for name, value in (("base", self.base), ("discovery_prefix", self.discovery_prefix)):
            if not value or value.endswith("/") or any(c in value for c in _FORBIDDEN):
                msg = (
                    f"MQTT {name} {value!r} is not usable: it must be non-empty, "
                    "must not end with '/' and must not contain '+', '#' or NUL"
                )
                raise ConfigError(msg)

    @property
    def bridge_id(self) -> str:
        """The bridge device's id: `car2mqtt_bridge`, or one per base topic for a second bridge.

        Two bridges on one broker (say, one per household) under different base topics must
        not share a device, or each would overwrite the other's discovery.
        """
        default = "car2mqtt"
        return (
            f"{default}_bridge"
            if self.base == default
            else f"{default}_bridge_{safe_id(self.base)}"
        )

    @property
    def bridge_availability(self) -> str:
        """The bridge's retained online/offline topic, also its last will."""
        return f"{self.base}/bridge/availability"

    @property
    def bridge_state(self) -> str:
        """The bridge device's JSON state."""
        return f"{self.base}/bridge/state"

    @property
    def bridge_health(self) -> str:
        """The bridge's JSON health: uptime, memory, CPU, MQTT and per-account counters."""
        return f"{self.base}/bridge/health"

    @property
    def bridge_health_request(self) -> str:
        """Where a message (never a retained one) asks for the health at once."""
        return f"{self.base}/bridge/request/health"

    def vehicle_root(self, ref: VehicleRef) -> str:
        """Return the topic every topic of `ref` lives under."""
        return f"{self.base}/{ref.provider}/{safe_id(ref.vehicle_id)}"

    def availability(self, ref: VehicleRef) -> str:
        """Return the vehicle's retained online/offline topic."""
        return f"{self.vehicle_root(ref)}/availability"

    def state(self, ref: VehicleRef) -> str:
        """Return the vehicle's JSON state topic."""
        return f"{self.vehicle_root(ref)}/state"

    def location(self, ref: VehicleRef) -> str:
        """Return the vehicle's JSON location topic (device tracker attributes)."""
        return f"{self.vehicle_root(ref)}/location"

    def command_result(self, ref: VehicleRef) -> str:
        """Return the topic that reports what became of the vehicle's last command."""
        return f"{self.vehicle_root(ref)}/command"

    def history(self, ref: VehicleRef) -> str:
        """Return the vehicle's JSON history topic (energy charged, last session and trip)."""
        return f"{self.vehicle_root(ref)}/history"

    @property
    def bridge_history(self) -> str:
        """The history recorder's JSON state (its queue and what it dropped)."""
        return f"{self.base}/bridge/history"

    def error(self, ref: VehicleRef) -> str:
        """Return the topic of the vehicle's last error."""
        return f"{self.vehicle_root(ref)}/error"

    def command_error(self, provider: str, vehicle: str) -> str:
        """Return the error topic for a command addressed as `<provider>/<vehicle>` in a topic."""
        return f"{self.base}/{provider}/{vehicle}/error"

    def vehicle_topics(self, ref: VehicleRef) -> list[str]:
        """Return every retained non-discovery topic of `ref`: what removing the car clears."""
        return [
            self.state(ref),
            self.availability(ref),
            self.location(ref),
            self.command_result(ref),
            self.history(ref),
        ]

    def command(self, ref: VehicleRef, control: str) -> str:
        """Return the topic Home Assistant sends `control` commands for `ref` to."""
        return f"{self.vehicle_root(ref)}/{control}/set"

    @property
    def command_subscription(self) -> str:
        """The wildcard subscription that receives every vehicle's commands."""
        return f"{self.base}/+/+/+/set"

    def parse_command_topic(self, topic: str) -> tuple[str, str, str] | None:
        """Return (provider, vehicle key, control) of a command topic, or None if not one.

        The vehicle key is the topic's segment, `safe_id(ref.vehicle_id)`; the vehicle's
        `ref.key` is `f"{provider}_{vehicle key}"`.
        """
        prefix = f"{self.base}/"
        if not topic.startswith(prefix):
            return None
        parts = topic[len(prefix) :].split("/")
        if len(parts) != 4 or parts[3] != "set":
            return None
        provider, vehicle, control = parts[:3]
        if not (provider and vehicle and control) or any(c in topic for c in _FORBIDDEN):
            return None
        return provider, vehicle, control

    @property
    def ha_status(self) -> str:
        """Where Home Assistant announces itself (birth `online`, will `offline`)."""
        return default_ha_status(self.discovery_prefix, self.ha_status_topic)

    @property
    def everything(self) -> str:
        """The subscription that sees every topic under the base (what `mqtt watch` shows)."""
        return f"{self.base}/#"

    def device_config(self, ref: VehicleRef) -> str:
        """Return the device-discovery topic of `ref`."""
        return f"{self.discovery_prefix}/device/car2mqtt_{ref.key}/config"

    def entity_config(self, platform: str, ref: VehicleRef, key: str) -> str:
        """Return the per-entity discovery topic of entity `key` of `ref`."""
        return f"{self.discovery_prefix}/{platform}/car2mqtt_{ref.key}/{key}/config"

    def config_vehicle_key(self, topic: str) -> str | None:
        """Return the vehicle key a discovery topic of ours announces, or None.

        Whole segments are compared: `.../car2mqtt_acme_v1/...` belongs to `acme_v1` only,
        never to `acme_v10`.
        """
        prefix = f"{self.discovery_prefix}/"
        if not topic.startswith(prefix) or not topic.endswith("/config"):
            return None
        parts = topic[len(prefix) :].split("/")
        # <platform>/car2mqtt_<key>/config, or <platform>/car2mqtt_<key>/<entity>/config
        if len(parts) not in (3, 4) or not parts[1].startswith("car2mqtt_"):
            return None
        return parts[1].removeprefix("car2mqtt_") or None

    def configs_by_vehicle(self, topics: Iterable[str]) -> dict[str, list[str]]:
        """Group discovery topics of ours by the vehicle key each announces (others dropped)."""
        found: dict[str, list[str]] = {}
        for topic in topics:
            key = self.config_vehicle_key(topic)
            if key is not None:
                found.setdefault(key, []).append(topic)
        return found

    @property
    def bridge_device_config(self) -> str:
        """The device-discovery topic of the bridge itself."""
        return f"{self.discovery_prefix}/device/{self.bridge_id}/config"

    def bridge_entity_config(self, platform: str, key: str) -> str:
        """Return the per-entity discovery topic of the bridge's entity `key`."""
        return f"{self.discovery_prefix}/{platform}/{self.bridge_id}/{key}/config"
