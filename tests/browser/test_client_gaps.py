"""wirehub.js verifies room streams in Chromium: notices, recovery gaps, jumps, epochs, skips.

The gap sources of tests/client/test_gaps.py and test_stream_checks.py, on
the same paths (a broker losing live deliveries, which the node fills or
announces; a reconnection whose missed events are gone; a ``gap`` notice; a
hand-written server that skips offsets and changes epoch), each checked for
order: the gap is reported before any later event.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from playwright.async_api import Page

from tests.browser.conftest import BROWSER, Pages, Site
from tests.browser.test_client_api import PAGE, open_page
from tests.client.scripted import ScriptedRoom
from tests.client.test_gaps import LossyBroker
from tests.hub.test_server_joins import with_joins
from wirehub import Hub, MemoryBroker, Peer, Response, WebSocket
from wirehub.protocol import messages as wire

pytestmark = BROWSER

Serve = Callable[[Hub], Awaitable[Site]]


def room_hub(broker: MemoryBroker) -> Hub:
    """A hub with the test page, a ``notice`` event (the hub sends a gap notice) and ``shout``."""
    hub = Hub(broker=broker)
    hub.add_route("/", lambda request: Response.text(PAGE, content_type="text/html"))

    @hub.on("notice")
    async def notice(peer: Peer, data: dict[str, Any]) -> None:
        gap = wire.Gap(data["room"], data["epoch"], data["offset"], "test notice")
        peer.send(wire.encode(gap), True)

    @hub.on("shout")
    async def shout(peer: Peer, text: str) -> None:
        await hub.to("news").emit("said", text, exclude=peer)

    return with_joins(hub)  # enter/kick: server-side join and leave


async def joined(pages: Pages, site: Site) -> tuple[Page, str]:
    """A page whose client joined ``news`` and logs ``said`` events and gaps, in order."""
    page = await open_page(pages, site)
    epoch = await page.evaluate(
        """async () => {
          window.log = [];
          const reconnect = { initialDelay: 20, jitter: 0 };
          const hub = window.hub = wirehub.connect("/ws", { reconnect });
          hub.on("said", (data) => log.push(["said", data]));
          hub.on("gap", (gap) => log.push(["gap", gap]));
          return (await hub.join("news")).epoch;
        }"""
    )
    return page, epoch


async def logged(page: Page, count: int) -> list[Any]:
    """The page's log once it has ``count`` entries (after a ping: nothing more is on its way)."""
    await page.wait_for_function(f"log.length >= {count}")
    await page.evaluate("() => hub.ping()")
    result: list[Any] = await page.evaluate("() => log")
    return result


def gap(reason: str, last: tuple[str, int] | None, position: tuple[str, int] | None) -> Any:
    def at(where: tuple[str, int] | None) -> Any:
        return None if where is None else {"epoch": where[0], "offset": where[1]}

    return ["gap", {"room": "news", "reason": reason, "last": at(last), "position": at(position),
                    "detail": ""}]  # fmt: skip


async def test_lost_deliveries_are_filled_or_announced_before_later_events(
    pages: Pages, serve_hub: Serve
) -> None:
    """Events the node missed but history keeps arrive in order; the rest is its notice first."""
    broker = LossyBroker(history_size=3)
    site = await serve_hub(room_hub(broker))
    page, epoch = await joined(pages, site)
    await site.emit("said", 1, room="news")
    broker.lose = 2
    for n in (2, 3, 4):
        await site.emit("said", n, room="news")  # 2 and 3 are lost, then filled
    assert await logged(page, 4) == [["said", n] for n in (1, 2, 3, 4)]
    broker.lose = 4
    for n in (5, 6, 7, 8, 9):
        await site.emit("said", n, room="news")  # 5 to 8 lost; history keeps 7, 8, 9
    await site.emit("said", 10, room="news")
    notice = gap("server", (epoch, 4), (epoch, 8))
    notice[1]["detail"] = "evicted"
    assert (await logged(page, 7))[4:] == [notice, ["said", 9], ["said", 10]]


async def test_a_server_notice_and_an_excluded_event(pages: Pages, serve_hub: Serve) -> None:
    """A ``gap`` notice is a ``server`` gap where it arrives; an event excluding us is a
    ``skip``, no gap even where history keeps nothing (a re-join could not recover it)."""
    site = await serve_hub(room_hub(MemoryBroker(history_size=0)))
    page, epoch = await joined(pages, site)
    await page.evaluate("() => hub.call('shout', 'mine')")  # offset 1, not for this client
    await site.emit("said", 2, room="news")
    assert await logged(page, 1) == [["said", 2]]
    notice = {"room": "news", "epoch": epoch, "offset": 4}
    await page.evaluate(f"() => hub.call('notice', {json.dumps(notice)})")
    for n in (3, 4, 5):  # 3 and 4 are covered by the notice
        await site.emit("said", n, room="news")
    expected = gap("server", (epoch, 2), (epoch, 4))
    expected[1]["detail"] = "test notice"
    assert (await logged(page, 3))[1:] == [expected, ["said", 5]]


async def test_a_reconnection_that_cannot_recover_is_a_gap(pages: Pages, serve_hub: Serve) -> None:
    """History gone while the page was away: a ``recovery`` gap before the next event."""
    hub = room_hub(MemoryBroker(history_size=2))
    site = await serve_hub(hub)
    page, epoch = await joined(pages, site)
    await page.evaluate("() => { window.back = new Promise((r) => hub.on('reconnect', r)); }")
    await site.stop()
    for n in range(5):
        await hub.to("news").emit("said", n)
    await site.start()
    reconnected = await page.evaluate("() => back")
    assert reconnected["gaps"] == ["news"]
    await site.emit("said", "live", room="news")
    assert await logged(page, 2) == [gap("recovery", (epoch, 0), (epoch, 5)), ["said", "live"]]


async def test_a_room_the_server_joined_is_recovered_after_a_restart(
    pages: Pages, serve_hub: Serve
) -> None:
    """``enter`` joins ``game`` server-side: ``joined`` fires, and after a restart the page
    re-joins it with ``since`` and gets what was published while it was away, in order."""
    hub = room_hub(MemoryBroker())
    site = await serve_hub(hub)
    page, _ = await joined(pages, site)
    await page.evaluate(
        """async () => {
          window.back = new Promise((r) => hub.on("reconnect", r));
          hub.on("joined", (room) => log.push(["joined", room]));
          await hub.call("enter", "game");
        }"""
    )
    await site.emit("said", 1, room="game")
    assert await logged(page, 2) == [["joined", "game"], ["said", 1]]
    assert sorted(await page.evaluate("() => hub.rooms")) == ["game", "news"]
    await site.stop()
    for n in (2, 3):
        await hub.to("game").emit("said", n)
    await site.start()
    reconnected = await page.evaluate("() => back")
    assert reconnected["recovered"] == {"news": True, "game": True}
    await site.emit("said", 4, room="game")
    assert (await logged(page, 5))[1:] == [["said", n] for n in (1, 2, 3, 4)]


async def test_a_kicked_room_is_forgotten_and_not_replayed(pages: Pages, serve_hub: Serve) -> None:
    """``kick`` takes the page out of ``news``: ``left`` fires, ``rooms`` drops it, and after a
    restart it is not re-joined, so what was published after the kick never arrives."""
    hub = room_hub(MemoryBroker())
    site = await serve_hub(hub)
    page, _ = await joined(pages, site)
    await page.evaluate(
        """async () => {
          window.back = new Promise((r) => hub.on("reconnect", r));
          hub.on("left", (room) => log.push(["left", room]));
          await hub.join("other");
          await hub.call("kick", "news");
        }"""
    )
    assert await logged(page, 1) == [["left", "news"]]
    assert await page.evaluate("() => hub.rooms") == ["other"]
    await site.emit("said", "while kicked", room="news")
    await site.stop()
    await site.start()
    assert (await page.evaluate("() => back"))["recovered"] == {"other": True}
    assert set(hub.rooms) == {"other"}
    await site.emit("said", "after", room="other")
    assert await logged(page, 2) == [["left", "news"], ["said", "after"]]


def early_hub() -> Hub:
    """A hand-written server that sends an event and a presence before its ``welcome``."""
    hub = Hub(events_path=None)
    hub.add_route("/", lambda request: Response.text(PAGE, content_type="text/html"))

    @hub.websocket("/early")
    async def early(ws: WebSocket) -> None:
        await ws.send(json.dumps({"type": "event", "event": "said", "data": "early"}))
        await ws.send(json.dumps({"type": "presence", "room": "news", "joined": {"id": "x"}}))
        limits = {"max_message_size": None, "max_rooms": None, "max_pending": None}
        welcome = {"type": "welcome", "v": 1, "peer": "p", "ping_interval": None}
        await ws.send(json.dumps(welcome | {"limits": limits, "rooms": {}}))
        async for _ in ws:
            pass

    return hub


async def test_messages_before_the_welcome_are_handled_after_it(
    pages: Pages, serve_hub: Serve
) -> None:
    """A server that emits before ``welcome`` (the emit-in-connect case): nothing is lost."""
    site = await serve_hub(early_hub())
    page = await open_page(pages, site)
    seen = await page.evaluate(
        """async () => {
          const seen = [];
          const hub = wirehub.connect("/early", { heartbeat: null });
          hub.on("connect", () => seen.push("connect"));
          hub.on("said", (data) => seen.push(data));
          hub.on("presence", (change) => seen.push(change.room));
          await hub.ready();
          await new Promise((resolve) => setTimeout(resolve, 0));
          await hub.close();
          return seen;
        }"""
    )
    assert seen == ["connect", "early", "news"]


async def test_an_emit_in_the_connect_handler_reaches_the_page(
    pages: Pages, serve_hub: Serve
) -> None:
    """``await peer.emit(...)`` in the ``connect`` handler arrives (the Flask-SocketIO habit)."""
    hub = room_hub(MemoryBroker())

    @hub.on("connect")
    async def hello(peer: Peer) -> None:
        await peer.emit("said", "hello")

    site = await serve_hub(hub)
    page = await open_page(pages, site)
    said = await page.evaluate(
        """() => new Promise((resolve) => wirehub.connect("/ws").on("said", resolve))"""
    )
    assert said == "hello"


async def test_the_page_checks_offsets_itself(pages: Pages, serve_hub: Serve) -> None:
    """Against a server that skips offsets and changes epoch (a hub's node never does):
    the re-join refills what history keeps; the rest is a ``jump``, then an ``epoch`` gap."""
    room = ScriptedRoom(keep=3)
    site = await serve_hub(room.hub(PAGE))
    page, _ = await joined(pages, site)
    await room.publish(1)
    await room.publish(2, live=False)
    await room.publish(3)  # 2 is refilled by the re-join
    assert await logged(page, 3) == [["said", n] for n in (1, 2, 3)]
    for n in (4, 5, 6, 7):
        await room.publish(n, live=False)
    await room.publish(8)  # history keeps 6, 7, 8 only
    assert (await logged(page, 5))[3:] == [gap("jump", ("E1", 3), ("E1", 7)), ["said", 8]]
    room.new_epoch()
    await room.publish("new")
    assert (await logged(page, 7))[5:] == [gap("epoch", ("E1", 8), ("E2", 0)), ["said", "new"]]
    assert [join.get("since") for join in room.joins] == [
        None,
        {"epoch": "E1", "offset": 1},
        {"epoch": "E1", "offset": 3},
        {"epoch": "E1", "offset": 8},
    ]


async def test_the_page_checks_skips_like_events(pages: Pages, serve_hub: Serve) -> None:
    """A ``skip`` takes its offset without a re-join; one past a hole re-joins, and is
    replayed and dropped as a duplicate; one at a non-recovered ack ends the gap before it."""
    room = ScriptedRoom(keep=2)
    site = await serve_hub(room.hub(PAGE))
    page, _ = await joined(pages, site)
    await room.publish(1)
    await room.publish(2, skip=True)
    await room.publish(3)
    await room.publish(4, live=False)
    await room.publish(5, skip=True)  # the re-join replays 4 and this skip
    assert await logged(page, 3) == [["said", n] for n in (1, 3, 4)]
    await room.publish(6)
    for n in (7, 8, 9):
        await room.publish(n, live=False)
    await room.publish(10, skip=True)  # history keeps 9 and this skip: not recovered
    assert (await logged(page, 5))[3:] == [["said", 6], gap("jump", ("E1", 6), ("E1", 9))]
    await room.publish(11)
    assert (await logged(page, 6))[5:] == [["said", 11]]
    assert [join.get("since") for join in room.joins] == [
        None,
        {"epoch": "E1", "offset": 3},
        {"epoch": "E1", "offset": 6},
    ]


async def test_the_page_reports_a_notice_in_a_recovered_replay(
    pages: Pages, serve_hub: Serve
) -> None:
    """History lost offsets 2 and 3 and keeps a ``gap`` notice in their place: the re-join
    replays it and acks ``recovered: true``, and the notice is still reported before 4."""
    room = ScriptedRoom()
    site = await serve_hub(room.hub(PAGE))
    page, _ = await joined(pages, site)
    await room.publish(1)
    await room.publish(2, live=False, kept=False)
    await room.publish(3, live=False, kept=False)
    await room.notice("lost", live=False)
    await room.publish(4)  # past a hole: the re-join from 1 replays the notice and 4
    notice = gap("server", ("E1", 1), ("E1", 3))
    notice[1]["detail"] = "lost"
    assert await logged(page, 3) == [["said", 1], notice, ["said", 4]]
    assert room.joins[-1]["since"] == {"epoch": "E1", "offset": 1}
