"""`privacy:` on every account: its defaults, per-car modes and the errors for bad values."""

from __future__ import annotations

from pathlib import Path

from car2mqtt.models import LocationMode
from car2mqtt.providers.registry import load_config
from car2mqtt.runtime import privacy_options
from tests.test_config import MINIMAL, SIMULATOR, error_of, problems, write


def test_privacy_defaults_to_exact(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), {})
    privacy = config.account("home").privacy
    assert (privacy.location, privacy.grid_m, privacy.cars) == ("exact", 1000, {})


def test_privacy_on_any_provider_with_cars_and_zones(tmp_path: Path) -> None:
    text = (
        "zones:\n  - {name: Home, latitude: 52.1, longitude: 4.3}\n"
        + SIMULATOR
        + "    privacy:\n      location: Coarse\n      grid_m: 500\n"
        + "      cars: {tesla-1: zone, My Kia: 'off'}\n"
    )
    config = load_config(write(tmp_path, text), {})
    privacy = privacy_options(config)["sim"]
    assert privacy.mode is LocationMode.COARSE
    assert privacy.grid_m == 500
    assert dict(privacy.cars) == {"tesla-1": LocationMode.ZONE, "My Kia": LocationMode.OFF}
    assert [z.name for z in privacy.zones] == ["Home"]


def test_bad_privacy_values_are_named(tmp_path: Path) -> None:
    text = MINIMAL + (
        "    privacy:\n      location: blurry\n      grid_m: 1\n"
        "      cars: {abc: hidden}\n      mode: zone\n"
    )
    lines = problems(error_of(write(tmp_path, text)))
    assert (
        "accounts[home].privacy.location: got 'blurry'; expected one of: exact, coarse, zone, off"
        in lines
    )
    assert any(
        line.startswith("accounts[home].privacy.grid_m: got 1; expected a number >= 10")
        for line in lines
    )
    assert any(line.startswith("accounts[home].privacy.cars.abc: got 'hidden'") for line in lines)
    assert any(
        line.startswith("accounts[home].privacy.mode: unknown key")
        and "location, grid_m, cars" in line
        for line in lines
    )
