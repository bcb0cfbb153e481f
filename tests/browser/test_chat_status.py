"""The chat demo tells "cannot connect" from "connection lost", and points to /login."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from playwright.async_api import expect

from tests.browser.conftest import BROWSER, Pages, Site
from tests.browser.test_chat_demo import load_app
from wirehub import Hub

pytestmark = BROWSER

REFUSED = r"WebSocket connection to .* failed|Failed to load resource"


async def test_cannot_connect_then_connection_lost(
    pages: Pages, serve_hub: Callable[[Hub], Awaitable[Site]]
) -> None:
    """A page that never connected says it cannot connect; one that was connected,
    that the connection was lost."""
    site = await serve_hub(load_app().create_hub())
    pages.allow(REFUSED)
    page = await pages.open(site.url)
    await site.stop()
    await page.fill("#name", "ada")
    await page.click("#name-form button")
    await expect(page.locator("#banner-text")).to_contain_text("Cannot connect to the server")
    await site.start()
    await expect(page.locator("#status")).to_have_text("connected")
    await expect(page.locator("#banner")).to_be_hidden()
    await site.stop()
    await expect(page.locator("#banner-text")).to_contain_text("Connection lost. Reconnecting")
    await site.start()  # the page reconnects before the fixture stops the server for good
    await expect(page.locator("#status")).to_have_text("connected")


async def test_signed_mode_without_a_login_points_to_it(
    pages: Pages, serve_hub: Callable[[Hub], Awaitable[Site]]
) -> None:
    """In signed-token mode, a page with no valid cookie stops retrying and links to /login."""
    site = await serve_hub(load_app().create_hub("s" * 32))
    pages.allow(REFUSED)
    page = await pages.open(site.url)
    await page.fill("#name", "ada")
    await page.click("#name-form button")
    banner = page.locator("#banner-text")
    await expect(banner).to_contain_text("You are not logged in")
    await expect(banner.locator("a")).to_have_attribute("href", "/login")
    assert await page.evaluate("window.hub.state") == "closed"
    await page.click("#banner-text a")
    await page.fill("input[name=name]", "ada")
    await page.click("form button")
    await expect(page.locator("#status")).to_have_text("connected")
