"""Render the add-on's icon.png and logo.png from their SVGs with Chromium (run by hand)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from playwright.async_api import async_playwright

HERE = Path(__file__).resolve().parent
ADDON = HERE.parents[1] / "ha-addon" / "car2mqtt"
SIZES = {"icon": (128, 128), "logo": (250, 100)}


async def main() -> None:
    """Write ha-addon/car2mqtt/{icon,logo}.png."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/lib/chromium/chromium")
        for name, (width, height) in SIZES.items():
            page = await browser.new_page(viewport={"width": width, "height": height})
            await page.set_content(
                f"<body style='margin:0;background:transparent'>{(HERE / f'{name}.svg').read_text()}"
            )
            await page.screenshot(path=str(ADDON / f"{name}.png"), omit_background=True)
        await browser.close()


if __name__ == "__main__":
    asyncio.run(main())
