"""The event layer against hostile clients and careless applications (issue 17).

Every write to a peer is bounded, nothing of a peer is handled once the
server closes it, every hook's awaitable is awaited, limits hold across
awaits, one peer's messages are handled in order, user code finishes at
shutdown, and blocking handlers have a place to run.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.conftest import GRACE, TEXT, UNIT, connect, frame, read_close, read_frame, serve
from tests.hub.wire import WireClient, expect_nothing
from tests.security.conftest import closed_with, handshake_status
from tests.server.test_bounds import narrow, until
from wirehub import ConfigError, Hub, Limits, Peer, Reject, Request, Timeouts
from wirehub.client import Client, Reconnect, Reconnected
from wirehub.security.auth import TokenAuth

SMALL = Limits(write_buffer_high=32 * 1024, write_buffer_low=8192, max_buffered=256 * 1024)


def emit(event: str, data: Any = None, id: int | None = None) -> bytes:
    message: dict[str, Any] = {"type": "emit", "event": event, "data": data}
    if id is not None:
        message["id"] = id
    return frame(TEXT, json.dumps(message).encode())


# -- every write to a peer obeys max_buffered --------------------------------------------


async def test_joins_replaying_history_to_a_client_that_never_reads_are_bounded() -> None:
    """400 joins asking for 100 kept 1 KiB events each, nothing read: 40 MB were they all
    answered; the peer is closed as a slow consumer (4008) with its buffer bounded."""
    hub = Hub(limits=SMALL)
    for n in range(100):
        await hub.to("news").emit("story", "x" * 1024 + str(n))
    join = frame(TEXT, b'{"type":"join","room":"news","history":100,"id":1}')
    async with serve(hub) as s, narrow(s, "/ws") as (_, writer, connection):
        writer.write(join * 400)
        await until(lambda: connection.closing or not s.server.connections, 5 * UNIT)
        assert connection.buffered <= SMALL.max_buffered + 2048
    assert hub.stats["slow_consumers"] == 1


async def test_peer_emit_to_a_client_that_never_reads_is_bounded() -> None:
    """A handler sending 400 events of 4 KiB with ``peer.emit`` to a client that reads
    nothing: the peer is closed with 4008 once past max_buffered, not buffered for."""
    hub = Hub(limits=SMALL)

    @hub.on("flood")
    async def flood(peer: Peer) -> None:
        for _n in range(400):
            await peer.emit("n", "y" * 4096)

    async with serve(hub) as s, narrow(s, "/ws") as (_, writer, connection):
        writer.write(emit("flood"))
        await until(lambda: connection.closing or not s.server.connections, 5 * UNIT)
        assert connection.buffered <= SMALL.max_buffered + 8192
    assert hub.stats["slow_consumers"] == 1


# -- input the JSON parsers accept ---------------------------------------------------------


async def test_a_lone_surrogate_is_refused_with_the_request_id() -> None:
    """``"hi \\ud83d"`` (an emoji cut in half by a JS slice) is valid JSON but not Unicode:
    ``invalid_data`` carrying the id, so the caller is answered at once; the peer stays."""
    hub = Hub()

    @hub.on("echo")
    def echo(peer: Peer, data: Any) -> Any:
        return data

    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as client:
        await client.ws.send('{"type":"emit","event":"echo","id":1,"data":"hi \\ud83d"}')
        error = await client.recv()
        assert (error["type"], error["code"], error["id"]) == ("error", "invalid_data", 1)
        assert "lone surrogate" in error["message"]
        await client.ws.send('{"type":"emit","id":2}')  # no event: still answered by its id
        assert (await client.recv())["id"] == 2
        assert (await client.call("echo", "hi 🙂"))["data"] == "hi 🙂"


# -- callables returning awaitables ---------------------------------------------------------


def wrapped(func: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """A decorator that is not ``async`` itself: ``iscoroutinefunction`` says no."""

    @functools.wraps(func)
    def wrapper(*args: Any) -> Any:
        return func(*args)

    return wrapper


async def test_a_wrapped_async_connect_hook_refusing_is_obeyed() -> None:
    """An async ``connect`` hook under a ``functools.wraps`` decorator is awaited: its
    ``Reject`` closes the client (4003); it is never welcomed."""
    hub = Hub()

    @hub.on("connect")
    @wrapped
    async def connect(peer: Peer, request: Request) -> None:
        await asyncio.sleep(0)
        raise Reject(code=4003, reason="not you")

    async with serve(hub) as s, narrow(s, "/ws") as (reader, _, _connection):
        assert await read_close(reader) == (4003, "not you")


async def test_wrapped_handlers_and_future_hooks_are_awaited() -> None:
    """A wrapped async event handler is acked with its result; ``authorize_join`` returning
    a Future that resolves False refuses the join; a wrapped disconnect handler runs."""
    hub = Hub()
    gone = asyncio.Event()

    @hub.on("double")
    @wrapped
    async def double(peer: Peer, data: int) -> int:
        await asyncio.sleep(0)
        return 2 * data

    @hub.authorize_join
    def may_join(peer: Peer, room: str) -> asyncio.Future[bool]:
        decision = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(decision.set_result, room == "open")
        return decision

    @hub.on("disconnect")
    @wrapped
    async def disconnect(peer: Peer, reason: Any) -> None:
        await asyncio.sleep(0)
        gone.set()

    async with serve(hub) as s:
        async with await WireClient.open(s.ws("/ws")) as client:
            assert (await client.call("double", 21))["data"] == 42
            refused = await client.request({"type": "join", "room": "closed"})
            assert (refused["type"], refused["code"]) == ("error", "forbidden")
            assert (await client.request({"type": "join", "room": "open"}))["type"] == "ack"
        await asyncio.wait_for(gone.wait(), UNIT)


async def test_an_async_token_verify_is_refused() -> None:
    """``TokenAuth.verify`` must answer at once: ``async def`` is a ConfigError at
    registration, and an awaitable it returns anyway refuses the handshake (never a user)."""

    class Slow(TokenAuth):
        async def verify(self, token: str) -> Any:  # type: ignore[override]
            return {"sub": token}

    with pytest.raises(ConfigError):
        Hub().authenticate(Slow())

    class Sneaky(TokenAuth):
        def verify(self, token: str) -> Any:
            return Slow().verify(token)

    hub = Hub()
    hub.authenticate(Sneaky())
    async with serve(hub) as s:
        assert (await handshake_status(s.port, "/ws?token=ada"))[0] == 500


# -- limits checked before an await ----------------------------------------------------


async def test_the_room_limit_holds_for_joins_sent_together() -> None:
    """``max_rooms_per_peer=2`` and an authorizer that awaits: of 5 joins sent at once,
    2 are acked and 3 refused ``limit_exceeded`` (not 5 acked)."""
    hub = Hub(limits=Limits(max_rooms_per_peer=2))

    @hub.authorize_join
    async def may_join(peer: Peer, room: str) -> bool:
        await asyncio.sleep(0.01)
        return True

    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as client:
        for n in range(5):
            await client.send({"type": "join", "room": f"r{n}", "id": n + 1})
        answers = [await client.recv() for _ in range(5)]
        kinds = sorted(a.get("code", a["type"]) for a in answers)
        assert kinds == ["ack", "ack", "limit_exceeded", "limit_exceeded", "limit_exceeded"]
        assert len(hub.node.rooms.of(next(iter(hub.node.peers.values())))) == 2  # type: ignore[arg-type]


# -- handling order ----------------------------------------------------------------------


async def test_one_peers_messages_are_handled_in_arrival_order() -> None:
    """``join``, ``rooms``, ``leave``, ``rooms`` sent together: the rooms seen are
    ``["a"]`` then ``[]``, on every Python (3.11 started the join's task a tick late)."""
    hub = Hub()

    @hub.on("rooms")
    def rooms(peer: Peer) -> list[str]:
        return sorted(peer.rooms)

    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as client:
        for n, message in enumerate(
            [
                {"type": "join", "room": "a"},
                {"type": "emit", "event": "rooms"},
                {"type": "leave", "room": "a"},
                {"type": "emit", "event": "rooms"},
            ]
        ):
            await client.send({**message, "id": n + 1})
        answers = {}
        while len(answers) < 4:
            reply = await client.recv()
            answers[reply["id"]] = reply
        assert answers[2]["data"] == ["a"] and answers[4]["data"] == []


async def test_a_burst_in_one_read_is_handled_in_arrival_order() -> None:
    """Async and sync handlers, a join, a ping and an unknown event written in one TCP
    write (so one read): handlers start in arrival order, and the room is seen joined
    by the handler after the join (on 3.11 sync handling takes its turn behind tasks)."""
    hub = Hub()
    seen: list[object] = []

    @hub.on("a")
    async def record_async(peer: Peer, n: int) -> None:
        seen.append(n)
        await asyncio.sleep(0)

    @hub.on("s")
    def record_sync(peer: Peer, n: int) -> None:
        seen.append(n)

    @hub.on("rooms")
    def rooms(peer: Peer) -> None:
        seen.append(sorted(peer.rooms))

    burst = [
        {"type": "emit", "event": "a", "data": 1},
        {"type": "emit", "event": "s", "data": 2},
        {"type": "emit", "event": "a", "data": 3},
        {"type": "join", "room": "r"},
        {"type": "emit", "event": "rooms"},
        {"type": "ping"},
        {"type": "emit", "event": "nosuch"},
        {"type": "emit", "event": "s", "data": 4},
        {"type": "emit", "event": "a", "data": 5},
        {"type": "emit", "event": "s", "data": 6},
    ]
    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as client:
        protocol = client.ws.protocol
        for n, message in enumerate(burst):
            protocol.send_text(json.dumps({**message, "id": n + 1}).encode())
        client.ws.transport.write(b"".join(protocol.data_to_send()))
        answers = {}
        while len(answers) < len(burst):
            reply = await client.recv()
            answers[reply["id"]] = reply
    assert seen == [1, 2, 3, ["r"], 4, 5, 6]
    assert answers[7]["type"] == "error" and answers[6]["type"] == "ack"


# -- nothing handled once the server closes a peer --------------------------------------------


async def test_messages_waiting_their_turn_are_dropped_when_the_server_closes() -> None:
    """With one pending handler allowed, 5 messages wait behind a blocked one; the server
    closes the peer (4003), the blocked handler ends: none of the 5 is handled."""
    hub = Hub(limits=Limits(max_pending_calls=1))
    release, counted = asyncio.Event(), []

    @hub.on("block")
    async def block(peer: Peer) -> None:
        await release.wait()

    @hub.on("count")
    def count(peer: Peer) -> None:
        counted.append(1)

    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as client:
        await client.send({"type": "emit", "event": "block"})
        for _ in range(5):
            await client.send({"type": "emit", "event": "count"})
        await until(lambda: len(next(iter(hub.peers.values()))._backlog) == 5)
        await next(iter(hub.peers.values())).close(4003, "bye")
        release.set()
        assert (await closed_with(client.ws))[0] == 4003
    assert counted == []


# -- shutdown lets user code finish ------------------------------------------------------------


async def test_disconnect_handlers_finish_within_the_shutdown_deadline() -> None:
    """Three peers whose ``disconnect`` handlers take 50 ms: all three finish before the
    server's shutdown (2 s deadline) returns, as does a plain handler's cleanup."""
    hub = Hub()
    finished: list[str] = []

    @hub.on("disconnect")
    async def disconnect(peer: Peer, reason: Any) -> None:
        await asyncio.sleep(0.05)
        finished.append(peer.id)

    @hub.websocket("/plain")
    async def plain(ws: Any) -> None:
        try:
            async for _ in ws:
                pass
        finally:
            await asyncio.sleep(0.05)
            finished.append("plain")

    async with serve(hub) as s:
        clients = [await WireClient.open(s.ws("/ws")) for _ in range(3)]
        plain_client = await connect(s.ws("/plain"))
        started = time.monotonic()
        await s.server.shutdown(timeout=2 * UNIT)
        assert len(finished) == 4 and time.monotonic() - started < 2 * UNIT
        for client in clients:
            await client.close()
        await plain_client.close()


# -- blocking handlers ---------------------------------------------------------------------


async def test_a_blocking_handler_runs_off_the_loop() -> None:
    """``@hub.on(name, blocking=True)``: a handler sleeping 0.3 s runs in a thread, so
    another client's ping is answered meanwhile, and its value is the ack."""
    hub = Hub()

    @hub.on("sleep", blocking=True)
    def sleep(peer: Peer, seconds: float) -> str:
        time.sleep(seconds)
        return "rested"

    async with (
        serve(hub) as s,
        await WireClient.open(s.ws("/ws")) as sleeper,
        await WireClient.open(s.ws("/ws")) as other,
    ):
        await sleeper.send({"type": "emit", "event": "sleep", "data": 0.3, "id": 9})
        started = time.monotonic()
        assert (await other.request({"type": "ping"}))["type"] == "ack"
        assert time.monotonic() - started < 0.25
        assert (await sleeper.recv())["data"] == "rested"
        await expect_nothing(other)


async def test_a_sync_handler_holding_the_loop_is_named_in_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A sync handler taking 120 ms gets one warning naming it (not one per call)."""
    hub = Hub()

    @hub.on("stall")
    def stall(peer: Peer) -> None:
        time.sleep(0.12)

    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as client:
        with caplog.at_level(logging.WARNING, logger="wirehub.hub"):
            await client.call("stall")
            await client.call("stall")
    warnings = [r.getMessage() for r in caplog.records if "held the event loop" in r.getMessage()]
    assert len(warnings) == 1 and "stall" in warnings[0], warnings


def test_blocking_is_for_plain_functions() -> None:
    """``blocking=True`` on an ``async def`` is a ConfigError at registration."""
    hub = Hub()
    with pytest.raises(ConfigError):

        @hub.on("x", blocking=True)
        async def x(peer: Peer) -> None: ...


# -- a slow-consumer cut the client did not see ---------------------------------------------


async def test_a_stalled_client_learns_of_its_4008_on_reconnecting() -> None:
    """A client cut as a slow consumer and still stalled when the server gives up on the close
    reads its backlog, then EOF (1006 as far as it can tell); reconnecting with
    ``last_peer``, its welcome says 4008 — once."""
    hub = Hub(limits=SMALL, timeouts=Timeouts(close=GRACE))

    @hub.on("flood")
    async def flood(peer: Peer) -> None:
        for _ in range(400):
            await peer.emit("n", "y" * 4096)

    async with serve(hub) as s:
        async with narrow(s, "/ws") as (reader, writer, connection):
            _, welcome = await read_frame(reader)
            peer = json.loads(welcome)["peer"]
            writer.write(emit("flood"))
            await until(lambda: connection not in s.server.connections, GRACE + 5 * UNIT)
            await asyncio.wait_for(reader.read(), UNIT)  # the client reads on: then EOF
        async with await WireClient.open(s.ws(f"/ws?last_peer={peer}")) as again:
            closed = again.welcome["closed"]
            assert closed["code"] == 4008 and "slow consumer" in closed["reason"]
        async with await WireClient.open(s.ws(f"/ws?last_peer={peer}")) as third:
            assert "closed" not in third.welcome


async def test_the_python_client_reports_the_close_it_did_not_see() -> None:
    """After a 1006, the Python client reconnects naming its lost peer; ``Reconnected.closed``
    is the 4008 the server reports."""
    hub = Hub()
    reconnected: asyncio.Future[Reconnected] = asyncio.get_running_loop().create_future()
    quick = Reconnect(initial_delay=0.01)
    async with serve(hub) as s, Client(s.ws("/ws"), reconnect=quick) as client:
        client.on("reconnect", reconnected.set_result)
        lost = client.id
        assert lost is not None
        hub.node.fanout._remember(lost, 4008, "slow consumer: not reading fast enough")
        [connection] = [c for c in s.server.connections if c.session is hub.peers[lost]]
        connection._abort()  # what the client sees of a cut it was too stalled to read
        info = await asyncio.wait_for(reconnected, 2 * UNIT)
        assert info.closed is not None and info.closed.code == 4008
        assert client.id != lost
