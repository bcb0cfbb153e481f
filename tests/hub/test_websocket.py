"""Plain WebSocket endpoints end to end: messages, close codes, requests, backpressure."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.exceptions import InvalidStatus

from tests.conftest import (
    PING,
    UNIT,
    close_frame,
    connect,
    echo_hub,
    fast_hub,
    raw_websocket,
    read_close,
    read_frame,
    serve,
)
from wirehub import ConnectionClosed, Hub, Limits, WebSocket
from wirehub.server.connection import Connection

MiB = 1 << 20


async def closed(ws: Any) -> tuple[int | None, str | None]:
    """Wait until the client connection is closed; return its close code and reason."""
    await asyncio.wait_for(ws.wait_closed(), UNIT)
    return ws.close_code, ws.close_reason


COMPRESSION = ("deflate", None)
MESSAGES = {
    "text": "hello",
    "unicode": "héllo €",
    "binary": b"\x00\x01\xff",
    "empty-text": "",
    "empty-binary": b"",
    "1MiB-text": "{}" * (MiB // 2),
    "1MiB-binary": bytes(range(256)) * (MiB // 256),
}


@pytest.mark.parametrize(
    ("message", "compression"),
    [
        *(pytest.param(m, c, id=f"{k}-{c}") for k, m in MESSAGES.items() for c in COMPRESSION),
        # Incompressible data grows slightly when deflated, and websockets caps the
        # frame on the wire at max_message_size too, so 1 MiB of noise goes plain.
        pytest.param(os.urandom(MiB), None, id="1MiB-random-None"),
    ],
)
async def test_echo(message: str | bytes, compression: str | None) -> None:
    """Text stays str and binary stays bytes, from empty up to the 1 MiB default limit."""
    async with serve(echo_hub()) as s, connect(s.ws("/echo"), compression=compression) as ws:
        await ws.send(message)
        reply = await asyncio.wait_for(ws.recv(), UNIT)
        assert type(reply) is type(message)
        assert reply == message


async def test_many_messages_keep_their_order() -> None:
    """A burst of messages is echoed complete and in order."""
    async with serve(echo_hub()) as s, connect(s.ws("/echo")) as ws:
        for i in range(500):
            await ws.send(str(i))
        for i in range(500):
            assert await asyncio.wait_for(ws.recv(), UNIT) == str(i)


@pytest.mark.parametrize(
    ("fragments", "expected"),
    [(["ab", "", "cd€"], "abcd€"), ([b"\x00", b"\x01", b"\x02"], b"\x00\x01\x02")],
    ids=["text", "binary"],
)
async def test_fragmented_client_message(fragments: list[Any], expected: Any) -> None:
    """A message the client sends in fragments reaches the handler as one message."""
    async with serve(echo_hub()) as s, connect(s.ws("/echo")) as ws:
        await ws.send(fragments)
        assert await asyncio.wait_for(ws.recv(), UNIT) == expected


async def test_client_ping_gets_pong() -> None:
    """A ping from the client is answered with a pong carrying the same data."""
    async with serve(echo_hub()) as s, connect(s.ws("/echo"), ping_interval=None) as ws:
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, UNIT)


# -- closing ---------------------------------------------------------------------


def recording_hub() -> tuple[Hub, asyncio.Future[tuple[int, str, int | None, str]]]:
    """A hub whose /wait handler reports how its connection closed."""
    hub = Hub()
    seen: asyncio.Future[tuple[int, str, int | None, str]] = (
        asyncio.get_running_loop().create_future()
    )

    @hub.websocket("/wait")
    async def wait(ws: WebSocket) -> None:
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            seen.set_result((exc.code, exc.reason, ws.close_code, ws.close_reason))

    return hub, seen


async def test_client_close_code_reaches_the_handler() -> None:
    """A client closing with 4000 'bye' raises ConnectionClosed(4000, 'bye') in the handler."""
    hub, seen = recording_hub()
    async with serve(hub) as s, connect(s.ws("/wait")) as ws:
        await ws.close(4000, "bye")
        assert await asyncio.wait_for(seen, UNIT) == (4000, "bye", 4000, "bye")


async def test_dropped_client_is_1006_in_the_handler() -> None:
    """A client that drops TCP without a close frame is reported as 1006."""
    hub, seen = recording_hub()
    async with serve(hub) as s, raw_websocket(s.port, "/wait") as (_, writer):
        writer.transport.abort()
        assert await asyncio.wait_for(seen, UNIT) == (1006, "", 1006, "")


async def test_handler_close_code_reaches_the_client() -> None:
    """``await ws.close(4001, 'x')`` in the handler closes the client with 4001 'x'."""
    hub = Hub()
    returned = asyncio.Event()

    @hub.websocket("/close")
    async def close(ws: WebSocket) -> None:
        await ws.close(4001, "x")
        assert ws.closed
        returned.set()

    async with serve(hub) as s, connect(s.ws("/close")) as ws:
        assert await closed(ws) == (4001, "x")
        await asyncio.wait_for(returned.wait(), UNIT)


async def test_handler_returning_closes_1000() -> None:
    """When the handler returns, the connection is closed with 1000."""
    hub = Hub()

    @hub.websocket("/hello")
    async def hello(ws: WebSocket) -> None:
        await ws.send("hello")

    async with serve(hub) as s, connect(s.ws("/hello")) as ws:
        assert await asyncio.wait_for(ws.recv(), UNIT) == "hello"
        assert await closed(ws) == (1000, "")


async def test_handler_raising_closes_1011_and_others_are_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handler that raises closes only its own connection with 1011 and logs the error."""
    hub = echo_hub()

    @hub.websocket("/boom")
    async def boom(ws: WebSocket) -> None:
        await ws.recv()
        raise RuntimeError("boom")

    async with serve(hub) as s, connect(s.ws("/echo")) as other, connect(s.ws("/boom")) as ws:
        await ws.send("go")
        assert await closed(ws) == (1011, "internal error")
        await other.send("still here")
        assert await asyncio.wait_for(other.recv(), UNIT) == "still here"
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert "boom" in str(failures[0].exc_info[1])


async def test_send_after_close_raises_connection_closed() -> None:
    """``ws.send`` on a closed connection raises ConnectionClosed with the close code."""
    hub = Hub()
    raised: asyncio.Future[ConnectionClosed] = asyncio.get_running_loop().create_future()

    @hub.websocket("/late")
    async def late(ws: WebSocket) -> None:
        await ws.wait_closed()
        try:
            await ws.send("too late")
        except ConnectionClosed as exc:
            raised.set_result(exc)

    async with serve(hub) as s, connect(s.ws("/late")) as ws:
        await ws.close(4002, "gone")
        exc = await asyncio.wait_for(raised, UNIT)
        assert (exc.code, exc.reason) == (4002, "gone")


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_message_too_big_closes_1009(compression: str | None) -> None:
    """A message over Limits.max_message_size (measured after decompression) closes 1009."""
    hub = echo_hub(limits=Limits(max_message_size=1000))
    async with serve(hub) as s, connect(s.ws("/echo"), compression=compression) as ws:
        await ws.send(b"\x00" * 1000)
        assert await asyncio.wait_for(ws.recv(), UNIT) == b"\x00" * 1000
        await ws.send(b"\x00" * 1001)  # compresses to a few bytes
        assert (await closed(ws))[0] == 1009


# -- the handshake request ---------------------------------------------------------


async def test_request_exposes_path_query_headers_client() -> None:
    """``ws.request`` carries the handshake's path, query, headers and client address."""
    hub = Hub()

    @hub.websocket("/info")
    async def info(ws: WebSocket) -> None:
        request = ws.request
        await ws.send(
            json.dumps(
                {
                    "path": request.path,
                    "query": request.query,
                    "header": request.headers.get("x-test"),
                    "client": list(request.client or ()),
                    "scheme": request.scheme,
                }
            )
        )

    async with (
        serve(hub) as s,
        connect(s.ws("/info?a=1&b=two&a=3"), additional_headers={"X-Test": "yes"}) as ws,
    ):
        report = json.loads(await asyncio.wait_for(ws.recv(), UNIT))
        host, port = ws.local_address[:2]
    assert report == {
        "path": "/info",
        "query": {"a": "3", "b": "two"},
        "header": "yes",
        "client": [host, port],
        "scheme": "http",
    }


@pytest.mark.parametrize(
    ("offered", "expected"),
    [(["b", "a"], "a"), (["zzz", "b"], "b")],
)
@pytest.mark.parametrize("where", ["hub", "endpoint"])
async def test_subprotocol_negotiation(
    offered: list[str], expected: str | None, where: str
) -> None:
    """The server's first choice (Hub-wide or per endpoint) that the client offers is agreed."""
    hub = Hub(subprotocols=["a", "b"] if where == "hub" else ["other"])

    @hub.websocket("/sp", subprotocols=["a", "b"] if where == "endpoint" else None)
    async def sp(ws: WebSocket) -> None:
        await ws.send(str(ws.subprotocol))

    async with serve(hub) as s, connect(s.ws("/sp"), subprotocols=offered) as ws:
        assert await asyncio.wait_for(ws.recv(), UNIT) == str(expected)
        assert ws.subprotocol == expected


# -- backpressure ----------------------------------------------------------------


@pytest.fixture
def pause_events(monkeypatch: pytest.MonkeyPatch) -> dict[str, asyncio.Event]:
    """Events set when any server connection pauses writing or reading."""
    events = {"writing": asyncio.Event(), "reading": asyncio.Event()}
    pause_writing, pause_reading = Connection.pause_writing, Connection.pause_reading

    def writing(self: Connection) -> None:
        pause_writing(self)
        events["writing"].set()

    def reading(self: Connection) -> None:
        pause_reading(self)
        events["reading"].set()

    monkeypatch.setattr(Connection, "pause_writing", writing)
    monkeypatch.setattr(Connection, "pause_reading", reading)
    return events


async def test_send_waits_for_a_client_that_does_not_read(
    pause_events: dict[str, asyncio.Event],
) -> None:
    """A handler sending to a client that does not read blocks in send with a bounded buffer."""
    high, chunk, count = 64 * 1024, 16 * 1024, 2000  # 32 MB: more than any socket buffers
    hub = Hub(compression=False, limits=Limits(write_buffer_high=high, write_buffer_low=high // 4))
    sent = 0
    most_buffered = 0

    @hub.websocket("/flood")
    async def flood(ws: WebSocket) -> None:
        nonlocal sent, most_buffered
        for i in range(count):
            await ws.send(i.to_bytes(4, "big") * (chunk // 4))
            sent += 1
            most_buffered = max(most_buffered, ws._transport.buffered)  # type: ignore[attr-defined]

    async with serve(hub) as s, raw_websocket(s.port, "/flood") as (reader, _):
        await asyncio.wait_for(pause_events["writing"].wait(), UNIT)
        # The handler is now parked in ``await ws.send``: nothing more is queued.
        [connection] = s.server.connections
        buffered = connection.buffered
        assert 0 < sent < count
        # Bounded by the high-water mark plus the one frame that crossed it.
        assert high <= buffered <= high + chunk + 4
        assert most_buffered <= high + chunk + 4
        # Once the client reads, everything arrives, complete and in order.
        for i in range(count):
            head = await asyncio.wait_for(reader.readexactly(4), UNIT)
            assert head[0] == 0x82
            payload = await asyncio.wait_for(reader.readexactly(chunk), UNIT)
            assert payload[:4] == i.to_bytes(4, "big")
        assert await read_close(reader) == (1000, "")
    assert sent == count


async def test_flooding_client_pauses_reading(pause_events: dict[str, asyncio.Event]) -> None:
    """A client flooding a handler that does not recv fills a bounded queue, then reading pauses."""
    size, count, max_queue = 64 * 1024, 300, 8  # 19 MB: more than any socket buffers
    hub = Hub(compression=False, limits=Limits(max_queued_messages=max_queue))
    go = asyncio.Event()
    queued: list[int] = []
    received: list[bytes] = []

    @hub.websocket("/sink")
    async def sink(ws: WebSocket) -> None:
        await go.wait()
        queued.append(len(ws._queue))
        while len(received) < count:
            received.append(await ws.recv())  # type: ignore[arg-type]
        await ws.send("done")

    async with serve(hub) as s, connect(s.ws("/sink"), compression=None) as ws:

        async def flood() -> None:
            for i in range(count):
                await ws.send(i.to_bytes(4, "big") * (size // 4))

        sender = asyncio.create_task(flood())
        try:
            await asyncio.wait_for(pause_events["reading"].wait(), UNIT)
            [connection] = s.server.connections
            assert connection.transport is not None
            assert not connection.transport.is_reading()
            go.set()
            assert await asyncio.wait_for(ws.recv(), 5 * UNIT) == "done"
            await asyncio.wait_for(sender, UNIT)
        finally:
            sender.cancel()
    # One socket read can hold a few messages past the mark; never hundreds.
    assert max_queue <= queued[0] <= max_queue + 8
    assert [m[:4] for m in received] == [i.to_bytes(4, "big") for i in range(count)]


async def test_send_rejects_other_types() -> None:
    """``ws.send`` takes str or bytes-like; anything else is a TypeError for the handler."""
    hub = Hub()
    errors: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    @hub.websocket("/types")
    async def types(ws: WebSocket) -> None:
        await ws.send(bytearray(b"ba"))
        await ws.send(memoryview(b"mv"))
        try:
            await ws.send(42)  # type: ignore[arg-type]
        except TypeError as exc:
            errors.set_result(exc)

    async with serve(hub) as s, connect(s.ws("/types")) as ws:
        assert await asyncio.wait_for(ws.recv(), UNIT) == b"ba"
        assert await asyncio.wait_for(ws.recv(), UNIT) == b"mv"
        assert "int" in str(await asyncio.wait_for(errors, UNIT))
        with pytest.raises(ClientClosed):
            await asyncio.wait_for(ws.recv(), UNIT)


@pytest.mark.parametrize(
    ("offered", "reason"),
    [(["zzz"], b"invalid subprotocol"), (None, b"missing subprotocol")],
)
async def test_no_common_subprotocol_is_refused(offered: list[str] | None, reason: bytes) -> None:
    """An endpoint with subprotocols refuses (400) a client offering none of them, or nothing."""
    hub = Hub(subprotocols=["a", "b"])

    @hub.websocket("/sp")
    async def sp(ws: WebSocket) -> None:
        raise AssertionError("never opened")

    async with serve(hub) as s:
        with pytest.raises(InvalidStatus) as info:
            async with connect(s.ws("/sp"), subprotocols=offered):
                pass
    assert info.value.response.status_code == 400
    assert reason in info.value.response.body


async def test_no_subprotocol_when_none_configured() -> None:
    """An endpoint without subprotocols accepts a client offering some, agreeing on none."""
    hub = echo_hub()
    async with serve(hub) as s, connect(s.ws("/echo"), subprotocols=["chat"]) as ws:
        assert ws.subprotocol is None


# -- habits brought from websockets: path parameters, ping, address, id ----------------


async def test_path_parameters_reach_the_handler() -> None:
    """``/room/{name}`` accepts ``/room/lobby`` and gives ``ws.path_params``, percent-decoded."""
    hub = Hub()
    seen: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    @hub.websocket("/room/{name}/{rest:path}")
    async def room(ws: WebSocket) -> None:
        seen.put_nowait(dict(ws.path_params))

    async with serve(hub) as s:
        async with connect(s.ws("/room/caf%C3%A9/a/b")) as ws:
            await closed(ws)
        assert await asyncio.wait_for(seen.get(), UNIT) == {"name": "café", "rest": "a/b"}
        with pytest.raises(InvalidStatus) as refused:
            await connect(s.ws("/room/only-one-segment")).__aenter__()
        assert refused.value.response.status_code == 404


async def test_ping_returns_the_round_trip() -> None:
    """``await ws.ping()`` waits for the client's pong and returns the round trip in seconds."""
    hub = Hub()
    results: asyncio.Queue[tuple[float, float]] = asyncio.Queue()

    @hub.websocket("/ping")
    async def ping(ws: WebSocket) -> None:
        first, _ = await asyncio.gather(ws.ping(), ws.ping())
        results.put_nowait((first, ws.latency))
        await ws.recv()

    async with serve(hub) as s, connect(s.ws("/ping")):
        round_trip, latency = await asyncio.wait_for(results.get(), UNIT)
        assert 0 < round_trip < UNIT
        assert latency == round_trip or latency > 0


async def test_keepalive_pings_measure_latency() -> None:
    """The server's own keepalive pings update ``ws.latency`` without the handler asking."""
    hub = fast_hub(ping_interval=UNIT / 10)
    latency: asyncio.Queue[float] = asyncio.Queue()

    @hub.websocket("/wait")
    async def wait(ws: WebSocket) -> None:
        while ws.latency == 0.0:
            await asyncio.sleep(UNIT / 20)
        latency.put_nowait(ws.latency)

    async with serve(hub) as s, connect(s.ws("/wait")):
        assert 0 < await asyncio.wait_for(latency.get(), UNIT) < UNIT


async def test_ping_raises_when_the_client_leaves() -> None:
    """A ping in flight when the connection closes raises ``ConnectionClosed``, as later ones do."""
    hub = Hub()
    outcome: asyncio.Queue[BaseException] = asyncio.Queue()

    @hub.websocket("/ping")
    async def ping(ws: WebSocket) -> None:
        for _ in range(2):
            try:
                await ws.ping()
            except ConnectionClosed as exc:
                outcome.put_nowait(exc)

    # Our own frame codec does not answer pings: the first stays in flight.
    async with serve(hub) as s, raw_websocket(s.port, "/ping") as (reader, writer):
        assert (await read_frame(reader))[0] == PING
        writer.write(close_frame(1000))
        for _ in range(2):
            assert (await asyncio.wait_for(outcome.get(), UNIT)).code == 1000


async def test_remote_address_and_id() -> None:
    """``ws.remote_address`` is the client's (host, port); ``ws.id`` differs per connection."""
    hub = Hub()
    seen: asyncio.Queue[tuple[Any, Any]] = asyncio.Queue()

    @hub.websocket("/who")
    async def who(ws: WebSocket) -> None:
        seen.put_nowait((ws.remote_address, ws.id))
        assert ws.id == ws.id  # stable for the connection

    async with serve(hub) as s:
        async with connect(s.ws("/who")) as one, connect(s.ws("/who")) as two:
            (address, first), (_, second) = [
                await asyncio.wait_for(seen.get(), UNIT) for _ in range(2)
            ]
            ports = {one.local_address[1], two.local_address[1]}
        assert address[0] == "127.0.0.1" and address[1] in ports
        assert first != second
