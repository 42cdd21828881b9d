"""Enode 2024-10-01 wire models: parsed at the edge, tolerant of nulls, new enums and new fields.

Enode declared that adding enum values is not a breaking change (2024-10-01), so every enum is
read as a string and mapped with a fallback; unknown fields are ignored.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from car2mqtt.models import (
    Capability,
    ChargeState,
    CommandStatus,
    Location,
    VehicleInfo,
    VehicleRef,
    VehicleState,
)
from car2mqtt.providers.values import Number


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Information(_Wire):
    """`information`."""

    vin: str | None = None
    brand: str | None = None
    model: str | None = None
    year: int | None = None
    display_name: str | None = Field(None, alias="displayName")


class ChargeStateWire(_Wire):
    """`chargeState`: every field may be null (Enode could not determine it)."""

    battery_level: Number = Field(None, alias="batteryLevel")
    range: Number = None
    is_plugged_in: bool | None = Field(None, alias="isPluggedIn")
    is_charging: bool | None = Field(None, alias="isCharging")
    is_fully_charged: bool | None = Field(None, alias="isFullyCharged")
    battery_capacity: Number = Field(None, alias="batteryCapacity")
    charge_limit: Number = Field(None, alias="chargeLimit")
    charge_rate: Number = Field(None, alias="chargeRate")
    charge_time_remaining: Number = Field(None, alias="chargeTimeRemaining")
    last_updated: datetime | None = Field(None, alias="lastUpdated")
    max_current: Number = Field(None, alias="maxCurrent")
    power_delivery_state: str | None = Field(None, alias="powerDeliveryState")


class LocationWire(_Wire):
    """`location`."""

    longitude: Number = None
    latitude: Number = None
    last_updated: datetime | None = Field(None, alias="lastUpdated")


class OdometerWire(_Wire):
    """`odometer`."""

    distance: Number = None
    last_updated: datetime | None = Field(None, alias="lastUpdated")


class CapabilityWire(_Wire):
    """One capability."""

    is_capable: bool = Field(False, alias="isCapable")
    intervention_ids: list[str] = Field(default_factory=list, alias="interventionIds")


class CapabilitiesWire(_Wire):
    """`capabilities`."""

    location: CapabilityWire = CapabilityWire()
    odometer: CapabilityWire = CapabilityWire()
    start_charging: CapabilityWire = Field(CapabilityWire(), alias="startCharging")
    stop_charging: CapabilityWire = Field(CapabilityWire(), alias="stopCharging")
    charge_state: CapabilityWire = Field(CapabilityWire(), alias="chargeState")
    information: CapabilityWire = CapabilityWire()

    def interventions(self) -> set[str]:
        """Every intervention id blocking any capability."""
        caps = (self.location, self.odometer, self.start_charging, self.stop_charging)
        return {
            i for cap in (*caps, self.charge_state, self.information) for i in cap.intervention_ids
        }


class SmartChargingPolicy(_Wire):
    """`smartChargingPolicy`."""

    is_enabled: bool | None = Field(None, alias="isEnabled")


class Vehicle(_Wire):
    """A Vehicle object, as `GET /vehicles` and friends return it."""

    id: str
    user_id: str | None = Field(None, alias="userId")
    vendor: str = "UNKNOWN"
    last_seen: datetime | None = Field(None, alias="lastSeen")
    is_reachable: bool | None = Field(None, alias="isReachable")
    information: Information = Information()
    charge_state: ChargeStateWire = Field(ChargeStateWire(), alias="chargeState")
    smart_charging_policy: SmartChargingPolicy = Field(
        SmartChargingPolicy(), alias="smartChargingPolicy"
    )
    location: LocationWire = LocationWire()
    odometer: OdometerWire = OdometerWire()
    capabilities: CapabilitiesWire = CapabilitiesWire()

    @property
    def needs_relink(self) -> bool:
        """Whether interventions block the vehicle (Enode's sign of invalid credentials)."""
        return bool(self.capabilities.interventions())

    def to_state(self, account: str) -> VehicleState:
        """Map onto the provider-neutral domain model."""
        info = self.information
        caps = self.capabilities
        capabilities = {Capability.REFRESH}
        if caps.start_charging.is_capable:
            capabilities.add(Capability.START_CHARGING)
        if caps.stop_charging.is_capable:
            capabilities.add(Capability.STOP_CHARGING)
        if caps.location.is_capable:
            capabilities.add(Capability.LOCATION)
        if caps.odometer.is_capable:
            capabilities.add(Capability.ODOMETER)
        charge = self.charge_state
        loc = self.location
        location = None
        if loc.latitude is not None and loc.longitude is not None:
            location = Location(loc.latitude, loc.longitude, loc.last_updated)
        return VehicleState(
            info=VehicleInfo(
                ref=VehicleRef("enode", account, self.id),
                vendor=self.vendor,
                brand=info.brand,
                model=info.model,
                year=info.year,
                vin=info.vin,
                display_name=info.display_name,
            ),
            capabilities=frozenset(capabilities),
            last_seen=self.last_seen,
            reachable=self.is_reachable,
            battery_pct=charge.battery_level,
            range_km=charge.range,
            charging=charge.is_charging,
            plugged_in=charge.is_plugged_in,
            charge_state=POWER_DELIVERY.get(charge.power_delivery_state or "", ChargeState.UNKNOWN),
            charge_rate_kw=charge.charge_rate,
            charge_time_remaining_min=charge.charge_time_remaining,
            charge_limit_pct=charge.charge_limit,
            battery_capacity_kwh=charge.battery_capacity,
            max_current_a=charge.max_current,
            charge_updated_at=charge.last_updated,
            odometer_km=self.odometer.distance,
            odometer_updated_at=self.odometer.last_updated,
            location=location,
        )


POWER_DELIVERY: dict[str, ChargeState] = {
    "UNKNOWN": ChargeState.UNKNOWN,
    "UNPLUGGED": ChargeState.UNPLUGGED,
    "PLUGGED_IN:INITIALIZING": ChargeState.INITIALIZING,
    "PLUGGED_IN:CHARGING": ChargeState.CHARGING,
    "PLUGGED_IN:STOPPED": ChargeState.STOPPED,
    "PLUGGED_IN:COMPLETE": ChargeState.COMPLETE,
    "PLUGGED_IN:NO_POWER": ChargeState.NO_POWER,
    "PLUGGED_IN:FAULT": ChargeState.FAULT,
    "PLUGGED_IN:DISCHARGING": ChargeState.DISCHARGING,
}


class Pagination(_Wire):
    """List cursors."""

    after: str | None = None
    before: str | None = None


class VehiclePage(_Wire):
    """A page of vehicles."""

    data: list[Vehicle]
    pagination: Pagination = Pagination()


class FailureReason(_Wire):
    """Why an action did not succeed."""

    type: str = "UNKNOWN"
    detail: str | None = None


_ACTION_STATES = {
    "PENDING": CommandStatus.PENDING,
    "CONFIRMED": CommandStatus.CONFIRMED,
    "FAILED": CommandStatus.FAILED,
    "CANCELLED": CommandStatus.CANCELLED,
}


class Action(_Wire):
    """A charging action."""

    id: str
    state: str = "PENDING"
    kind: str | None = None
    failure_reason: FailureReason | None = Field(None, alias="failureReason")

    def outcome(self) -> tuple[CommandStatus, str | None]:
        """Return where the action is, and why it failed ("type: detail") when it did."""
        status = _ACTION_STATES.get(self.state, CommandStatus.PENDING)
        failure = self.failure_reason
        if failure is None:
            return status, None
        return status, f"{failure.type}: {failure.detail}" if failure.detail else failure.type


class LinkResponse(_Wire):
    """`POST /users/{userId}/link`."""

    link_url: str = Field(alias="linkUrl")
    link_token: str | None = Field(None, alias="linkToken")


class LinkedVendor(_Wire):
    """One vendor account a user linked."""

    vendor: str
    vendor_type: str | None = Field(None, alias="vendorType")
    is_valid: bool = Field(True, alias="isValid")


class User(_Wire):
    """`GET /users/{userId}`."""

    id: str
    linked_vendors: list[LinkedVendor] = Field(default_factory=list, alias="linkedVendors")


class Problem(_Wire):
    """An RFC 7807 problem."""

    type: str | None = None
    title: str | None = None
    detail: str | None = None


class WebhookWire(_Wire):
    """A Webhook object (`POST /webhooks` and friends)."""

    id: str
    url: str = ""
    events: list[str] = Field(default_factory=list)
    is_active: bool = Field(True, alias="isActive")
    last_success: datetime | None = Field(None, alias="lastSuccess")
    api_version: str | None = Field(None, alias="apiVersion")


class WebhookPage(_Wire):
    """`GET /webhooks`."""

    data: list[WebhookWire] = Field(default_factory=list)
    pagination: Pagination = Pagination()


class WebhookTestWire(_Wire):
    """`POST /webhooks/{id}/test`."""

    status: str = "FAILURE"
    description: str | None = None


class EventUser(_Wire):
    """The `user` of a webhook event."""

    id: str


class WebhookEvent(_Wire):
    """One event of a webhook delivery: every field but `event` may be missing."""

    event: str
    created_at: datetime | None = Field(None, alias="createdAt")
    user: EventUser | None = None
    vehicle: Vehicle | None = None
    vendor_action: Action | None = Field(None, alias="vendorAction")
    vendor: str | None = None
