"""The multiplayer game (examples/game/) in real Chromium: players see each other move.

Set ``WIREHUB_SCREENSHOT=1`` to rewrite docs/screenshot-game.png.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest_asyncio
from playwright.async_api import Page, expect

from tests.browser.conftest import BROWSER, WAIT_MS, Pages, Site
from tests.browser.examples import DOCS, load_example
from tests.conftest import UNIT
from wirehub import Hub

pytestmark = BROWSER


@pytest_asyncio.fixture(loop_scope="session")
async def site(serve_hub: Callable[[Hub], Awaitable[Site]]) -> Site:
    """A game hub on a free port, ticking at 20 Hz."""
    return await serve_hub(load_example("game").create_hub())


async def join(
    pages: Pages, site: Site, name: str, *, spectate: bool = False, **options: Any
) -> Page:
    query = f"name={name}" + ("&spectate=1" if spectate else "")
    page = await pages.open(f"{site.url}/?{query}", **options)
    await expect(page.locator("#status")).to_have_text("connected")
    return page


async def until(page: Page, script: str, arg: Any = None) -> Any:
    """Wait until ``script`` (a function of ``arg`` evaluated in the page) is truthy; return it."""
    deadline = asyncio.get_running_loop().time() + WAIT_MS / 1000
    while True:
        value = await page.evaluate(script, arg)
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, f"never true: {script}"
        await asyncio.sleep(UNIT / 50)


async def my_slot(page: Page) -> int:
    slot = "() => { const s = window.game.me(); return s === null ? null : String(s); }"
    return int(await until(page, slot))


async def test_players_see_each_other_move(pages: Pages, site: Site) -> None:
    """A player holding an arrow key moves on the other player's screen within a second or so."""
    ada = await join(pages, site, "ada")
    bob = await join(pages, site, "bob")
    slot = await my_slot(ada)
    start = await until(bob, "(slot) => window.game.latest()[slot]", slot)
    await ada.keyboard.down("ArrowRight" if start["x"] < 480 else "ArrowLeft")
    await until(bob, f"(slot) => Math.abs(window.game.latest()[slot].x - {start['x']}) > 60", slot)
    await ada.keyboard.up("ArrowRight" if start["x"] < 480 else "ArrowLeft")
    await expect(bob.locator("#scores li")).to_have_count(2)
    await expect(bob.locator("#scores li .name")).to_contain_text(["ada"])


async def test_a_player_who_leaves_disappears(pages: Pages, site: Site) -> None:
    """When a page closes, the others stop drawing it and drop it from the scores."""
    ada = await join(pages, site, "ada")
    bob = await join(pages, site, "bob")
    slot = await my_slot(ada)
    await until(bob, "(slot) => window.game.latest()[slot]", slot)
    await ada.close()
    await until(bob, "(slot) => !window.game.latest()[slot]", slot)
    await expect(bob.locator("#scores li")).to_have_count(1)


async def test_a_spectator_watches_without_playing(pages: Pages, site: Site) -> None:
    """A spectator sees the players move but has no player of its own."""
    ada = await join(pages, site, "ada")
    watcher = await join(pages, site, "watcher", spectate=True)
    slot = await my_slot(ada)
    await until(watcher, "(slot) => window.game.latest()[slot]", slot)
    assert await watcher.evaluate("window.game.me()") is None
    await expect(watcher.locator("#scores li")).to_have_count(1)
    await expect(watcher.locator("#role")).to_have_text("spectating")


async def test_screenshot_three_players(pages: Pages, site: Site) -> None:
    """Three players in the arena; WIREHUB_SCREENSHOT=1 saves it to docs/."""
    size = {"viewport": {"width": 1240, "height": 760}, "device_scale_factor": 1}
    players = [await join(pages, site, name, **size) for name in ("ada", "bob", "carol")]
    slot = await my_slot(players[0])
    start = await until(players[0], "(slot) => window.game.latest()[slot]", slot)
    keys = ("ArrowRight" if start["x"] < 480 else "ArrowLeft", "ArrowDown", "ArrowUp")
    for page, key in zip(players, keys, strict=True):
        await page.keyboard.down(key)
    # Let them wander a little, so that the picture is not the starting grid.
    await until(players[0], f"(s) => Math.abs(window.game.latest()[s].x - {start['x']}) > 80", slot)
    for page, key in zip(players, keys, strict=True):
        await page.keyboard.up(key)
    await expect(players[0].locator("#scores li")).to_have_count(3)
    if os.environ.get("WIREHUB_SCREENSHOT") == "1":
        await players[0].screenshot(path=str(DOCS / "screenshot-game.png"))
