"""Browser fixtures: Debian's headless Chromium driven by Playwright, servers in the same loop.

One Chromium serves the whole session, so these tests and their fixtures run
in pytest-asyncio's session-scoped event loop (every module here sets
``pytestmark = BROWSER``), with Playwright's async API. (Its sync API would
leave its own event loop marked as running on the main thread for the whole
session, which breaks every later asyncio test.) Servers run in that same
loop on 127.0.0.1 and a free port, and can stop and start again on the same
port. Every page gets its own context (its own storage, like a separate
user). Every test fails if a page logged a console error or raised an
uncaught exception, unless the test declared that message expected.

These tests never skip: Chromium is a test dependency (``make test`` installs
it with scripts/system-deps.sh), and a missing one is an error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    async_playwright,
    expect,
)

from tests.conftest import UNIT
from wirehub import Hub
from wirehub.server.serve import Server

BROWSER = pytest.mark.asyncio(loop_scope="session")
"""The mark of every browser test: run in the session's loop, with the browser."""

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 5000 * UNIT
"""How long a page may take to show what a test waits for (Playwright counts in ms)."""


# -- servers ---------------------------------------------------------------------------


@dataclasses.dataclass
class Site:
    """A hub served on one port; it can stop and start again on the same port."""

    hub: Hub
    port: int = 0
    server: Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on ``port`` (a free one the first time; the same one after a stop)."""
        self.server = Server(self.hub)
        [(_, self.port)] = await self.server.listen("127.0.0.1", self.port)

    async def stop(self, code: int = 1012) -> None:
        """Shut the server down, closing every client with ``code`` (1012: restarting)."""
        server, self.server = self.server, None
        if server is not None:
            await server.shutdown(code, timeout=UNIT)

    async def emit(self, event: str, data: Any = None, *, room: str | None = None) -> None:
        """Emit from the server, as the application would."""
        await (self.hub.to(room) if room is not None else self.hub).emit(event, data)


@pytest_asyncio.fixture(loop_scope="session")
async def serve_hub() -> AsyncIterator[Callable[[Hub], Any]]:
    """``site = await serve_hub(hub)``: serve ``hub`` on a free port until the test ends."""
    sites: list[Site] = []

    async def start(hub: Hub) -> Site:
        site = Site(hub)
        await site.start()
        sites.append(site)
        return site

    yield start
    for site in sites:
        await site.stop(1001)


# -- the browser ---------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the session.

    ``launch`` gives it a fresh temporary profile directory of its own (it
    refuses a ``--user-data-dir`` argument) and deletes it on close.
    """
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run scripts/system-deps.sh"
    expect.set_options(timeout=WAIT_MS)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@dataclasses.dataclass
class Pages:
    """Opens pages, each in a new context, and collects what they log as errors."""

    browser: Browser
    errors: list[str] = dataclasses.field(default_factory=list)
    allowed: list[re.Pattern[str]] = dataclasses.field(default_factory=list)
    contexts: list[BrowserContext] = dataclasses.field(default_factory=list)

    async def open(self, url: str, **context_options: Any) -> Page:
        """A new page (in its own context: its own storage) showing ``url``."""
        context = await self.browser.new_context(**context_options)
        context.set_default_timeout(WAIT_MS)
        self.contexts.append(context)
        page = await context.new_page()
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        await page.goto(url)
        return page

    def allow(self, pattern: str) -> None:
        """Tolerate console errors matching ``pattern`` (e.g. a refused reconnection)."""
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    async def close(self) -> None:
        for context in self.contexts:
            with contextlib.suppress(Error):  # already closed by the test
                await context.close()


@pytest_asyncio.fixture(loop_scope="session")
async def pages(browser: Browser, serve_hub: Any) -> AsyncIterator[Pages]:
    """Open pages with ``await pages.open(url)``; the test fails if any logged an error.

    It uses ``serve_hub`` only so that the pages close before the servers stop:
    a page that saw its server go away would log its reconnection attempts.
    """
    opened = Pages(browser)
    yield opened
    await opened.close()
    assert opened.unexpected() == [], "the pages logged errors"
