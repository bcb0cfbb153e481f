"""wirehub.js against a real hub in Chromium: calls, errors, binary, queue, reconnects, recovery."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from playwright.async_api import Page

from tests.browser.conftest import BROWSER, Pages, Site
from tests.conftest import UNIT
from wirehub import CallError, EventError, Hub, Peer, Reject, Request, Response, WebSocket

PAGE = """<!doctype html>
<meta charset="utf-8"><title>wirehub.js test page</title><link rel="icon" href="data:,">
<script type="module">
  import * as wirehub from "/wirehub.js";
  window.wirehub = wirehub;
</script>
"""


class Numbers(msgspec.Struct):
    a: int
    b: int


@dataclasses.dataclass
class Api:
    """The test application: a hub and what its handlers saw."""

    hub: Hub
    recorded: list[Any] = dataclasses.field(default_factory=list)
    tokens: list[str | None] = dataclasses.field(default_factory=list)


def api_hub() -> Api:
    hub = Hub(presence=True)
    api = Api(hub)

    @hub.route("/")
    def page(request: Request) -> Response:
        return Response.text(PAGE, content_type="text/html; charset=utf-8")

    @hub.on("connect")
    def connect(peer: Peer, request: Request) -> None:
        token = request.query.get("token")
        api.tokens.append(token)
        if token == "bad":
            raise Reject(code=4001, reason="bad token")
        peer.info["token"] = token

    @hub.on("add")
    def add(peer: Peer, numbers: Numbers) -> int:
        return numbers.a + numbers.b

    @hub.on("fail")
    def fail(peer: Peer) -> None:
        raise EventError("nope", "not today", {"why": "a test"})

    @hub.on("slow")
    async def slow(peer: Peer) -> None:
        await asyncio.sleep(UNIT)

    @hub.on("bytes")
    async def reverse(peer: Peer, data: bytes) -> bytes:
        api.recorded.append(data)
        await peer.emit("reversed", data[::-1])
        return data + b"!"

    @hub.on("whoami")
    def whoami(peer: Peer) -> dict[str, Any]:
        return {"id": peer.id, "token": peer.info.get("token")}

    @hub.on("kick")
    async def kick(peer: Peer, code: int) -> None:
        await peer.close(code, "kicked")

    @hub.on("hang")
    async def hang(peer: Peer) -> None:
        await peer.close(1012, "restarting")  # and never answer
        await asyncio.sleep(UNIT / 2)

    @hub.on("record")
    def record(peer: Peer, data: Any) -> None:
        api.recorded.append(data)

    @hub.on("recorded")
    def recorded(peer: Peer) -> list[Any]:
        return api.recorded

    @hub.on("ask")
    async def ask(peer: Peer, question: dict[str, Any]) -> Any:
        data = question.get("data")
        try:
            answer = await peer.call(question["event"], data, timeout=question.get("timeout", UNIT))
        except CallError as exc:
            return {"error": exc.code, "message": exc.message, "details": exc.details}
        return answer if isinstance(answer, bytes) else {"answer": answer}

    return api


pytestmark = BROWSER


@pytest_asyncio.fixture(loop_scope="session")
async def api(serve_hub: Callable[[Hub], Awaitable[Site]]) -> tuple[Api, Site]:
    app = api_hub()
    return app, await serve_hub(app.hub)


async def open_page(pages: Pages, site: Site) -> Page:
    page = await pages.open(site.url + "/")
    await page.wait_for_function("window.wirehub !== undefined")
    return page


async def test_call_round_trip_and_typed_errors(pages: Pages, api: tuple[Api, Site]) -> None:
    """``call`` resolves with the ack data, or rejects with typed errors with code and details."""
    _, site = api
    page = await open_page(pages, site)
    result = await page.evaluate(
        """async () => {
          const hub = wirehub.connect("/ws");  // relative: ws:// on this page's host and port
          const describe = (e) => ({ name: e.name, code: e.code, details: e.details,
                                     base: e instanceof wirehub.WirehubError });
          const sum = await hub.call("add", { a: 2, b: 3 });  // sent before the welcome: queued
          const failed = await hub.call("fail").catch(describe);
          const unknown = await hub.call("no such event").catch(describe);
          const invalid = await hub.call("add", { a: "two", b: 3 }).catch(describe);
          const timeout = await hub.call("slow", null, { timeout: 50 }).catch((e) =>
            ({ ...describe(e), isTimeout: e instanceof wirehub.CallTimeout }));
          const ms = await hub.ping();
          return { sum, failed, unknown, invalid, timeout, ms, state: hub.state,
                   url: hub.welcome && hub.id.length > 0 };
        }"""
    )
    assert result["sum"] == 5
    assert result["failed"] == {
        "name": "CallError",
        "code": "nope",
        "details": {"why": "a test"},
        "base": True,
    }
    assert result["unknown"]["code"] == "unknown_event"
    assert result["invalid"]["code"] == "invalid_data"
    assert result["invalid"]["details"]["path"] == "$.a"
    assert result["timeout"] == {
        "name": "CallTimeout",
        "code": "timeout",
        "details": {"timeout": 50},
        "base": True,
        "isTimeout": True,
    }
    assert 0 <= result["ms"] < 5000 * UNIT
    assert result["state"] == "open"


async def test_binary_both_ways(pages: Pages, api: tuple[Api, Site]) -> None:
    """Bytes go out in the binary frame format and come back as Uint8Array, in events and acks."""
    app, site = api
    page = await open_page(pages, site)
    result = await page.evaluate(
        """async () => {
          const hub = wirehub.connect("/ws");
          await hub.ready();
          const event = new Promise((resolve) => hub.on("reversed", (data, meta) =>
            resolve({ bytes: Array.from(data), typed: data instanceof Uint8Array, meta })));
          const ack = await hub.call("bytes", new Uint8Array([1, 2, 3, 250]));
          const reversed = await event;
          const view = new Uint8Array([0, 7, 8, 0]).subarray(1, 3);  // a view at an offset
          const fromView = await hub.call("bytes", view);
          const fromBuffer = await hub.call("bytes", new Uint8Array([4, 5]).buffer);
          return { ack: Array.from(ack), ackTyped: ack instanceof Uint8Array, reversed,
                   fromView: Array.from(fromView), fromBuffer: Array.from(fromBuffer) };
        }"""
    )
    assert app.recorded == [bytes([1, 2, 3, 250]), bytes([7, 8]), bytes([4, 5])]
    assert result["ack"] == [1, 2, 3, 250, ord("!")]
    assert result["ackTyped"] is True
    assert result["reversed"] == {
        "bytes": [250, 3, 2, 1],
        "typed": True,
        "meta": {"event": "reversed", "room": None, "epoch": None, "offset": None},
    }
    assert result["fromView"] == [7, 8, ord("!")]
    assert result["fromBuffer"] == [4, 5, ord("!")]


async def test_join_history_leave_and_no_duplicates(pages: Pages, api: tuple[Api, Site]) -> None:
    """``join`` replays history first, a second join repeats nothing, ``leave`` stops delivery."""
    _, site = api
    for n in range(1, 5):
        await site.emit("tick", n, room="feed")
    page = await open_page(pages, site)
    result = await page.evaluate(
        """async () => {
          const hub = window.hub = wirehub.connect("/ws");
          window.ticks = [];
          hub.on("tick", (n, meta) => window.ticks.push([n, meta.room, meta.offset]));
          const ack = await hub.join("feed", { history: 2 });
          const before = window.ticks.slice();
          const again = await hub.join("feed");
          return { ack, before, again, rooms: hub.rooms, id: hub.id };
        }"""
    )
    assert result["before"] == [[3, "feed", 3], [4, "feed", 4]]
    assert result["ack"]["offset"] == 4
    assert result["ack"]["members"] == [{"id": result["id"], "info": {"token": None}}]
    assert result["again"]["offset"] == 4
    assert result["rooms"] == ["feed"]
    await site.emit("tick", 5, room="feed")
    await page.wait_for_function("window.ticks.length === 3")
    await page.evaluate("() => hub.leave('feed')")
    await site.emit("tick", 6, room="feed")
    await page.evaluate(
        "() => hub.call('add', { a: 0, b: 0 })"
    )  # a fence: anything sent before arrived
    assert await page.evaluate("() => [window.ticks.map((t) => t[0]), hub.rooms]") == [
        [3, 4, 5],
        [],
    ]


async def test_reconnect_recovers_missed_events_in_order(
    pages: Pages, api: tuple[Api, Site]
) -> None:
    """After a 1012 close the client re-joins with ``since``: missed events come once, in order."""
    app, site = api
    page = await open_page(pages, site)
    await page.evaluate(
        """async () => {
          const hub = window.hub = wirehub.connect("/ws",
            { reconnect: { initialDelay: 100, jitter: 0 } });
          window.log = { ticks: [], disconnects: [], reconnecting: [], reconnects: [] };
          hub.on("tick", (n) => log.ticks.push(n));
          hub.on("disconnect", (d) => log.disconnects.push(d));
          hub.on("reconnecting", (r) => log.reconnecting.push(r));
          hub.on("reconnect", (r) => log.reconnects.push(r));
          await hub.join("feed");
          window.firstId = hub.id;
        }"""
    )
    await site.emit("tick", 1, room="feed")
    await site.emit("tick", 2, room="feed")
    await page.wait_for_function("log.ticks.length === 2")

    async def drop_then_publish() -> None:
        for peer in list(app.hub.room("feed").members):
            await peer.close(1012, "restarting")
        for n in (3, 4, 5):
            await app.hub.to("feed").emit("tick", n)

    await drop_then_publish()
    await page.wait_for_function("log.reconnects.length === 1")
    await site.emit("tick", 6, room="feed")
    await page.wait_for_function("log.ticks.length >= 6")
    log = await page.evaluate("() => ({ ...log, changed: hub.id !== firstId, state: hub.state })")
    assert log["ticks"] == [1, 2, 3, 4, 5, 6]
    assert log["disconnects"] == [{"code": 1012, "reason": "restarting", "reconnect": True}]
    assert log["reconnecting"] == [{"attempt": 1, "delay": 100}]
    [reconnected] = log["reconnects"]
    assert reconnected["attempts"] == 1
    assert reconnected["recovered"] == {"feed": True}
    assert reconnected["gaps"] == []
    assert reconnected["acks"]["feed"]["recovered"] is True
    assert log["changed"] is True
    assert log["state"] == "open"
    # A server that spreads its clients names the first delay (PROTOCOL.md §6).
    for peer in list(app.hub.peers.values()):
        await peer.close(1012, "server restarting; retry_after=0.050")
    await page.wait_for_function("log.reconnects.length === 2")
    assert await page.evaluate("log.reconnecting[1]") == {"attempt": 1, "delay": 50}


async def test_disconnect_rejects_calls_and_queues_emits(
    pages: Pages, api: tuple[Api, Site]
) -> None:
    """A call in flight rejects "disconnected"; later emits queue (up to queueLimit), in order."""
    app, site = api
    page = await open_page(pages, site)
    result = await page.evaluate(
        """async () => {
          const hub = wirehub.connect("/ws",
            { queueLimit: 2, reconnect: { initialDelay: 200, jitter: 0 } });
          await hub.ready();
          const pending = await hub.call("hang").catch((e) =>
            ({ name: e.name, code: e.code, closeCode: e.closeCode }));
          const state = hub.state;
          hub.emit("record", "first");
          hub.emit("record", "second");
          let overflow = null;
          try { hub.emit("record", "third"); } catch (e) { overflow = [e.name, e.code, e.details]; }
          const callOverflow = await hub.call("record", "fourth").catch((e) => e.code);
          await hub.ready();
          const recorded = await hub.call("recorded");
          await hub.close();
          const afterClose = await hub.call("recorded").catch((e) => [e.code, e.closeCode]);
          let emitAfterClose = null;
          try { hub.emit("record", "late"); } catch (e) { emitAfterClose = e.code; }
          return { pending, state, overflow, callOverflow, recorded, afterClose, emitAfterClose,
                   finalState: hub.state };
        }"""
    )
    assert result["pending"] == {
        "name": "ConnectionClosed",
        "code": "disconnected",
        "closeCode": 1012,
    }
    assert result["state"] == "reconnecting"
    assert result["overflow"] == ["WirehubError", "queue_full", {"queueLimit": 2}]
    assert result["callOverflow"] == "queue_full"
    assert result["recorded"] == ["first", "second"]
    assert result["afterClose"] == ["closed", 1000]
    assert result["emitAfterClose"] == "closed"
    assert result["finalState"] == "closed"
    assert app.recorded == ["first", "second"]


@pytest.mark.parametrize(
    ("code", "reconnects"),
    [(4001, False), (1008, False), (1000, False), (4008, True), (1011, True), (4004, True)],
)
async def test_close_codes_decide_reconnection(
    pages: Pages, api: tuple[Api, Site], code: int, reconnects: bool
) -> None:
    """The client reconnects after a close code exactly when ``should_reconnect(code)`` says so."""
    _, site = api
    page = await open_page(pages, site)
    result = await page.evaluate(
        """async (code) => {
          const hub = wirehub.connect("/ws", { reconnect: { initialDelay: 50, jitter: 0 } });
          await hub.ready();
          const first = hub.id;
          const disconnected = new Promise((resolve) => hub.on("disconnect", resolve));
          hub.emit("kick", code);
          const info = await disconnected;
          if (info.reconnect) await hub.ready();
          const outcome = { info, state: hub.state, newId: hub.id !== null && hub.id !== first,
                            helper: wirehub.shouldReconnect(code) };
          await hub.close();
          return outcome;
        }""",
        code,
    )
    assert result["info"] == {"code": code, "reason": "kicked", "reconnect": reconnects}
    assert result["helper"] is reconnects
    assert result["state"] == ("open" if reconnects else "closed")
    assert result["newId"] is reconnects


async def test_token_travels_as_query_parameter(pages: Pages, api: tuple[Api, Site]) -> None:
    """With ``tokenIn: "query"``, ``token`` becomes ``?token=``, a function is asked per
    connection, and 4001 is final."""
    app, site = api
    page = await open_page(pages, site)
    result = await page.evaluate(
        """async () => {
          const hub = wirehub.connect("/ws?x=1", { token: "s3cret/+=", tokenIn: "query" });
          const me = await hub.call("whoami");
          await hub.close();
          let asked = 0;
          const fresh = wirehub.connect("/ws", { token: async () => `t${++asked}`, tokenIn: "query",
                                                 reconnect: { initialDelay: 20, jitter: 0 } });
          await fresh.ready();
          fresh.emit("kick", 1012);
          await new Promise((resolve) => fresh.on("reconnect", resolve));
          const again = await fresh.call("whoami");
          await fresh.close();
          const refused = wirehub.connect("/ws", { token: "bad", tokenIn: "query" });
          const why = await new Promise((resolve) => refused.on("disconnect", resolve));
          const ready = await refused.ready().catch((e) => e.code);
          return { me, again, why, ready, state: refused.state };
        }"""
    )
    assert result["me"]["token"] == "s3cret/+="
    assert result["again"]["token"] == "t2"
    assert result["why"] == {"code": 4001, "reason": "bad token", "reconnect": False}
    assert result["ready"] == "closed"
    assert result["state"] == "closed"
    assert app.tokens == ["s3cret/+=", "t1", "t2", "bad"]


def scripted_hub(received: list[Any]) -> Hub:
    """A hand-written protocol server at ``/scripted``: ``auth`` first, rooms in ``welcome``.

    It plays PROTOCOL.md §7 and §13 by the letter, independently of the hub's
    own implementation: the first connection welcomes the client into room
    ``news``, sends event 8, asks for a token refresh, then restarts (1012);
    the second expects the re-join to recover from offset 8.
    """
    hub = Hub(events_path=None)
    hub.add_route("/", lambda request: Response.text(PAGE, content_type="text/html"))
    connections = 0

    def welcome(offset: int) -> str:
        limits = {"max_message_size": None, "max_rooms": None, "max_pending": None}
        rooms = {"news": {"epoch": "E1", "offset": offset}}
        return json.dumps(
            {"type": "welcome", "v": 1, "peer": "p", "ping_interval": None, "limits": limits}
            | {"rooms": rooms}
        )

    def news(text: str, offset: int) -> str:
        event = {"type": "event", "event": "news", "data": text, "room": "news", "epoch": "E1"}
        return json.dumps(event | {"offset": offset})

    @hub.websocket("/scripted")
    async def scripted(ws: WebSocket) -> None:
        nonlocal connections
        connections += 1
        received.append({"query": dict(ws.request.query)})
        received.append(json.loads(await ws.recv()))
        if connections == 1:
            await ws.send(welcome(7))
            await ws.send(news("eight", 8))
            await ws.send(json.dumps({"type": "refresh", "expires_in": 30.0}))
            auth = json.loads(await ws.recv())
            received.append(auth)
            await ws.send(json.dumps({"type": "ack", "id": auth["id"], "data": {"expires_in": 60}}))
            await ws.close(1012, "restarting")
            return
        await ws.send(welcome(10))
        join = json.loads(await ws.recv())
        received.append(join)
        await ws.send(news("nine", 9))
        await ws.send(news("ten", 10))
        ack = {"epoch": "E1", "offset": 10, "recovered": True}
        await ws.send(json.dumps({"type": "ack", "id": join["id"], "data": ack}))
        async for message in ws:
            received.append(json.loads(message))

    return hub


async def test_token_in_auth_message_refresh_and_welcome_rooms(
    pages: Pages, serve_hub: Callable[[Hub], Awaitable[Site]]
) -> None:
    """An ``auth`` message carries the token, ``refresh`` gets a new one, welcome rooms recover."""
    received: list[Any] = []
    site = await serve_hub(scripted_hub(received))
    page = await open_page(pages, site)
    result = await page.evaluate(
        """async () => {
          let n = 0;
          const hub = wirehub.connect("/scripted", { tokenIn: "message", token: () => `tok${++n}`,
                                                     reconnect: { initialDelay: 20, jitter: 0 } });
          const got = [];
          hub.on("news", (text, meta) => got.push([text, meta.offset]));
          const reconnected = await new Promise((resolve) => hub.on("reconnect", resolve));
          return { got, reconnected, rooms: hub.rooms, asked: n };
        }"""
    )
    assert received[:3] == [
        {"query": {}},
        {"type": "auth", "token": "tok1"},
        {"type": "auth", "token": "tok2", "id": 1},
    ]
    assert received[3:] == [
        {"query": {"last_peer": "p"}},  # the lost peer, named (PROTOCOL.md §2)
        {"type": "auth", "token": "tok3"},
        {"type": "join", "room": "news", "since": {"epoch": "E1", "offset": 8}, "id": 2},
    ]
    assert result["got"] == [["eight", 8], ["nine", 9], ["ten", 10]]
    assert result["reconnected"]["recovered"] == {"news": True}
    assert result["rooms"] == ["news"]
    assert result["asked"] == 3


async def test_server_calls_are_answered_by_the_first_handler(
    pages: Pages, api: tuple[Api, Site]
) -> None:
    """``await peer.call(...)`` gets a handler's (awaited) value, or its WirehubError's code."""
    _, site = api
    page = await open_page(pages, site)
    result = await page.evaluate(
        """async () => {
          const hub = wirehub.connect("/ws");
          const sum = (numbers) => numbers.reduce((a, b) => a + b);
          hub.on("add", (numbers, meta) => ({ sum: sum(numbers), event: meta.event }));
          hub.on("add", () => "a second handler does not answer");
          hub.on("later", async (text) => text.toUpperCase());
          const busy = new wirehub.WirehubError("busy", "not now", { retry: 5 });
          hub.on("refuse", () => { throw busy; });
          hub.on("never", () => new Promise(() => {}));
          const ask = (event, data, timeout) => hub.call("ask", { event, data, timeout });
          const out = {
            add: await ask("add", [1, 2, 3]),
            later: await ask("later", "hi"),
            refuse: await ask("refuse"),
            unknown: await ask("nobody"),
            never: await ask("never", null, 0.05),
          };
          await hub.close();
          return out;
        }"""
    )
    assert result["add"] == {"answer": {"sum": 6, "event": "add"}}
    assert result["later"] == {"answer": "HI"}
    assert result["refuse"] == {"error": "busy", "message": "not now", "details": {"retry": 5}}
    assert result["unknown"]["error"] == "unknown_event"
    assert result["never"]["error"] == "timeout"
