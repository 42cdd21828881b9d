"""`privacy:` and `budget:` on every account: defaults, per-car modes, errors for bad values."""

from __future__ import annotations

from pathlib import Path

from car2mqtt.bridge.budget import BudgetLimits
from car2mqtt.clock import SimClock
from car2mqtt.config import describe
from car2mqtt.models import LocationMode
from car2mqtt.providers.registry import load_config
from car2mqtt.runtime import budgets_of, privacy_options
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


def test_zone_without_any_zone_is_refused_with_the_way_out(tmp_path: Path) -> None:
    text = MINIMAL + "    privacy:\n      location: zone\n      cars: {abc: Zone}\n"
    lines = problems(error_of(write(tmp_path, text)))
    assert any(
        line.startswith("accounts[home].privacy.location: 'zone' needs at least one zone")
        and "'off' publishes no location" in line
        for line in lines
    )
    assert any(line.startswith("accounts[home].privacy.cars.abc: 'zone' needs") for line in lines)


def test_budget_defaults_to_no_cap_and_check_says_a_set_one(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), {})
    budget = config.account("home").budget
    assert (budget.calls_per_month, budget.calls_per_vehicle_month, budget.reserve_pct) == (
        None,
        None,
        10,
    )
    assert not any("API budget" in line for line in describe(config))
    text = (
        "zones:\n  - {name: Home, latitude: 52.1, longitude: 4.3}\n"
        + MINIMAL
        + "    budget: {calls_per_vehicle_month: 500}\n    privacy: {location: zone}\n"
    )
    config = load_config(write(tmp_path, text), {})
    budgets = budgets_of(config, SimClock(0, 0))
    assert budgets["home"].limits == BudgetLimits(None, 500, 0.1)
    assert (
        "account home: location zone; API budget 500 calls a month per car, "
        "10 % kept for commands" in describe(config)
    )


def test_bad_budget_values_are_named(tmp_path: Path) -> None:
    text = MINIMAL + (
        "    budget:\n      calls_per_month: lots\n      calls_per_vehicle_month: 0\n"
        "      reserve_pct: 80\n      per_day: 5\n"
    )
    lines = problems(error_of(write(tmp_path, text)))
    assert any(
        line.startswith("accounts[home].budget.calls_per_month: got 'lots'") for line in lines
    )
    assert any(
        line.startswith(
            "accounts[home].budget.calls_per_vehicle_month: got 0; expected a number >= 10"
        )
        for line in lines
    )
    assert any(
        line.startswith("accounts[home].budget.reserve_pct: got 80; expected a number <= 50")
        for line in lines
    )
    assert any(line.startswith("accounts[home].budget.per_day: unknown key") for line in lines)
    typo = MINIMAL + "    budget:\n      calls_per_mnth: 100\n"
    assert any(
        line.startswith("accounts[home].budget.calls_per_mnth: unknown key (did you mean")
        and "expected one of: calls_per_month, calls_per_vehicle_month, reserve_pct" in line
        for line in problems(error_of(write(tmp_path, typo)))
    )


def test_a_bare_off_in_yaml_is_the_mode_off(tmp_path: Path) -> None:
    text = MINIMAL + "    privacy:\n      location: off\n      cars: {abc: Off}\n"
    privacy = load_config(write(tmp_path, text), {}).account("home").privacy
    assert (privacy.location, privacy.cars) == ("off", {"abc": "off"})
