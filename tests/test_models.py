"""The domain model: older data never overwrites newer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from car2mqtt.models import (
    ChargeState,
    Location,
    VehicleInfo,
    VehicleRef,
    VehicleState,
    merge_newer,
    safe_id,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
INFO = VehicleInfo(VehicleRef("enode", "home", "v/1"), "TESLA", "Tesla", "Model 3")


def state(at: datetime, battery: float, *, odo: float = 100.0) -> VehicleState:
    return VehicleState(
        info=INFO,
        last_seen=at,
        battery_pct=battery,
        charge_state=ChargeState.CHARGING,
        charge_updated_at=at,
        odometer_km=odo,
        odometer_updated_at=at,
        location=Location(59.9, 10.7, at),
    )


def test_newer_data_wins() -> None:
    merged = merge_newer(state(T0, 50), state(T0 + timedelta(minutes=5), 60))
    assert merged.battery_pct == 60


def test_older_group_keeps_the_newer_values() -> None:
    newer = state(T0 + timedelta(minutes=5), 60, odo=120)
    older = state(T0, 50, odo=100).replace(
        odometer_updated_at=T0 + timedelta(minutes=9), odometer_km=130.0
    )
    merged = merge_newer(newer, older)
    assert merged.battery_pct == 60  # charge data was older: kept
    assert merged.charge_updated_at == newer.charge_updated_at
    assert merged.odometer_km == 130.0  # odometer data was newer: taken
    assert merged.location == newer.location
    assert merged.last_seen == newer.last_seen


def test_missing_timestamps_take_the_new_value() -> None:
    old = state(T0, 50).replace(charge_updated_at=None)
    assert merge_newer(old, state(T0 - timedelta(hours=1), 40)).battery_pct == 40
    assert merge_newer(None, state(T0, 40)).battery_pct == 40


def test_names_and_ids() -> None:
    assert INFO.name == "Tesla Model 3"
    assert INFO.ref.key == "enode_v_1"
    assert safe_id("a b/c#d") == "a_b_c_d"
    assert VehicleInfo(INFO.ref, "XPENG").name == "Xpeng"
