"""Chromium on a FastAPI page whose wirehub is mounted at /rt, served by a real uvicorn."""

from __future__ import annotations

from playwright.async_api import expect

from tests.asgi.hosts import post_json, uvicorn
from tests.browser.conftest import BROWSER, Pages

pytestmark = BROWSER


async def test_fastapi_page_gets_what_a_route_emits(pages: Pages) -> None:
    """The page imports /rt/wirehub.js, connects to /rt/ws, and shows news a FastAPI route emits."""
    async with uvicorn("examples.frameworks.fastapi_app:app") as host:
        page = await pages.open(host.url + "/")
        await expect(page.locator("#status")).to_have_text("connected")
        assert await post_json(host.url + "/news", {"title": "from FastAPI"}) == (
            200,
            {"delivered_at": 1},
        )
        await expect(page.locator("#news li")).to_have_text(["from FastAPI"])
        await page.close()
