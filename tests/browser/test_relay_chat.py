"""The plain relay chat (examples/relay_chat.py and its page, native WebSocket) in Chromium."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from playwright.async_api import Page, expect

from tests.browser.conftest import BROWSER, Pages, Site
from wirehub import Hub, Response

ROOT = Path(__file__).resolve().parents[2]

pytestmark = BROWSER


def relay_hub() -> Hub:
    """A fresh copy of examples/relay_chat.py's hub (the module keeps its clients globally)."""
    spec = importlib.util.spec_from_file_location(
        "relay_chat_demo", ROOT / "examples/relay_chat.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    hub: Hub = module.hub
    # The page declares no icon, so Chromium asks for /favicon.ico and logs the 404
    # as a console error; answer it (nothing else of the example is changed).
    hub.add_route("/favicon.ico", lambda request: Response(204))
    return hub


async def open_chat(pages: Pages, site: Site) -> Page:
    page = await pages.open(site.url + "/")
    await expect(page.locator("#status")).to_have_text("connected")
    await expect(page.locator("#log li.note")).to_have_count(1)
    return page


async def send(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")


async def test_relay_chat_between_two_pages(
    pages: Pages, serve_hub: Callable[[Hub], Awaitable[Site]]
) -> None:
    """What one page sends shows up in the other, and as "mine" in its own log."""
    site = await serve_hub(relay_hub())
    ada = await open_chat(pages, site)
    bob = await open_chat(pages, site)
    await send(ada, "hello from ada")
    await expect(bob.locator("#log li:not(.note)")).to_have_text(["hello from ada"])
    await send(bob, "hi ada")
    await expect(ada.locator("#log li:not(.note)")).to_have_text(["hello from ada", "hi ada"])
    await expect(ada.locator("#log li.mine")).to_have_text(["hello from ada"])
    await expect(bob.locator("#log li.mine")).to_have_text(["hi ada"])
