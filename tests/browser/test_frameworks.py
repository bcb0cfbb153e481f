"""Chromium on a FastAPI page whose wirehub is mounted at /rt (a real uvicorn), and on a
page of another origin that imports the hub's client through CORS."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from playwright.async_api import expect

from tests.browser.conftest import BROWSER, Pages, Site
from tests.frameworks.hosts import post_json, uvicorn
from wirehub import Hub, Request, Response

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


async def test_page_on_another_origin_imports_the_client(
    pages: Pages, serve_hub: Callable[[Hub], Awaitable[Site]]
) -> None:
    """A page served elsewhere imports /wirehub.js across origins (cors_origins) and connects."""
    other: dict[str, Site] = {}
    page_hub = Hub(events_path=None)

    @page_hub.route("/")
    def index(request: Request) -> Response:
        hub_url = other["hub"].url
        html = (
            '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,">'
            '<p id="status">loading</p><script type="module">'
            f'import {{ connect }} from "{hub_url}/wirehub.js";'
            f'const hub = connect("{hub_url.replace("http", "ws")}/ws");'
            'hub.on("connect", () => { document.getElementById("status").textContent = "up"; });'
            "</script>"
        )
        return Response(200, html.encode(), "text/html; charset=utf-8")

    page_site = await serve_hub(page_hub)
    origin = page_site.url
    other["hub"] = await serve_hub(Hub(cors_origins=[origin], allowed_origins=[origin]))
    page = await pages.open(origin + "/")
    await expect(page.locator("#status")).to_have_text("up")
