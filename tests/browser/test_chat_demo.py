"""The chat demo (examples/chat/) in real Chromium: rooms, presence, typing, history, restarts.

Set ``WIREHUB_SCREENSHOT=1`` to rewrite docs/screenshot-chat.png from
``test_screenshot_two_users_chatting``; normal runs leave the tree clean.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest_asyncio
from playwright.async_api import Locator, Page, expect

from tests.browser.conftest import BROWSER, Pages, Site
from wirehub import Hub

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "screenshot-chat.png"


def load_app() -> ModuleType:
    """examples/chat/app.py as a module (examples/ is not a package)."""
    module = sys.modules.get("chat_demo_app")
    if module is None:
        spec = importlib.util.spec_from_file_location(
            "chat_demo_app", ROOT / "examples/chat/app.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # msgspec resolves the Structs' annotations here
        spec.loader.exec_module(module)
    return module


pytestmark = BROWSER


@pytest_asyncio.fixture(loop_scope="session")
async def site(serve_hub: Callable[[Hub], Awaitable[Site]]) -> Site:
    """A fresh chat hub (from ``create_hub``) on a free port."""
    return await serve_hub(load_app().create_hub())


async def enter(pages: Pages, site: Site, name: str, room: str = "lobby", **options: Any) -> Page:
    """Open the chat as ``name`` in ``room`` and wait until the room is joined."""
    page = await pages.open(f"{site.url}/#{room}", **options)
    await page.fill("#name", name)
    await page.click("#name-form button")
    await expect(page.locator("#status")).to_have_text("connected")
    await expect(page.locator("#members li.me .name")).to_have_text(name)
    await expect(page.locator("#room-name")).to_have_text(f"#{room}")
    return page


async def say(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")


def bubbles(page: Page) -> Locator:
    return page.locator("#messages .message .bubble")


async def test_two_users_chat_and_a_third_room_hears_nothing(pages: Pages, site: Site) -> None:
    """Two pages in a room see each other's messages and presence; one elsewhere sees none."""
    ada = await enter(pages, site, "ada")
    bob = await enter(pages, site, "bob")
    await expect(ada.locator("#members .name")).to_have_text(["ada", "bob"])
    await expect(bob.locator("#members .name")).to_have_text(["bob", "ada"])
    await expect(ada.locator("#messages .note")).to_have_text(["bob joined"])
    carol = await enter(pages, site, "carol", room="elsewhere")

    await say(ada, "hello bob")
    await expect(bubbles(bob)).to_have_text(["hello bob"])
    await say(bob, "hi ada <b>not bold</b>")
    expected = ["hello bob", "hi ada <b>not bold</b>"]
    await expect(bubbles(ada)).to_have_text(expected)
    await expect(bubbles(bob)).to_have_text(expected)
    await expect(ada.locator("#messages .message.mine .bubble")).to_have_text(["hello bob"])
    await expect(bob.locator("#messages .message.first .author")).to_have_text(["ada", "bob"])
    await expect(ada.locator("#messages b")).to_have_count(0)  # text, never HTML

    # Carol's own message comes back after anything that could have leaked to her.
    await say(carol, "anyone here?")
    await expect(bubbles(carol)).to_have_text(["anyone here?"])
    await expect(carol.locator("#members .name")).to_have_text(["carol"])
    await expect(bubbles(ada)).to_have_text(expected)

    await bob.close()
    await expect(ada.locator("#members .name")).to_have_text(["ada"])
    await expect(ada.locator("#messages .note")).to_have_text(["bob joined", "bob left"])


async def test_typing_indicator_shows_then_expires(pages: Pages, site: Site) -> None:
    """Typing shows "bob is typing…" to the others only, and it disappears about 3 s later."""
    ada = await enter(pages, site, "ada")
    bob = await enter(pages, site, "bob")
    await bob.locator("#text").press_sequentially("hel")
    await expect(ada.locator("#typing")).to_have_text("bob is typing…")
    await expect(bob.locator("#typing")).to_have_text("")
    await expect(ada.locator("#typing")).to_have_text("")  # gone after about 3 s


async def test_history_on_join_includes_your_own_messages(pages: Pages, site: Site) -> None:
    """A newcomer sees the room's last messages; the author sees their own after a reload."""
    ada = await enter(pages, site, "ada", room="history")
    for text in ("one", "two", "three"):
        await say(ada, text)
    await expect(ada.locator("#messages .message:not(.pending) .bubble")).to_have_text(
        ["one", "two", "three"]
    )
    bob = await enter(pages, site, "bob", room="history")
    await expect(bubbles(bob)).to_have_text(["one", "two", "three"])
    await expect(bob.locator("#messages .message.first .author")).to_have_text(["ada"])

    await ada.reload()  # the nickname is remembered: straight back into the room
    await expect(ada.locator("#status")).to_have_text("connected")
    await expect(bubbles(ada)).to_have_text(["one", "two", "three"])
    await expect(ada.locator("#messages .message.mine")).to_have_count(3)


async def test_rooms_create_list_and_switch(pages: Pages, site: Site) -> None:
    """A room created from the form shows up in others' room list, where one click joins it."""
    ada = await enter(pages, site, "ada")
    bob = await enter(pages, site, "bob")
    await ada.fill("#new-room", "design")
    await ada.press("#new-room", "Enter")
    await expect(ada.locator("#room-name")).to_have_text("#design")
    await expect(ada.locator("#rooms li.joined .name")).to_have_text(["lobby", "design"])

    await bob.click("#refresh-rooms")
    await expect(bob.locator('#rooms li[data-room="design"] .count')).to_have_text("1")
    await bob.click('#rooms li[data-room="design"] button.room')
    await expect(bob.locator("#room-name")).to_have_text("#design")
    await expect(ada.locator("#members .name")).to_have_text(["ada", "bob"])
    await say(bob, "designing")
    await expect(bubbles(ada)).to_have_text(["designing"])

    await ada.click('#rooms li[data-room="lobby"] button.room')  # a message elsewhere: unread badge
    await say(bob, "still designing")
    await expect(ada.locator('#rooms li[data-room="design"] .unread')).to_have_text("1")


async def test_survives_a_server_restart(pages: Pages, site: Site) -> None:
    """Across a restart the page shows the banner, queues, then reconnects, re-joins and chats."""
    ada = await enter(pages, site, "ada")
    bob = await enter(pages, site, "bob")
    await say(ada, "before")
    await expect(bubbles(bob)).to_have_text(["before"])
    # Chromium logs each refused reconnection attempt; nothing else may be logged.
    pages.allow(r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws\?name=\w+' failed")

    await site.stop(1012)
    for page in (ada, bob):
        await expect(page.locator("#banner")).to_be_visible()
        await expect(page.locator("#banner")).to_contain_text("Reconnecting")
        await expect(page.locator("#status")).to_have_text("reconnecting…")
    await say(ada, "said while offline")
    await expect(ada.locator("#messages .message.pending .bubble")).to_have_text(
        "said while offline"
    )

    await site.start()  # same hub, same port
    for page in (ada, bob):
        await expect(page.locator("#banner")).to_be_hidden()
        await expect(page.locator("#status")).to_have_text("connected")
    await expect(ada.locator("#members .name")).to_have_text(["ada", "bob"])
    await expect(bubbles(bob)).to_have_text(["before", "said while offline"])
    await say(bob, "back")
    await expect(bubbles(ada)).to_have_text(["before", "said while offline", "back"])
    await expect(ada.locator("#messages .message.pending")).to_have_count(0)


async def test_restart_that_lost_history_marks_the_transcript(pages: Pages, site: Site) -> None:
    """When a new server cannot replay what was missed, the page says so and keeps what it shows."""
    ada = await enter(pages, site, "ada")
    bob = await enter(pages, site, "bob")
    await say(ada, "before")
    await expect(bubbles(bob)).to_have_text(["before"])
    pages.allow(r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws\?name=\w+' failed")

    await site.stop(1012)
    await expect(ada.locator("#banner")).to_be_visible()
    site.hub = load_app().create_hub()  # a new process: its rooms have new epochs, no history
    await site.start()
    for page in (ada, bob):
        await expect(page.locator("#banner")).to_be_hidden()
        await expect(page.locator("#messages .note.gap")).to_have_text(
            "Some messages may be missing — reload"
        )
        await expect(bubbles(page)).to_have_text(["before"])
    await expect(ada.locator("#members .name")).to_have_text(["ada", "bob"])
    await say(bob, "fresh start")
    await expect(bubbles(ada)).to_have_text(["before", "fresh start"])
    await ada.click("#messages .note.gap button")  # reload: the new server's history only
    await expect(bubbles(ada)).to_have_text(["fresh start"])
    await expect(ada.locator("#messages .note.gap")).to_have_count(0)


async def test_narrow_screen_uses_drawers(pages: Pages, site: Site) -> None:
    """On a phone-sized screen the side panels are drawers and the conversation fills the width."""
    phone = {"viewport": {"width": 380, "height": 720}, "is_mobile": True, "has_touch": True}
    ada = await enter(pages, site, "ada", **phone)
    rooms = ada.locator("#rooms-panel")
    await expect(rooms).not_to_be_in_viewport()
    await expect(ada.locator("#composer")).to_be_in_viewport()
    await ada.click("#toggle-rooms")
    await expect(rooms).to_be_in_viewport()
    await ada.click("#scrim", position={"x": 360, "y": 400})
    await expect(rooms).not_to_be_in_viewport()
    await say(ada, "from my phone")
    await expect(bubbles(ada)).to_have_text(["from my phone"])
    box = await ada.locator("#messages").bounding_box()
    assert box is not None and box["width"] >= 370


async def test_screenshot_two_users_chatting(pages: Pages, site: Site) -> None:
    """Two users chat, another room unread; WIREHUB_SCREENSHOT=1 saves it to docs/."""
    size = {"viewport": {"width": 1180, "height": 700}, "device_scale_factor": 1}
    ada = await enter(pages, site, "ada", **size)
    bob = await enter(pages, site, "bob", **size)
    await bob.fill("#new-room", "design")
    await bob.press("#new-room", "Enter")
    await ada.click("#refresh-rooms")
    await ada.click('#rooms li[data-room="design"] button.room')
    await expect(ada.locator("#room-name")).to_have_text("#design")
    await ada.click('#rooms li[data-room="lobby"] button.room')
    await say(bob, "Mockups for the room list are up.")
    await bob.click('#rooms li[data-room="lobby"] button.room')
    conversation = [
        (ada, "Hi Bob! The new release is out: rooms, presence and history all work."),
        (bob, "Nice! Reconnects too?"),
        (ada, "Yes. Restart the server and the page re-joins; what it missed is replayed."),
        (ada, "And what you send while offline is queued, then delivered once it is back."),
        (bob, "Trying it now"),
    ]
    for page, text in conversation:
        await say(page, text)
        await expect(bubbles(ada).last).to_have_text(text)
    await expect(bubbles(bob)).to_have_count(len(conversation))
    await expect(ada.locator('#rooms li[data-room="design"] .unread')).to_have_text("1")
    await bob.locator("#text").press_sequentially("Looks great")
    await expect(ada.locator("#typing")).to_have_text("bob is typing…")
    await expect(ada.locator("#latency")).to_have_text(re.compile(r"^\d+ ms$"))
    await ada.mouse.move(600, 520)  # no hover effect in the picture
    if os.environ.get("WIREHUB_SCREENSHOT") == "1":
        await ada.screenshot(path=str(SCREENSHOT))
