"""The live dashboard (examples/dashboard/) in real Chromium: live charts, history, gaps.

Set ``WIREHUB_SCREENSHOT=1`` to rewrite docs/screenshot-dashboard.png.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest_asyncio
from playwright.async_api import Page, expect

from tests.browser.conftest import BROWSER, WAIT_MS, Pages, Site
from tests.browser.examples import DOCS, load_example
from tests.conftest import UNIT
from wirehub import Hub

pytestmark = BROWSER

PERIOD = 0.05  # fast samples, so that history fills in a fraction of a second


@pytest_asyncio.fixture(loop_scope="session")
async def site(serve_hub: Callable[[Hub], Awaitable[Site]]) -> Site:
    return await serve_hub(load_example("dashboard").create_hub(period=PERIOD))


async def open_dashboard(pages: Pages, site: Site, **options: Any) -> Page:
    page = await pages.open(site.url, **options)
    await expect(page.locator("#status")).to_have_text("connected")
    return page


async def samples(page: Page) -> int:
    return int(await page.evaluate("window.dashboard.columns[0].length"))


async def until_samples(page: Page, count: int, within: float = WAIT_MS / 1000) -> int:
    deadline = asyncio.get_running_loop().time() + within
    while (seen := await samples(page)) < count:
        assert asyncio.get_running_loop().time() < deadline, f"only {seen} samples, not {count}"
        await asyncio.sleep(UNIT / 50)
    return seen


async def test_charts_update_live(pages: Pages, site: Site) -> None:
    """Samples keep arriving and the cards and the three charts show them."""
    page = await open_dashboard(pages, site)
    first = await until_samples(page, 3)
    await until_samples(page, first + 5)
    await expect(page.locator("#cpu")).to_have_text(re.compile(r"^\d+\.\d %$"))
    await expect(page.locator("#connections")).not_to_have_text("\u2013")  # the placeholder dash
    await expect(page.locator(".chart canvas")).to_have_count(3)


async def test_a_late_page_starts_with_history(pages: Pages, site: Site) -> None:
    """A page opened later draws the samples it missed at once, from the room's history."""
    early = await open_dashboard(pages, site)
    await until_samples(early, 20)
    late = await open_dashboard(pages, site)  # "connected" once the join (and replay) is done
    assert await samples(late) >= 20
    first_early = await early.evaluate("window.dashboard.columns[0][0]")
    first_late = await late.evaluate("window.dashboard.columns[0][0]")
    assert first_late <= first_early + PERIOD * 2  # the same past, not only what came after


async def test_a_restart_breaks_the_lines(pages: Pages, site: Site) -> None:
    """A server restart that lost the room's history shows as a hole in the lines, not a bridge."""
    page = await open_dashboard(pages, site)
    await until_samples(page, 5)
    pages.allow(r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws' failed")
    await site.stop(1012)
    await expect(page.locator("#status")).to_have_text("reconnecting…")
    site.hub = load_example("dashboard").create_hub(period=PERIOD)  # a new process: new epoch
    await site.start()
    await expect(page.locator("#status")).to_have_text("connected")
    before = await samples(page)
    await until_samples(page, before + 3)
    assert await page.evaluate("window.dashboard.gaps()") >= 1
    assert await page.evaluate("window.dashboard.columns[1].includes(null)")
    # The client reported it (the re-join could not recover the old epoch's samples).
    await expect(page.locator("#notice")).to_contain_text("some samples are missing")


async def test_screenshot_dashboard(pages: Pages, site: Site) -> None:
    """The dashboard with its charts filling; WIREHUB_SCREENSHOT=1 saves it to docs/."""
    size = {"viewport": {"width": 1280, "height": 500}, "device_scale_factor": 1}
    page = await open_dashboard(pages, site, **size)
    picture = os.environ.get("WIREHUB_SCREENSHOT") == "1"
    await until_samples(page, 200, within=20 * UNIT) if picture else await until_samples(page, 20)
    if picture:
        await page.screenshot(path=str(DOCS / "screenshot-dashboard.png"))
