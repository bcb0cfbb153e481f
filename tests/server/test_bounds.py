"""Every send bounded, every close finished: a client that stops reading costs a bounded buffer
and a bounded time, whatever it sends and whoever starts the close."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.conftest import (
    CLOSE,
    GRACE,
    PING,
    TEXT,
    TICK,
    UNIT,
    Served,
    close_frame,
    frame,
    raw_connection,
    raw_websocket,
    read_close,
    read_frame,
    read_response,
    serve,
    upgrade_request,
)
from wirehub import ConfigError, Hub, Limits, Peer, Reject, Request, Response, Timeouts, WebSocket
from wirehub.server.connection import Connection

SMALL = Limits(write_buffer_high=16 * 1024, write_buffer_low=4096, max_buffered=256 * 1024)
WIDE = Limits(write_buffer_high=1 << 20, write_buffer_low=1 << 18)  # still reading at 256 KiB
DEFLATE = "Sec-WebSocket-Extensions: permessage-deflate\r\n"


async def until(condition: Callable[[], bool], timeout: float = UNIT) -> None:
    """Wait (checking every few ms) until ``condition()`` holds; fail after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(TICK / 10)


async def server_side(s: Served) -> Connection:
    """The one connection the server holds (once it has it)."""
    await until(lambda: len(s.server.connections) == 1)
    return next(iter(s.server.connections))


@contextlib.asynccontextmanager
async def narrow(
    s: Served, path: str | None = None, extra: str = ""
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter, Connection]]:
    """A connection with 4 KiB kernel buffers from the start on both ends (so not reading
    shows in the server's own buffer at once), upgraded to ``path`` unless it is None.

    From the start: shrunk on a live connection, the window already advertised is
    larger, so the kernel drops segments in flight and their retransmissions back off
    for seconds. The listener keeps the small send buffer: connect other clients first.
    """
    for listener in s.server._servers[0].sockets:  # accepted sockets inherit it
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    before = set(s.server.connections)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.wait_for(
        asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", s.port)), UNIT
    )
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        if path is not None:
            writer.write(upgrade_request(path, extra))
            assert (await read_response(reader, head_only=True)).status == 101
        await until(lambda: len(s.server.connections - before) == 1)
        [connection] = s.server.connections - before
        yield reader, writer, connection
    finally:
        writer.transport.abort()


def bounds_hub(limits: Limits = SMALL, **timeouts: Any) -> Hub:
    """Plain ``/echo``, ``/flood`` (256 KiB, then waits) and the event endpoint; a big route."""
    hub = Hub(limits=limits, timeouts=Timeouts(**timeouts))
    hub.finished = asyncio.Event()  # type: ignore[attr-defined]

    @hub.websocket("/echo")
    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    @hub.websocket("/flood")
    async def flood(ws: WebSocket) -> None:
        try:
            await ws.send(bytes(256 * 1024))
            await ws.wait_closed()
        finally:
            hub.finished.set()  # type: ignore[attr-defined]

    @hub.route("/big")
    def big(request: Request) -> Response:
        return Response(200, bytes(1 << 20))

    @hub.route("/medium")
    def medium(request: Request) -> Response:
        return Response(200, bytes(256 * 1024))  # more than the kernel takes, less than WIDE's mark

    return hub


# -- answers to a client's own input ---------------------------------------------------


def stopped_or_over(connection: Connection) -> bool:
    """The server stopped reading this client, or buffered past the limit for it."""
    stopped = getattr(connection, "_read_stopped", False)
    return stopped or connection.buffered > 2 * SMALL.max_buffered + (1 << 20)


def pings(count: int) -> bytes:
    return b"".join(frame(PING, bytes(125)) for _ in range(count))


@pytest.mark.parametrize("path", ["/echo", "/ws"])
async def test_ping_flood_from_a_client_that_never_reads_is_bounded(path: str) -> None:
    """2.6 MB of pings, nothing read: the server stops reading instead of buffering the pongs."""
    hub = bounds_hub()
    async with serve(hub) as s, narrow(s, path) as (_, writer, connection):
        writer.write(pings(20_000))  # 2.5 MB of pongs, were they all answered
        await until(lambda: stopped_or_over(connection))
        assert connection.buffered <= SMALL.max_buffered


async def test_pipelined_requests_from_a_client_that_never_reads_are_bounded() -> None:
    """50 pipelined GETs of a 1 MiB page, nothing read: one answer is buffered, not 50."""
    hub = bounds_hub()
    async with serve(hub) as s, narrow(s) as (_, writer, connection):
        writer.write(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n" * 50)
        await until(lambda: stopped_or_over(connection))
        assert connection.buffered <= (1 << 20) + SMALL.max_buffered


# -- every close ends within Timeouts.close ------------------------------------------------

STARTERS = {
    "client close": close_frame(1000),
    "protocol error": frame(TEXT, b"unmasked", mask=False),
    "invalid UTF-8": frame(TEXT, b"\xff"),
}


@pytest.mark.parametrize("starter", list(STARTERS))
async def test_close_started_by_the_engine_ends_in_time(starter: str) -> None:
    """The client closes (or breaks the protocol) but reads nothing: cut after Timeouts.close."""
    hub = bounds_hub(WIDE, close=GRACE, ping_interval=None)
    async with serve(hub) as s, narrow(s, "/flood") as (_, writer, connection):
        await until(lambda: connection.buffered > 0)  # the kernel holds no more of it
        writer.write(STARTERS[starter])
        await until(lambda: not s.server.connections, GRACE + UNIT)
        await asyncio.wait_for(hub.finished.wait(), UNIT)  # type: ignore[attr-defined]
        assert hub.gate.open == 0


async def test_keepalive_close_of_a_client_that_reads_nothing_ends_in_time() -> None:
    """A client taking none of our data is judged dead, and that close ends too."""
    hub = bounds_hub(WIDE, close=GRACE, ping_interval=TICK, ping_timeout=TICK)
    async with serve(hub) as s, narrow(s, "/flood") as (_, _writer, _connection):
        await until(lambda: not s.server.connections, 2 * UNIT)
        await asyncio.wait_for(hub.finished.wait(), UNIT)  # type: ignore[attr-defined]
        assert hub.gate.open == 0


@pytest.mark.parametrize("half_close", [False, True], ids=["connection-close", "half-close"])
async def test_http_close_with_an_unread_response_ends_in_time(half_close: bool) -> None:
    """A response ending the connection (``Connection: close``, or the client's EOF), never
    read: the socket is dropped after Timeouts.close."""
    hub = bounds_hub(WIDE, close=GRACE)
    async with serve(hub) as s, narrow(s) as (_, writer, _connection):
        if half_close:
            writer.write(b"GET /medium HTTP/1.1\r\nHost: t\r\n\r\n")
            writer.write_eof()
        else:
            writer.write(b"GET /medium HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        await until(lambda: not s.server.connections, GRACE + UNIT)


# -- the keepalive and our own backlog ---------------------------------------------------


async def paced_read(reader: asyncio.StreamReader) -> int:
    """Read one data frame 16 KiB at a time, one read every 20 ms; return its size."""
    head = await asyncio.wait_for(reader.readexactly(2), UNIT)
    assert head[0] & 0x0F != CLOSE, "closed before the message"
    length = head[1] & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    left = length
    while left:
        left -= len(await asyncio.wait_for(reader.read(min(left, 16384)), UNIT))
        await asyncio.sleep(0.02)
    return length


async def test_ping_waiting_behind_our_own_data_is_not_a_timeout() -> None:
    """A live client reading 800 KB/s gets a 384 KiB message in ~0.5 s; the pings that waited
    behind it (timeout 0.25 s) do not count against it: no 1011."""
    hub = Hub(timeouts=Timeouts(ping_interval=TICK, ping_timeout=GRACE))
    size = 384 * 1024

    @hub.websocket("/big")
    async def big(ws: WebSocket) -> None:
        await ws.send(bytes(size))
        await ws.wait_closed()

    async with serve(hub) as s, narrow(s, "/big") as (reader, writer, _):
        assert await paced_read(reader) == size
        writer.write(close_frame(1000))  # the pings that waited behind it are here: a live
        assert await read_close(reader) == (1000, "")  # client reads them now, no 1011


# -- close codes and reasons from the application ------------------------------------------


async def test_a_long_close_reason_is_cut_at_a_character_boundary() -> None:
    """``ws.close(4003, 200 bytes)`` closes with 4003 and the first 123 bytes, whole characters."""
    hub = Hub()

    @hub.websocket("/bye")
    async def bye(ws: WebSocket) -> None:
        await ws.close(4003, "é" * 100)

    async with serve(hub) as s, raw_websocket(s.port, "/bye") as (reader, _writer):
        assert await read_close(reader) == (4003, "é" * 61)


async def test_a_close_code_no_frame_may_carry_is_refused_where_it_is_asked() -> None:
    """``ws.close(1006)`` raises ``ConfigError`` in the handler; the connection still closes."""
    hub = Hub()
    raised: list[Exception] = []

    @hub.websocket("/bad")
    async def bad(ws: WebSocket) -> None:
        try:
            await ws.close(1006)
        except ConfigError as exc:
            raised.append(exc)
            raise

    async with serve(hub) as s, raw_websocket(s.port, "/bad") as (reader, _writer):
        assert await read_close(reader) == (1011, "internal error")
    assert len(raised) == 1


@pytest.mark.parametrize(
    ("reject", "expected"),
    [
        (lambda: Reject(reason="x" * 133, code=4003), (4003, "x" * 123)),
        (lambda: Reject(code=1006), (1011, "internal error")),
    ],
    ids=["long-reason", "code-1006"],
)
async def test_a_connect_hook_refusing_badly_still_closes(
    reject: Callable[[], Reject], expected: tuple[int, str]
) -> None:
    """A ``Reject`` with a 133-byte reason closes with its reason cut; one with code 1006 is a
    ``ConfigError`` where it is raised, so the client is closed with 1011: never left hanging."""
    hub = Hub()

    @hub.on("connect")
    def connect(peer: Peer, request: Request) -> None:
        raise reject()

    async with serve(hub) as s, raw_websocket(s.port, "/ws") as (reader, _writer):
        assert await read_close(reader) == expected


@pytest.mark.parametrize(
    "response",
    [
        lambda: Response(999, b"odd"),
        lambda: Response(200, b"split", headers=[("X-Name", "a\r\nSet-Cookie: evil=1")]),
        lambda: Response(200, b"wide", headers=[("X-Name", "\u2603")]),
    ],
    ids=["status-999", "crlf-header", "non-latin-1-header"],
)
async def test_a_response_http_cannot_carry_is_a_500(response: Callable[[], Response]) -> None:
    """A route returning a status or header HTTP cannot carry gets 500 (logged), not a reset
    or a split response; the connection stays usable."""
    hub = Hub()
    hub.add_route("/odd", lambda request: response())

    async with serve(hub) as s, raw_connection(s.port) as (reader, writer):
        writer.write(
            b"GET /odd HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        first = await read_response(reader)
        assert first.status == 500 and "set-cookie" not in first.headers
        assert (await read_response(reader)).status == 200


# -- engine state after close --------------------------------------------------------------


async def test_a_message_arriving_with_the_close_frame_is_answered_then_the_close() -> None:
    """Compressed connection, one read holding a message and the close frame, a 300-byte
    compressed answer: the answer, then the close reply; nothing escapes data_received."""
    hub = Hub()

    @hub.on("big")
    def big_answer(peer: Peer) -> str:
        return "a" * 300

    async with serve(hub) as s, raw_connection(s.port) as (reader, writer):
        writer.write(upgrade_request("/ws", DEFLATE))
        response = await read_response(reader, head_only=True)
        assert "permessage-deflate" in response.headers["sec-websocket-extensions"]
        await read_frame(reader)  # welcome
        writer.write(frame(TEXT, b'{"type":"emit","event":"big","id":1}') + close_frame(1000))
        head = await asyncio.wait_for(reader.readexactly(1), UNIT)
        assert head[0] & 0x40  # RSV1: compressed
        _opcode, payload = await read_frame(_prepend(reader, head))
        answer = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
        assert answer == b'{"type":"ack","id":1,"data":"' + b"a" * 300 + b'"}'
        assert await read_close(reader) == (1000, "")


def _prepend(reader: asyncio.StreamReader, data: bytes) -> asyncio.StreamReader:
    reader._buffer[:0] = data  # type: ignore[attr-defined]
    return reader


# -- nothing handled once the server is closing --------------------------------------------


async def test_nothing_is_handled_after_the_server_starts_closing() -> None:
    """After a handler closes its peer with 4003, the 8 messages the client still sends run no
    handler (the client ignores the close frame, as a hostile one would)."""
    hub = Hub(timeouts=Timeouts(close=GRACE))
    counted: list[int] = []

    @hub.on("bye")
    async def bye(peer: Peer) -> None:
        await peer.close(4003, "go away")

    @hub.on("count")
    def count(peer: Peer) -> None:
        counted.append(1)

    async with serve(hub) as s, raw_websocket(s.port, "/ws") as (reader, writer):
        await read_frame(reader)  # welcome
        writer.write(frame(TEXT, b'{"type":"emit","event":"bye"}'))
        assert await read_close(reader) == (4003, "go away")
        for _ in range(8):
            writer.write(frame(TEXT, b'{"type":"emit","event":"count","id":2}'))
        writer.write(frame(PING, b"after"))
        await writer.drain()
        await until(lambda: not s.server.connections, 2 * UNIT)
    assert counted == []
