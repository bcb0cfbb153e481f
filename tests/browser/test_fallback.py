"""The HTTP fallback in real Chromium, on ``wirehub serve --workers 2 --redis``.

Four members of one room: a page whose ``window.WebSocket`` is removed, a
page behind an nginx that refuses the upgrade and buffers responses, a
WebSocket page and a Python client. They chat, survive two server restarts
(one recovered, one not: a gap, reported alike by all four), and keep going.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Page, expect

from tests.apps import fallback_chat
from tests.browser.conftest import BROWSER, Pages, Site
from tests.browser.test_chat_demo import load_app
from tests.conftest import UNIT
from tests.services import free_port
from tests.test_cli import START, served_url
from tests.test_deploy import nginx
from wirehub import Client, Emitter, Hub
from wirehub.client import Gap
from wirehub.client.reconnect import Reconnect

pytestmark = BROWSER

ROOT = Path(__file__).resolve().parents[2]
APP = "tests/apps/fallback_chat.py:hub"
FAST = {"reconnect": {"initialDelay": 100, "maxDelay": 500}}

# A proxy of the kind the fallback is for: it strips the WebSocket upgrade
# (the hub answers 426) and compresses every response, which holds a
# stream's bytes back until a compression buffer fills.
REFUSING = """\
server {{
    listen 127.0.0.1:{port};
    location / {{
        proxy_pass http://127.0.0.1:{node};
        proxy_http_version 1.1;
        proxy_set_header Host $http_host;
        proxy_set_header Upgrade "";
        proxy_set_header Connection "";
        proxy_ignore_headers X-Accel-Buffering;
        gzip on;
        gzip_types application/octet-stream;
        gzip_min_length 0;
    }}
}}
"""


def refusing(nodes: list[int], port: int) -> str:
    return REFUSING.format(port=port, node=nodes[0])


class Served:
    """``wirehub serve --workers 2 --redis`` on one port, stopped and started again."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.args = ["--redis", redis_url, "--redis-prefix", prefix, "--shutdown-code", "1012"]
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wirehub", "serve", APP, "--workers", "2",
            "--port", str(self.port), *self.args,
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await served_url(self.process)

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), START)
        except TimeoutError:
            process.kill()
        _, stderr = await process.communicate()
        assert b"Traceback" not in stderr, stderr.decode(errors="replace")


@pytest_asyncio.fixture(loop_scope="session")
async def served(redis_url: str, prefix: str) -> AsyncIterator[Served]:
    served = Served(redis_url, prefix)
    await served.start()
    try:
        yield served
    finally:
        await served.stop()


async def member(page: Page, **options: Any) -> str:
    """Connect the page's client, record what it gets, join the lobby; its transport."""
    transport: str = await page.evaluate(
        """async (options) => {
          window.log = { said: [], gaps: [] };
          const hub = (window.hub = wirehub.connect("/ws", options));
          hub.on("said", (data) => log.said.push(data));
          hub.on("gap", (gap) => log.gaps.push(gap));
          await hub.join("lobby");
          return hub.transport;
        }""",
        FAST | options,
    )
    return transport


class Python:
    """The Python client as a member: what it got, the same way as the pages."""

    def __init__(self, url: str) -> None:
        self.client = Client(url, reconnect=Reconnect(initial_delay=0.1, max_delay=0.5))
        self.said: list[Any] = []
        self.gaps: list[dict[str, Any]] = []
        self.back = asyncio.Event()
        self.client.on("said", self.said.append)
        self.client.on("gap", self._gap)
        self.client.on("reconnect", lambda: self.back.set())

    def _gap(self, gap: Gap) -> None:
        def position(p: Any) -> dict[str, Any] | None:
            return None if p is None else {"epoch": p.epoch, "offset": p.offset}

        self.gaps.append(
            {"room": gap.room, "reason": gap.reason, "last": position(gap.last),
             "position": position(gap.position), "detail": gap.detail}
        )  # fmt: skip


async def restart(served: Served, browsers: list[Page], python: Python, meanwhile: Any) -> None:
    """Stop ``served``, call ``meanwhile()``, start it again: return once every member is
    back in the lobby (its re-join answered, recovered or not)."""
    for page in browsers:
        await page.evaluate("() => { window.back = new Promise((r) => hub.on('reconnect', r)); }")
    python.back.clear()
    await served.stop()
    meanwhile()
    await served.start()
    for page in browsers:
        await page.evaluate("() => back")
    await asyncio.wait_for(python.back.wait(), 10 * UNIT)


async def test_fallback_pages_chat_and_recover_like_websocket_ones(
    pages: Pages, served: Served, redis_url: str, prefix: str
) -> None:
    """A page without WebSocket (streaming) and one behind a proxy refusing the upgrade and
    buffering (long-polling) chat with a WebSocket page and a Python client through two
    workers, recover what they missed during a restart, and report the same gap after one
    whose events are no longer kept."""
    pages.allow(r"WebSocket connection to .* failed|Failed to load resource")
    direct = f"http://127.0.0.1:{served.port}"
    with nginx(
        [served.port], conf=lambda nodes, port: REFUSING.format(port=port, node=nodes[0])
    ) as proxy:
        bare = await pages.open(direct + "/")
        await bare.add_init_script("delete window.WebSocket")
        await bare.reload()
        behind = await pages.open(f"http://127.0.0.1:{proxy}/")
        plain = await pages.open(direct + "/")
        browsers = [bare, behind, plain]
        for page in browsers:
            await page.wait_for_function("window.wirehub !== undefined")
        assert await member(bare) == "streaming"
        assert await member(behind, wsTimeout=2000) == "long-polling"
        assert await member(plain, probeInterval=int(500 * UNIT)) == "websocket"
        python = Python(f"ws://127.0.0.1:{served.port}/ws")
        async with python.client:
            await python.client.join("lobby")

            async def everyone_got(*said: Any) -> None:
                expected = list(said)
                for page in browsers:
                    await page.wait_for_function(
                        "(n) => log.said.length >= n", arg=len(expected), timeout=10_000 * UNIT
                    )
                    assert await page.evaluate("log.said") == expected
                async with asyncio.timeout(10 * UNIT):
                    while len(python.said) < len(expected):
                        await asyncio.sleep(UNIT / 20)
                assert python.said == expected

            for n, page in enumerate(browsers):
                await page.evaluate("(n) => hub.call('say', n)", n)
            await python.client.call("say", 3)
            await everyone_got(0, 1, 2, 3)

            def publish(n: int, history: int = 100) -> None:
                with Emitter(redis_url, prefix=prefix, history_size=history) as emitter:
                    for text in ["while away"] if n == 1 else [f"lost {i}" for i in range(n)]:
                        emitter.emit("said", text, room="lobby")

            # A restart: what was published meanwhile is recovered, in order, once.
            await restart(served, browsers, python, lambda: publish(1))
            for page in browsers:
                await page.evaluate("() => hub.call('say', 'back')")
            await everyone_got(0, 1, 2, 3, "while away", "back", "back", "back")

            # Another, while more was published than the room keeps: a gap, the same for all.
            await restart(served, browsers, python, lambda: publish(3, history=1))
            await python.client.call("say", "after")
            await everyone_got(0, 1, 2, 3, "while away", "back", "back", "back", "after")
            gaps = [await page.evaluate("log.gaps") for page in browsers] + [python.gaps]
            assert gaps[0] and all(g == gaps[0] for g in gaps), gaps
            assert [g["reason"] for g in gaps[0]] == ["recovery"]
        # A restart may put the WebSocket page on the fallback for a while: it comes back.
        await plain.wait_for_function("hub.transport === 'websocket'")
        transports = [await page.evaluate("hub.transport") for page in browsers]
        assert transports == ["streaming", "long-polling", "websocket"]


async def test_a_fallback_page_upgrades_to_websocket(pages: Pages, serve_hub: Any) -> None:
    """A page that started on the fallback moves to a WebSocket once one works, and its room
    goes on without a gap: what was sent in between is recovered."""
    hub = Hub()
    site: Site = await serve_hub(hub)
    hub.add_route("/", fallback_chat.page)

    @hub.on("say")
    async def say(peer: Any, data: Any) -> None:
        await hub.to("lobby").emit("said", data)

    page = await pages.open(site.url + "/")
    await page.wait_for_function("window.wirehub !== undefined")
    assert await member(page, fallbackAfter=0, probeInterval=int(1000 * UNIT)) == "streaming"
    await page.evaluate("() => { window.upgraded = new Promise((r) => hub.on('reconnect', r)); }")
    await site.emit("said", "before", room="lobby")
    outcome = await page.evaluate("() => upgraded")
    assert outcome["gaps"] == []
    assert await page.evaluate("hub.transport") == "websocket"
    await page.evaluate("() => hub.call('say', 'after')")
    await page.wait_for_function("log.said.length === 2")
    assert await page.evaluate("[log.said, log.gaps]") == [["before", "after"], []]


async def test_the_chat_demo_says_it_is_on_the_fallback(pages: Pages, serve_hub: Any) -> None:
    """The chat demo's status pill says "connected (HTTP fallback)" without WebSocket."""
    site: Site = await serve_hub(load_app().create_hub())
    page = await pages.open(site.url + "/")
    await page.add_init_script("delete window.WebSocket")
    await page.reload()
    await page.fill("#name", "ada")
    await page.click("#name-form button")
    await expect(page.locator("#status")).to_have_text("connected (HTTP fallback)")


@pytest.mark.parametrize("transport", ["long-polling", "streaming"])
async def test_a_closed_tab_leaves_at_once(pages: Pages, serve_hub: Any, transport: str) -> None:
    """A fallback page whose tab closes tells the server (a keepalive close on ``pagehide``):
    the room hears its ``leave`` within a second, not after ``Timeouts.session`` (20 s)."""
    hub = Hub(presence=True)
    site: Site = await serve_hub(hub)
    hub.add_route("/", fallback_chat.page)
    async with Client(f"ws://127.0.0.1:{site.port}/ws") as watcher:
        changes: asyncio.Queue[Any] = asyncio.Queue()
        watcher.on("presence", changes.put_nowait)
        await watcher.join("lobby")
        page = await pages.open(site.url + "/")
        await page.wait_for_function("window.wirehub !== undefined")
        assert await member(page, transports=[transport]) == transport
        joined = await asyncio.wait_for(changes.get(), UNIT)
        assert joined.joined is not None
        await page.close(run_before_unload=True)  # as a user closing the tab
        left = await asyncio.wait_for(changes.get(), UNIT)
        assert left.left is not None and left.left["id"] == joined.joined["id"]
