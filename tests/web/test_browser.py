"""The web UI in a real Chromium: overview, a car's commands, linking Enode and Xee, ingress."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from playwright.async_api import Page, expect

from car2mqtt.config import Config
from car2mqtt.models import LinkState, VehicleRef
from tests.bridge.conftest import TOPICS
from tests.mqtt_support import Mosquitto, free_port, probe
from tests.support import Sim
from tests.web.conftest import (
    SCREENSHOTS,
    enode_account,
    get,
    links_of,
    ui_config,
    ui_for,
    xee_account,
)

NAMES = ("Tesla Model 3", "Volkswagen ID.4", "XPENG G6")


async def test_the_overview_lists_the_cars_and_updates_without_a_reload(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, page: Page
) -> None:
    config = ui_config(tmp_path, mosquitto, [enode_account(sim)])
    tesla = sim.vehicle_ids()[0]
    async with ui_for(config, sim) as run:
        await page.goto(f"{run.web_url}/")
        cars = page.get_by_role("table").filter(has_text="Battery")
        for name in NAMES:
            await expect(cars.get_by_role("link", name=name)).to_be_visible()
        await expect(page.locator("#live")).to_have_text("live")
        row = page.locator(f"tr[data-car='enode_{tesla}']")
        await expect(row.locator("td[data-label='Plugged in']")).to_have_text("no")
        # The car is plugged in at the cloud: the open page shows it, with no reload.
        sim.admin_call("POST", f"/enode/vehicles/{tesla}/plug-in", {"startCharging": False})
        sim.refresh(tesla)
        await expect(row.locator("td[data-label='Plugged in']")).to_have_text("yes", timeout=10000)
        assert await page.evaluate("performance.getEntriesByType('navigation').length") == 1
        await expect(page.get_by_text("connected", exact=True)).to_be_visible()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / "overview.png"), full_page=True)


async def test_start_charging_from_a_car_page_shows_pending_then_confirmed(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, page: Page
) -> None:
    tesla = sim.vehicle_ids()[0]
    sim.admin_call("POST", f"/enode/vehicles/{tesla}/plug-in", {"startCharging": False})
    sim.refresh(tesla)
    config = ui_config(tmp_path, mosquitto, [enode_account(sim)])
    result_topic = TOPICS.command_result(VehicleRef("enode", "home", tesla))
    async with ui_for(config, sim) as run, probe(mosquitto.port) as seen:
        await page.goto(f"{run.web_url}/")
        await page.get_by_role("link", name="Tesla Model 3").click()
        await expect(page.get_by_role("heading", name="Tesla Model 3")).to_be_visible()
        await expect(page.locator("td[data-value='Plugged in']")).to_have_text("yes")
        await page.get_by_role("button", name="Start charging").click()
        steps = page.locator("#steps tbody tr").first
        await expect(steps).to_contain_text("start charging")
        await expect(steps).to_contain_text("pending")
        sim.advance(130)  # the vendor acts and Enode confirms from device data
        await expect(steps).to_contain_text("confirmed", timeout=10000)
        await expect(page.locator("td[data-value='Charging']")).to_have_text("yes", timeout=10000)
        assert "charging" in str(sim.live(tesla)).lower()
        # The same command path as MQTT: Home Assistant saw every step too.
        await seen.wait_json(result_topic, lambda c: c["status"] == "confirmed")
        await page.screenshot(path=str(SCREENSHOTS / "car.png"), full_page=True)


async def test_a_setting_is_sent_from_its_form_and_shown_with_its_value(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, page: Page
) -> None:
    tesla = sim.vehicle_ids()[0]
    config = ui_config(tmp_path, mosquitto, [enode_account(sim)])
    async with ui_for(config, sim) as run:
        await page.goto(f"{run.web_url}/")
        await page.get_by_role("link", name="Tesla Model 3").click()
        field = page.get_by_label("Maximum charging current (A)")
        await expect(field).to_have_value("16")
        assert (await field.get_attribute("min"), await field.get_attribute("max")) == ("6", "48")
        await field.fill("10")
        await page.locator("form.setting").filter(has=field).get_by_role("button").click()
        steps = page.locator("#steps tbody tr").first
        await expect(steps).to_contain_text("set max current 10")
        await expect(steps).to_contain_text("pending")
        sim.advance(130)  # the vendor acts; Enode confirms once the car reports 10 A
        await expect(steps).to_contain_text("confirmed", timeout=10000)
        await expect(page.locator("td[data-value='Maximum current']")).to_have_text(
            "10 A", timeout=10000
        )
        assert sim.live(tesla)["maxCurrent"] == 10
        # The smart charging deadline is a time field; the car's page has no charge limit form.
        await expect(page.get_by_label("Smart charging deadline")).to_have_attribute("type", "time")
        await expect(page.get_by_label(re.compile("Charge limit"))).to_have_count(0)


async def test_a_refused_command_shows_why_on_the_page(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, page: Page
) -> None:
    config = ui_config(tmp_path, mosquitto, [enode_account(sim)])
    async with ui_for(config) as run:
        await page.goto(f"{run.web_url}/")
        await page.get_by_role("link", name="Tesla Model 3").click()
        await page.get_by_role("button", name="Refresh").click()
        await page.get_by_role("button", name="Refresh").click()
        steps = page.locator("#steps tbody")
        await expect(steps).to_contain_text("one a minute per car")


async def test_an_enode_account_is_linked_through_the_ui(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, page: Page
) -> None:
    config = ui_config(tmp_path, mosquitto, [enode_account(sim, "fresh", user_id="newcomer")])
    async with ui_for(config) as run, probe(mosquitto.port) as seen:
        await page.goto(f"{run.web_url}/accounts/fresh")
        await expect(page.get_by_text("No cars yet.")).to_be_visible()
        await page.get_by_label("Brand (optional)").fill("polestar")
        await page.get_by_role("button", name="Link Enode").click()
        # The simulator's Link UI: log in at the brand, then approve.
        await page.get_by_label("Username").fill("me@example.com")
        await page.get_by_label("Password").fill("secret")
        await page.get_by_role("button", name="Log in").click()
        await page.get_by_role("button", name="Complete").click()
        await expect(page.get_by_text("Linked. These are the cars")).to_be_visible()
        assert page.url.startswith(f"{run.web_url}/accounts/fresh")
        car = page.get_by_role("table").get_by_role("link").first
        await expect(car).to_be_visible()
        key = await car.get_attribute("href")
        assert key is not None
        vehicle_id = key.rsplit("/", 1)[1].removeprefix("enode_")
        ref = VehicleRef("enode", "fresh", vehicle_id)
        await seen.wait_json(TOPICS.state(ref), lambda s: "battery" in s)


async def _consent_at_xee(page: Page, sim: Sim) -> None:
    xee = sim.info["xee"]
    await page.get_by_label("Email").fill(xee["username"])
    await page.get_by_label("Password").fill(xee["password"])
    await page.get_by_role("button", name="Approve").click()


def _xee_back_to_the_ui(sim: Sim, mosquitto: Mosquitto, tmp_path: Path) -> Config:
    """A Xee account whose registered redirect URI is the UI's own callback."""
    port = free_port()
    callback = f"http://127.0.0.1:{port}/link/callback"
    return ui_config(tmp_path, mosquitto, [xee_account(sim, redirect_uri=callback)], port=port)


async def _link_xee(page: Page, sim: Sim, account_page: str) -> None:
    await page.goto(account_page)
    await page.get_by_role("button", name="Link Xee").click()
    await _consent_at_xee(page, sim)


async def test_a_xee_account_is_linked_by_its_redirect_to_the_ui(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, page: Page
) -> None:
    async with ui_for(_xee_back_to_the_ui(sim, mosquitto, tmp_path)) as run:
        await _link_xee(page, sim, f"{run.web_url}/accounts/car")
        await expect(page.get_by_text("Linked. These are the cars")).to_be_visible()
        cars = sim.info["xee"]["users"][next(iter(sim.info["xee"]["users"]))]
        await expect(page.locator("table.cars th[scope=row] a")).to_have_count(len(cars))
        assert run.bridge.hub.account("car").link is LinkState.OK


async def test_a_xee_account_is_linked_by_pasting_the_address(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, page: Page
) -> None:
    # Registered at Xee: an address this machine does not serve, so the user pastes it.
    elsewhere = f"http://127.0.0.1:{free_port()}/callback"
    config = ui_config(tmp_path, mosquitto, [xee_account(sim, redirect_uri=elsewhere)])
    async with ui_for(config) as run:
        await page.goto(f"{run.web_url}/accounts/car")
        await page.get_by_role("button", name="Link Xee").click()
        await expect(page.get_by_text("which is not this page")).to_be_visible()
        consent_url = await page.locator("#consent").get_attribute("href")
        assert consent_url is not None
        consent = await page.context.new_page()
        await consent.goto(consent_url)
        # Xee sends the tab to an address nobody serves: it fails to load, as it would.
        async with consent.expect_request(lambda r: r.url.startswith(elsewhere)) as sent:
            await _consent_at_xee(consent, sim)
        landed = (await sent.value).url
        assert "code=" in landed
        await consent.close()
        await page.get_by_label(re.compile("paste the whole address")).fill(landed)
        await page.get_by_role("button", name="Use this address").click()
        await expect(page.get_by_text("Linked.")).to_be_visible()
        await expect(page.get_by_role("table").get_by_role("link").first).to_be_visible()


async def test_a_revoked_xee_grant_shows_relink_needed_and_relinking_clears_it(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, page: Page
) -> None:
    async with ui_for(_xee_back_to_the_ui(sim, mosquitto, tmp_path)) as run:
        await _link_xee(page, sim, f"{run.web_url}/accounts/car")
        await expect(page.get_by_text("Linked.")).to_be_visible()
        await page.goto(f"{run.web_url}/")
        # Xee forgets every grant: the next renewal is refused, only the user can fix it.
        assert sim.admin_call("POST", "/xee/tokens/revoke").status_code == 200
        sim.advance(3700)  # past the access token's hour: the bridge must renew
        alert = page.get_by_text("Re-link needed.")
        await expect(alert).to_be_visible(timeout=15000)
        await page.get_by_role("button", name="Re-link car now").click()
        await _consent_at_xee(page, sim)
        await expect(page.get_by_text("Linked.")).to_be_visible()
        await page.goto(f"{run.web_url}/")
        await expect(page.get_by_text("Re-link needed.")).to_have_count(0)
        assert run.bridge.hub.account("car").link is LinkState.OK


async def test_every_page_works_under_an_ingress_prefix(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, page: Page
) -> None:
    prefix = "/api/hassio_ingress/Zx9_tOkEn-42"
    # The browser part: a proxy that keeps the prefix in the path (web.base_path) and says
    # so in X-Ingress-Path, as HA's does; the page is driven through its prefixed links.
    config = ui_config(
        tmp_path,
        mosquitto,
        [enode_account(sim)],
        base_path="/elsewhere",
        trusted_proxies=["127.0.0.1"],  # the proxy: only its X-Ingress-Path is believed
    )
    async with ui_for(config) as run:
        assert run.web_url is not None
        await page.set_extra_http_headers({"X-Ingress-Path": prefix})
        await page.goto(f"{run.web_url.removesuffix('/elsewhere')}{prefix}/")
        await page.get_by_role("link", name="Tesla Model 3").click()
        await expect(page.get_by_role("heading", name="Tesla Model 3")).to_be_visible()
        assert f"{prefix}/cars/" in page.url
        await expect(page.locator("#live")).to_have_text("live")
        await page.get_by_role("link", name="Configuration").click()
        await expect(page.get_by_role("heading", name="Effective configuration")).to_be_visible()
        # Every link, form, asset and event URL of every page carries the ingress prefix (it
        # wins over web.base_path), whether the proxy strips the prefix or keeps it.
        car = f"enode_{sim.vehicle_ids()[0]}"
        root = run.web_url.removesuffix("/elsewhere")
        for path in ("/", f"/cars/{car}", "/accounts/home", "/config", "/nowhere"):
            html = (await get(f"{root}{path}", **{"X-Ingress-Path": prefix})).text
            local = [u for u in links_of(html) if not u.startswith("https://")]
            assert local, path
            assert all(u.startswith(prefix + "/") for u in local), (path, local)


async def test_the_overview_fits_a_phone(
    sim: Sim, mosquitto: Mosquitto, tmp_path: Path, page: Page
) -> None:
    config = ui_config(tmp_path, mosquitto, [enode_account(sim)])
    async with ui_for(config) as run:
        await page.set_viewport_size({"width": 360, "height": 740})
        await page.goto(f"{run.web_url}/")
        await expect(page.get_by_role("link", name="XPENG G6")).to_be_visible()
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360
        await asyncio.sleep(0)
