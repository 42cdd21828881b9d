"""Numbers read from cloud JSON: finite numbers kept, everything else is "not reported"."""

from __future__ import annotations

from typing import Any

import pytest

from car2mqtt.providers.enode.wire import ChargeStateWire, LocationWire
from car2mqtt.providers.values import number_or_none


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (42, 42.0),
        (12.5, 12.5),
        ("7.25", 7.25),
        (True, 1.0),
        (None, None),
        ("abc", None),
        (float("inf"), None),
        (float("nan"), None),
        ("-inf", None),
        (10**400, None),
        ([1], None),
        ({"v": 1}, None),
    ],
)
def test_number_or_none(raw: Any, expected: float | None) -> None:
    assert number_or_none(raw) == expected


def test_an_enode_field_out_of_range_is_dropped_not_the_whole_car() -> None:
    charge = ChargeStateWire.model_validate_json(
        '{"batteryLevel": 1e400, "range": 212, "chargeRate": "fast", "isCharging": true}'
    )
    assert charge.battery_level is None
    assert charge.range == 212
    assert charge.charge_rate is None
    assert charge.is_charging is True
    location = LocationWire.model_validate({"latitude": 59.9, "longitude": float("nan")})
    assert location.latitude == 59.9
    assert location.longitude is None
