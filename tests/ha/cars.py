"""Vehicle states shaped like what each cloud reports, for the Home Assistant mapping tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from car2mqtt.models import (
    Capability,
    ChargeState,
    Location,
    SmartCharging,
    SmartChargingState,
    VehicleInfo,
    VehicleRef,
    VehicleState,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SEEN = NOW - timedelta(minutes=90)


def enode_car(**changes: object) -> VehicleState:
    """A Tesla through Enode that reports everything and can do everything, plugged in."""
    state = VehicleState(
        info=VehicleInfo(
            ref=VehicleRef("enode", "home", "4b6e1f0c-9f3a-4c55-8f0e-1d2c3b4a5e6f"),
            vendor="TESLA",
            brand="Tesla",
            model="Model Y",
            year=2023,
            vin="5YJYGDEE1LF000001",
        ),
        capabilities=frozenset(Capability),
        last_seen=SEEN,
        reachable=True,
        battery_pct=62.4,
        range_km=301.26,
        charging=False,
        plugged_in=True,
        charge_state=ChargeState.STOPPED,
        charge_limit_pct=80.0,
        battery_capacity_kwh=75.04,
        max_current_a=16.0,
        charge_updated_at=SEEN,
        smart_charging_enabled=True,
        charge_deadline="07:30",
        min_charge_limit_pct=40.0,
        smart=SmartCharging(
            SmartChargingState.STOPPED,
            updated_at=SEEN,
            plan_start_at=SEEN + timedelta(hours=5),
            plan_finish_at=SEEN + timedelta(hours=8),
        ),
        odometer_km=12345.67,
        location=Location(59.9139, 10.7522, updated_at=SEEN, heading_deg=90.0),
    )
    return state.replace(**changes)


def charging(state: VehicleState) -> VehicleState:
    """`state`, charging at 7.4 kW."""
    return state.replace(
        charging=True,
        plugged_in=True,
        charge_state=ChargeState.CHARGING,
        charge_rate_kw=7.43,
        charge_time_remaining_min=84.6,
    )


def xpeng_car() -> VehicleState:
    """An XPENG through Enode: charge data and charge commands, no odometer, no location."""
    return VehicleState(
        info=VehicleInfo(ref=VehicleRef("enode", "home", "xp-1"), vendor="XPENG", model="G6"),
        capabilities=frozenset({Capability.START_CHARGING, Capability.STOP_CHARGING}),
        last_seen=SEEN,
        battery_pct=71.0,
        range_km=390.0,
        charging=False,
        plugged_in=False,
        charge_state=ChargeState.UNPLUGGED,
    )


def xee_car() -> VehicleState:
    """A petrol car behind a Xee OBD dongle: signals, position and mileage, no charging."""
    return VehicleState(
        info=VehicleInfo(
            ref=VehicleRef("xee", "family", "771"),
            vendor="renault",
            model="Clio",
            display_name="Mum's Clio",
        ),
        capabilities=frozenset({Capability.LOCATION, Capability.ODOMETER}),
        last_seen=SEEN,
        odometer_km=88000.0,
        speed_kmh=0.0,
        fuel_level_l=23.456,
        battery_voltage_v=12.618,
        unlocked=False,
        ignition_on=False,
        location=Location(48.85, 2.35),
    )
