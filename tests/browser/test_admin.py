"""The admin page in real Chromium, on one of two nodes sharing Redis.

Set ``WIREHUB_SCREENSHOT=1`` to rewrite docs/screenshot-admin.png.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio
from playwright.async_api import Page, expect
from websockets.exceptions import ConnectionClosed

from tests.browser.conftest import BROWSER, Pages, Site
from tests.browser.examples import DOCS
from tests.conftest import UNIT
from tests.hub.test_admin import KEY, admin_hub
from tests.hub.wire import WireClient
from wirehub import Hub
from wirehub.brokers.redis import RedisBroker

pytestmark = BROWSER

SCREENSHOT = DOCS / "screenshot-admin.png"


@pytest_asyncio.fixture(loop_scope="session")
async def cluster(
    serve_hub: Callable[[Hub], Awaitable[Site]], redis_url: str, prefix: str
) -> tuple[Site, Site]:
    """Two nodes of one hub, each with the admin page, sharing one Redis."""
    first = await serve_hub(admin_hub(broker=RedisBroker(redis_url, prefix=prefix)))
    second = await serve_hub(admin_hub(broker=RedisBroker(redis_url, prefix=prefix)))
    return first, second


@contextlib.asynccontextmanager
async def clients(site: Site, rooms: list[str]) -> AsyncIterator[list[WireClient]]:
    """One application client per room, each joined to its room, on ``site``."""
    opened = []
    try:
        for room in rooms:
            client = await WireClient.open(f"ws://127.0.0.1:{site.port}/ws")
            opened.append(client)
            await client.join(room)
        yield opened
    finally:
        for client in opened:
            with contextlib.suppress(ConnectionClosed):
                await client.close()


async def log_in(pages: Pages, site: Site, key: str = KEY) -> Page:
    page = await pages.open(f"{site.url}/admin")
    await page.fill("#key", key)
    await page.click("#login button")
    return page


async def test_a_wrong_key_shows_an_error_and_no_data(
    pages: Pages, cluster: tuple[Site, Site]
) -> None:
    """A wrong key leaves the page on its login form, saying so."""
    page = await log_in(pages, cluster[0], "not the key, but long enough")
    await expect(page.locator("#login-error")).to_have_text("Wrong key.")
    await expect(page.locator("#app")).to_be_hidden()


async def test_the_page_shows_both_nodes_and_acts_on_a_peer_of_the_other(
    pages: Pages, cluster: tuple[Site, Site]
) -> None:
    """Both nodes with their connections; a peer on node B is looked up, sent to, disconnected."""
    first, second = cluster
    rooms = ["lobby", "lobby", "support", "game:42", "game:42", "game:42"]
    async with clients(second, rooms) as on_b, clients(first, ["lobby", "support"]):
        page = await log_in(pages, first)
        rows = page.locator("#nodes tbody tr")
        await expect(rows).to_have_count(2)
        await expect(page.locator("#total-connections")).to_have_text("8")
        await expect(page.locator("#nodes tbody")).to_contain_text("6 websocket")
        await expect(page.locator("#nodes tbody")).to_contain_text("(this page)")
        lobby = page.locator("#rooms tbody tr", has_text="lobby")
        await expect(lobby.locator("td").nth(1)).to_have_text("3")
        await expect(lobby.locator("td").nth(2)).to_have_text("2")

        target = on_b[2]  # in "support", on the other node
        await page.fill("#peer-id", target.id)
        await page.click("#lookup button[type=submit]")
        await expect(page.locator("#peer-result")).to_contain_text("found on node")
        await expect(page.locator("#peer")).to_contain_text("support")

        await page.fill("#emit-room", "support")
        await page.fill("#emit-event", "notice")
        await page.fill("#emit-data", '{"text": "back in 5 minutes"}')
        await page.click("#emit button")
        await expect(page.locator("#emit-result")).to_contain_text("sent to support at offset")
        event = await target.recv()
        assert (event["event"], event["data"]) == ("notice", {"text": "back in 5 minutes"})

        if os.environ.get("WIREHUB_SCREENSHOT") == "1":
            await screenshot(page, on_b)

        await page.click("#disconnect")
        await expect(page.locator("#peer-result")).to_have_text("disconnected")
        with pytest.raises(ConnectionClosed):
            while True:
                await target.recv(2 * UNIT)
        assert target.ws.close_code == 4003
        await expect(page.locator("#total-connections")).to_have_text("7")


async def screenshot(page: Page, talkers: list[WireClient]) -> None:
    """The page into docs/, taken while a few clients talk (so the rates are not zero)."""

    async def talk() -> None:
        while True:
            for client in talkers[:3]:
                await client.call("say", {"room": "game:42", "text": "gg"})
            await asyncio.sleep(0.02)

    await page.set_viewport_size({"width": 1280, "height": 900})
    talking = asyncio.create_task(talk())
    try:
        await expect(page.locator("#total-deliveries")).not_to_have_text("0")
        await page.wait_for_timeout(600)
        await page.screenshot(path=str(SCREENSHOT), full_page=True)
    finally:
        talking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await talking
