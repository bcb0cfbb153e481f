"""The collaborative editor (examples/editor/) in real Chromium: concurrent edits converge.

Set ``WIREHUB_SCREENSHOT=1`` to rewrite docs/screenshot-editor.png.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest_asyncio
from playwright.async_api import Page, expect

from tests.browser.conftest import BROWSER, WAIT_MS, Pages, Site
from tests.browser.examples import DOCS, load_example
from tests.conftest import UNIT
from wirehub import Hub, Peer
from wirehub.hub.handlers import HandlerSpec

pytestmark = BROWSER

REFUSED = r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws\?doc=\w+&name=\w+' failed"


@pytest_asyncio.fixture(loop_scope="session")
async def site(serve_hub: Callable[[Hub], Awaitable[Site]], tmp_path: Path) -> Site:
    """An editor hub on a free port, its documents in a fresh SQLite file."""
    app = load_example("editor")
    store = app.Store(tmp_path / "editor.db")
    site = await serve_hub(app.create_hub(store))
    site.store = store  # type: ignore[attr-defined]
    return site


async def open_editor(
    pages: Pages, site: Site, name: str, doc: str = "test", **options: object
) -> Page:
    page = await pages.open(f"{site.url}/?doc={doc}&name={name}", **options)
    await expect(page.locator("#status")).to_have_text("connected")
    await expect(page.locator("#text")).to_be_enabled()
    return page


async def text_of(page: Page) -> str:
    return str(await page.evaluate("window.editor.ytext.toString()"))


async def converged(*pages: Page) -> str:
    """Wait until every page (and its textarea) shows the same text; return it."""
    deadline = asyncio.get_running_loop().time() + WAIT_MS / 1000
    while True:
        texts = [await text_of(page) for page in pages]
        shown = [await page.input_value("#text") for page in pages]
        if len(set(texts + shown)) == 1:
            return texts[0]
        assert asyncio.get_running_loop().time() < deadline, f"never converged: {texts} {shown}"
        await asyncio.sleep(UNIT / 50)


def server_text(site: Site, doc: str = "test") -> str:
    return str(site.store.doc(doc)["text"])  # type: ignore[attr-defined]


async def test_concurrent_typing_at_the_same_place_converges(pages: Pages, site: Site) -> None:
    """Two pages typing at once at the same position end with the same text, nothing lost."""
    ada = await open_editor(pages, site, "ada")
    bob = await open_editor(pages, site, "bob")
    await ada.locator("#text").press_sequentially("shared: ")
    assert await converged(ada, bob) == "shared: "
    await bob.locator("#text").press("Control+End")  # the same place: after "shared: "
    await asyncio.gather(
        ada.locator("#text").press_sequentially("aaaaa", delay=15),
        bob.locator("#text").press_sequentially("bbbbb", delay=15),
    )
    # Each caret sticks to its own last character, so each run stays whole (Yjs orders
    # two runs typed at one place by client id).
    final = await converged(ada, bob)
    assert final in ("shared: aaaaabbbbb", "shared: bbbbbaaaaa")
    assert server_text(site) == final
    await expect(ada.locator("#people li")).to_have_count(2)


async def test_a_remote_edit_before_the_caret_moves_it_with_the_text(
    pages: Pages, site: Site
) -> None:
    """Text someone inserts before your caret moves it along: what you type next goes
    where you were typing, not as many characters earlier."""
    ada = await open_editor(pages, site, "ada")
    bob = await open_editor(pages, site, "bob")
    await ada.locator("#text").press_sequentially("hello ")
    await converged(ada, bob)
    await bob.locator("#text").press("Control+Home")
    await bob.locator("#text").press_sequentially(">> ")
    assert await converged(ada, bob) == ">> hello "
    await ada.locator("#text").press_sequentially("world")
    assert await converged(ada, bob) == ">> hello world"


async def test_a_cut_connection_catches_up_both_ways(pages: Pages, site: Site) -> None:
    """Edits made while a page's connection is cut reach the others once it is back, and back."""
    ada = await open_editor(pages, site, "ada")
    bob = await open_editor(pages, site, "bob")
    await ada.locator("#text").press_sequentially("one ")
    await converged(ada, bob)
    pages.allow(REFUSED)
    [peer] = [p for p in site.hub.peers.values() if p.info["name"] == "bob"]
    await peer.close(1012, "cut by the test")
    await expect(bob.locator("#status")).not_to_have_text("connected")
    await bob.locator("#text").press("Control+End")
    await bob.locator("#text").press_sequentially("offline-bob ")
    await ada.locator("#text").press("Control+End")
    await ada.locator("#text").press_sequentially("online-ada ")
    await expect(bob.locator("#status")).to_have_text("connected")
    final = await converged(ada, bob)
    assert "offline-bob " in final and "online-ada " in final and final.startswith("one ")
    assert server_text(site) == final


async def test_edits_typed_while_a_sync_runs_reach_the_others(pages: Pages, site: Site) -> None:
    """What a page types while its sync after a reconnection is running is sent once the
    sync is done (it was left for "the next sync", which may never come)."""
    ada = await open_editor(pages, site, "ada")
    bob = await open_editor(pages, site, "bob")
    await ada.locator("#text").press_sequentially("one ")
    await converged(ada, bob)
    entered, release = asyncio.Event(), asyncio.Event()
    answer = site.hub.node.handlers["sync"]

    async def held(peer: Peer, state_vector: bytes) -> bytes:
        entered.set()
        await release.wait()
        return bytes(answer.func(peer, state_vector))

    site.hub.node.handlers["sync"] = HandlerSpec.inspect(held)
    pages.allow(REFUSED)
    [peer] = [p for p in site.hub.peers.values() if p.info["name"] == "bob"]
    await peer.close(1012, "cut by the test")
    await asyncio.wait_for(entered.wait(), WAIT_MS / 1000)  # bob's sync is under way
    await bob.locator("#text").press("Control+End")
    await bob.locator("#text").press_sequentially("two")
    release.set()
    assert await converged(ada, bob) == "one two"
    assert server_text(site) == "one two"


async def test_a_server_restart_loses_nothing(pages: Pages, site: Site, tmp_path: Path) -> None:
    """A new server process reloads the document from SQLite; the pages sync with it."""
    ada = await open_editor(pages, site, "ada")
    bob = await open_editor(pages, site, "bob")
    await ada.locator("#text").press_sequentially("kept across restarts. ")
    before = await converged(ada, bob)
    pages.allow(REFUSED)
    await site.stop(1012)
    await expect(ada.locator("#status")).not_to_have_text("connected")
    app = load_example("editor")
    site.store = app.Store(tmp_path / "editor.db")  # type: ignore[attr-defined]
    site.hub = app.create_hub(site.store)  # type: ignore[attr-defined]  # a new process
    assert server_text(site) == before
    await site.start()
    await expect(ada.locator("#status")).to_have_text("connected")
    await bob.locator("#text").press("Control+End")
    await bob.locator("#text").press_sequentially("after")
    assert await converged(ada, bob) == before + "after"


async def test_screenshot_two_people_editing(pages: Pages, site: Site) -> None:
    """Two people edit one document and see each other's cursor; WIREHUB_SCREENSHOT=1 saves it."""
    size = {"viewport": {"width": 1100, "height": 640}, "device_scale_factor": 1}
    ada = await open_editor(pages, site, "ada", doc="notes", **size)
    bob = await open_editor(pages, site, "bob", doc="notes", **size)
    await ada.locator("#text").press_sequentially(
        "Release notes\n\nwirehub now ships three more apps: a live dashboard, this editor and "
        "a small multiplayer game.\n\n"
    )
    await converged(ada, bob)
    await bob.locator("#text").press("Control+End")
    await bob.locator("#text").press_sequentially(
        "Edits merge as a CRDT, so nobody's typing is lost."
    )
    await converged(ada, bob)
    where = str(await bob.evaluate("document.querySelector('#text').selectionStart"))
    await expect(ada.locator("#cursors .cursor")).to_have_attribute("data-index", where)
    await expect(ada.locator("#cursors .cursor span")).to_have_text("bob")
    if os.environ.get("WIREHUB_SCREENSHOT") == "1":
        await ada.screenshot(path=str(DOCS / "screenshot-editor.png"))
