"""Enode 2024-10-01 wire models: parsed at the edge, tolerant of nulls, new enums and new fields.

Enode declared that adding enum values is not a breaking change (2024-10-01), so every enum is
read as a string and mapped with a fallback; unknown fields are ignored.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

from car2mqtt.history.model import CloudSession
from car2mqtt.models import (
    Capability,
    ChargeState,
    CommandStatus,
    Location,
    SmartCharging,
    SmartChargingState,
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
    set_max_current: CapabilityWire = Field(CapabilityWire(), alias="setMaxCurrent")
    smart_charging: CapabilityWire = Field(CapabilityWire(), alias="smartCharging")

    def interventions(self) -> set[str]:
        """Every intervention id blocking any capability."""
        caps = (self.location, self.odometer, self.start_charging, self.stop_charging)
        return {
            i for cap in (*caps, self.charge_state, self.information) for i in cap.intervention_ids
        }


class SmartChargingPolicy(_Wire):
    """`smartChargingPolicy` (also what `GET/PUT /vehicles/{id}/smart-charging-policy` return)."""

    is_enabled: bool | None = Field(None, alias="isEnabled")
    deadline: str | None = None
    minimum_charge_limit: Number = Field(None, alias="minimumChargeLimit")

    @field_validator("deadline", mode="before")
    @classmethod
    def _hh_mm(cls, value: object) -> str | None:
        # Anything but the spec's "HH:MM" is read as "not known", never passed on.
        return value if isinstance(value, str) and DEADLINE.fullmatch(value) else None


DEADLINE = re.compile(r"(?:[01]\d|2[0-3]):[0-5]\d|24:00")


class SmartOverrideWire(_Wire):
    """A smart override: "charge now" while smart charging is on."""

    created_at: datetime | None = Field(None, alias="createdAt")
    ended_at: datetime | None = Field(None, alias="endedAt")
    vendor_action_id: str | None = Field(None, alias="vendorActionId")


class SmartChargingPlanWire(_Wire):
    """The plan inside a smart charging status."""

    id: str | None = None
    start_at: datetime | None = Field(None, alias="startAt")
    stop_at: datetime | None = Field(None, alias="stopAt")
    estimated_finish_at: datetime | None = Field(None, alias="estimatedFinishAt")
    ended_at: datetime | None = Field(None, alias="endedAt")


class SmartChargingStatusWire(_Wire):
    """`GET /vehicles/{id}/smart-charging-status`, and the body of its webhook event."""

    vehicle_id: str = Field(alias="vehicleId")
    state: str = "UNKNOWN"
    updated_at: datetime | None = Field(None, alias="updatedAt")
    plan: SmartChargingPlanWire | None = None
    smart_override: SmartOverrideWire | None = Field(None, alias="smartOverride")

    def to_smart(self) -> SmartCharging:
        """Map onto the domain model."""
        plan, override = self.plan, self.smart_override
        running_plan = plan is not None and plan.ended_at is None
        return SmartCharging(
            state=SMART_STATES.get(self.state, SmartChargingState.UNKNOWN),
            updated_at=self.updated_at,
            plan_start_at=plan.start_at if running_plan and plan else None,
            plan_finish_at=plan.estimated_finish_at if running_plan and plan else None,
            charging_now=override is not None and override.ended_at is None,
        )


SMART_STATES: dict[str, SmartChargingState] = {
    "DISABLED": SmartChargingState.DISABLED,
    "CONSIDERING": SmartChargingState.CONSIDERING,
    "UNKNOWN": SmartChargingState.UNKNOWN,
    "PLAN:EXECUTING:STOPPING": SmartChargingState.STOPPING,
    "PLAN:EXECUTING:STOP_FAILED": SmartChargingState.STOP_FAILED,
    "PLAN:EXECUTING:STOPPED": SmartChargingState.STOPPED,
    "PLAN:EXECUTING:STOPPED:AWAITING_PRICES": SmartChargingState.AWAITING_PRICES,
    "PLAN:EXECUTING:STARTING": SmartChargingState.STARTING,
    "PLAN:EXECUTING:START_FAILED": SmartChargingState.START_FAILED,
    "PLAN:EXECUTING:STARTED": SmartChargingState.STARTED,
    "PLAN:EXECUTING:CHARGE_INTERRUPTED": SmartChargingState.INTERRUPTED,
    "PLAN:EXECUTING:OVERRIDDEN": SmartChargingState.OVERRIDDEN,
    "PLAN:ENDED:FINISHED": SmartChargingState.FINISHED,
    "PLAN:ENDED:UNPLUGGED": SmartChargingState.UNPLUGGED,
    "PLAN:ENDED:FAILED": SmartChargingState.FAILED,
    "PLAN:ENDED:DISABLED": SmartChargingState.ENDED,
    "PLAN:ENDED:DEADLINE_CHANGED": SmartChargingState.DEADLINE_CHANGED,
    "FULLY_CHARGED": SmartChargingState.FULLY_CHARGED,
}


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
        if caps.set_max_current.is_capable:
            capabilities.add(Capability.SET_MAX_CURRENT)
        if caps.smart_charging.is_capable:
            capabilities.add(Capability.SMART_CHARGING)
        charge = self.charge_state
        policy = self.smart_charging_policy
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
            smart_charging_enabled=policy.is_enabled,
            charge_deadline=policy.deadline,
            min_charge_limit_pct=policy.minimum_charge_limit,
            # Off means "disabled" without asking; on, the status is read (or pushed) apart.
            smart=(
                SmartCharging(SmartChargingState.DISABLED)
                if caps.smart_charging.is_capable and policy.is_enabled is False
                else None
            ),
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
    """An action: charging (START/STOP, `kind`) or max current (`targetState`)."""

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
    smart_charging_status: SmartChargingStatusWire | None = Field(None, alias="smartChargingStatus")


class Aggregates(_Wire):
    """`min`, `max` and `mean` of a statistic (kW, price per kWh)."""

    min: Number = None
    max: Number = None
    mean: Number = None


class ChargingSessionWire(_Wire):
    """One session of `GET /users/{userId}/statistics/charging/sessions`."""

    id: str | None = None  # the vehicle's (the device's) id
    location_id: str | None = Field(None, alias="locationId")
    started_at: datetime | None = Field(None, alias="from")
    ended_at: datetime | None = Field(None, alias="to")
    kwh_sum: Number = Field(None, alias="kwhSum")
    cost_sum: Number = Field(None, alias="costSum")
    kw: Aggregates | None = None
    price: Aggregates | None = None
    non_smart_price: Aggregates | None = Field(None, alias="nonSmartPrice")
    estimated_savings: Number = Field(None, alias="estimatedSavings")

    def to_session(self, account: str) -> CloudSession | None:
        """Map onto the history's record; None without a vehicle or a start."""
        if not self.id or self.started_at is None:
            return None
        energy = self.kwh_sum
        return CloudSession(
            ref=VehicleRef("enode", account, self.id),
            started_at=_utc(self.started_at),
            ended_at=None if self.ended_at is None else _utc(self.ended_at),
            energy_kwh=energy if energy is not None and energy >= 0 else None,
        )


class ChargingSessions(RootModel[list[ChargingSessionWire]]):
    """The array `GET /users/{userId}/statistics/charging/sessions` returns (no pages)."""

    model_config = ConfigDict(frozen=True)


class ChargingBucketWire(_Wire):
    """One time bucket of `GET /users/{userId}/statistics/charging`."""

    date: datetime | None = None  # the bucket's start
    kwh_sum: Number = Field(None, alias="kwhSum")
    cost_sum: Number = Field(None, alias="costSum")
    kw: Aggregates | None = None
    price: Aggregates | None = None
    non_smart_price: Aggregates | None = Field(None, alias="nonSmartPrice")
    estimated_savings: Number = Field(None, alias="estimatedSavings")


class ChargingStatistics(RootModel[list[ChargingBucketWire]]):
    """The array `GET /users/{userId}/statistics/charging` returns (no pages)."""

    model_config = ConfigDict(frozen=True)


def _utc(moment: datetime) -> datetime:
    # A time without an offset is read as UTC, Enode's own zone.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
