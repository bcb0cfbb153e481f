"""Limits with safe defaults: sizes, deflate bombs, connections, rooms, pending work, slowloris."""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import time
import zlib
from typing import Any

from tests.conftest import (
    BINARY,
    CONT,
    TEXT,
    UNIT,
    frame,
    http,
    raw_connection,
    read_close,
    read_eof,
    read_frame,
    read_response,
    serve,
    upgrade_request,
)
from tests.hub.wire import WireClient
from tests.security.conftest import handshake_status
from tests.services import free_port, wait_listening
from wirehub import Hub, Limits, Peer, Timeouts
from wirehub.config import Limits as LimitsConfig
from wirehub.config import Timeouts as TimeoutsConfig
from wirehub.config import socket_budget

DEFLATE = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"


def test_defaults_are_set_and_documented() -> None:
    """Every limit and timeout has a bounded default (None only where documented as off)."""
    limits, timeouts = LimitsConfig(), TimeoutsConfig()
    assert limits.max_message_size == 1 << 20
    assert limits.max_head_size == 16 * 1024 and limits.max_headers == 100
    assert limits.max_rooms_per_peer == 100 and limits.max_pending_calls == 64
    assert limits.max_connections is not None
    assert timeouts.handshake == 10.0 and timeouts.auth == 10.0
    assert timeouts.ping_interval == timeouts.ping_timeout == 20.0


def test_max_connections_stays_below_the_fd_limit() -> None:
    """The default WebSocket cap leaves descriptors for HTTP and /healthz (25,000 at most)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = LimitsConfig().max_connections
    assert cap is not None and cap <= 25_000
    if soft != resource.RLIM_INFINITY:
        assert cap <= soft - 64
        budget = socket_budget()
        assert budget is not None and cap < budget < soft


def deflate_bomb(inflated: int, wbits: int = 12) -> bytes:
    """A permessage-deflate payload that inflates to ``inflated`` zero bytes (RFC 7692 §7.2.1)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -wbits)
    chunk = bytes(1 << 20)
    parts = [compressor.compress(chunk) for _ in range(inflated // len(chunk))]
    parts.append(compressor.compress(bytes(inflated % len(chunk))))
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    payload = b"".join(parts)
    assert payload.endswith(b"\x00\x00\xff\xff")
    return payload[:-4]


async def deflate_socket(port: int, path: str) -> Any:
    conn = raw_connection(port)
    reader, writer = await conn.__aenter__()
    writer.write(upgrade_request(path, DEFLATE))
    response = await read_response(reader, head_only=True)
    assert response.status == 101
    assert "permessage-deflate" in response.headers["sec-websocket-extensions"]
    return conn, reader, writer


async def test_deflate_bomb_closes_1009_without_inflating_it() -> None:
    """A 64 KiB compressed frame that would inflate to 64 MiB closes with 1009 at once:
    the size limit applies to the decompressed size, and inflation stops at the limit."""
    hub = Hub()

    @hub.websocket("/echo")
    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    bomb = deflate_bomb(64 << 20)
    assert len(bomb) < 100_000
    async with serve(hub) as served:
        for path in ("/echo", "/ws"):
            conn, reader, writer = await deflate_socket(served.port, path)
            try:
                start = time.monotonic()
                writer.write(frame(BINARY, bomb, rsv=4))
                code, _ = await read_close(reader)
                assert code == 1009
                assert time.monotonic() - start < UNIT
            finally:
                await conn.__aexit__(None, None, None)
        # A compressed message under the limit still works.
        conn, reader, writer = await deflate_socket(served.port, "/echo")
        try:
            writer.write(frame(BINARY, deflate_bomb(1 << 19), rsv=4))
            opcode, payload = await read_frame(reader)  # echoed, compressed again
            inflated = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
            assert opcode == BINARY and inflated == bytes(1 << 19)
        finally:
            await conn.__aexit__(None, None, None)


async def test_oversized_message_closes_1009() -> None:
    """A message over ``max_message_size`` (even fragmented) closes with 1009."""
    hub = Hub(limits=Limits(max_message_size=1000))
    async with serve(hub) as served, raw_connection(served.port) as (reader, writer):
        writer.write(upgrade_request("/ws"))
        assert (await read_response(reader, head_only=True)).status == 101
        welcome = json.loads((await read_frame(reader))[1])
        assert welcome["limits"]["max_message_size"] == 1000
        writer.write(frame(TEXT, b"x" * 400, fin=False))
        for _ in range(2):
            writer.write(frame(CONT, b"x" * 400, fin=False))
        assert (await read_close(reader))[0] == 1009


async def test_max_connections_is_503_before_the_upgrade() -> None:
    """``Limits.max_connections`` WebSockets at most; the next handshake gets 503 + Retry-After."""
    hub = Hub(limits=Limits(max_connections=2))
    async with serve(hub) as served:
        a = await WireClient.open(served.ws("/ws"))
        b = await WireClient.open(served.ws("/ws"))
        status, headers = await handshake_status(served.port)
        assert status == 503 and headers["retry-after"] == "5"
        assert hub.stats["refused_capacity"] == 1
        await a.close()
        for _ in range(int(20 * UNIT)):
            if hub.gate.open < 2:
                break
            await asyncio.sleep(0.05)
        c = await WireClient.open(served.ws("/ws"))
        await b.close()
        await c.close()


async def test_rooms_per_peer() -> None:
    """One join past ``max_rooms_per_peer`` is ``limit_exceeded``."""
    hub = Hub(limits=Limits(max_rooms_per_peer=3))
    async with serve(hub) as served, await WireClient.open(served.ws("/ws")) as client:
        for i in range(3):
            await client.join(f"r{i}")
        reply = await client.request({"type": "join", "room": "r3"})
        assert reply["code"] == "limit_exceeded"
        await client.request({"type": "leave", "room": "r0"})
        await client.join("r3")


async def test_pending_handlers_are_flow_controlled() -> None:
    """Past ``max_pending_calls`` waiting handlers, reading pauses; nothing is lost."""
    hub = Hub(limits=Limits(max_pending_calls=2))
    release = asyncio.Event()
    running: list[int] = []
    peak = 0

    @hub.on("wait")
    async def wait(peer: Peer, n: int) -> int:
        nonlocal peak
        running.append(n)
        peak = max(peak, len(running))
        await release.wait()
        running.remove(n)
        return n

    async with serve(hub) as served, await WireClient.open(served.ws("/ws")) as client:
        for n in range(1, 11):
            await client.send({"type": "emit", "event": "wait", "data": n, "id": n})
        await asyncio.sleep(UNIT / 10)
        assert len(running) == 2
        release.set()
        answers = sorted([(await client.recv())["id"] for _ in range(10)])
        assert answers == list(range(1, 11))
    assert peak == 2


async def test_messages_before_welcome_are_bounded() -> None:
    """A flood while the connect handler waits pauses reading (bounded backlog), then all of
    it is processed in order."""
    hub = Hub()
    go = asyncio.Event()
    peers: list[Peer] = []

    @hub.on("connect")
    async def on_connect(peer: Peer) -> None:
        peers.append(peer)
        await go.wait()

    @hub.on("n")
    def n(peer: Peer, value: int) -> int:
        return value

    count = 2000
    pad = "x" * 1000
    async with serve(hub) as served, raw_connection(served.port) as (reader, writer):
        writer.write(upgrade_request("/ws"))
        assert (await read_response(reader, head_only=True)).status == 101
        for i in range(count):
            message = json.dumps({"type": "emit", "event": "n", "data": i, "pad": pad})
            writer.write(frame(TEXT, message.encode()))
        await asyncio.sleep(UNIT / 5)
        assert peers and len(peers[0]._backlog) < count // 4
        go.set()
        writer.write(frame(TEXT, b'{"type":"ping","id":1}'))
        assert json.loads((await read_frame(reader))[1])["type"] == "welcome"
        assert json.loads((await read_frame(reader))[1]) == {"type": "ack", "id": 1, "data": None}


async def test_request_head_too_large_is_431() -> None:
    """A handshake with headers over ``max_head_size`` is refused with 431 before parsing ends."""
    hub = Hub(limits=Limits(max_head_size=2048))
    async with serve(hub) as served, raw_connection(served.port) as (reader, writer):
        writer.write(upgrade_request("/ws", "X-Pad: " + "a" * 4096 + "\r\n"))
        assert (await read_response(reader)).status == 431


async def test_slowloris_handshake_gets_408_even_while_trickling() -> None:
    """Bytes trickling in do not extend the handshake deadline (slowloris)."""
    hub = Hub(timeouts=Timeouts(handshake=UNIT / 4))
    async with serve(hub) as served, raw_connection(served.port) as (reader, writer):
        start = time.monotonic()
        request = upgrade_request("/ws")
        answered = asyncio.ensure_future(read_eof(reader))
        for byte in request[:-2]:
            if answered.done():
                break
            writer.write(bytes([byte]))
            await asyncio.sleep(UNIT / 40)
        data = await answered
        assert data.startswith(b"HTTP/1.1 408")
        assert time.monotonic() - start < UNIT


async def test_near_the_fd_limit_handshakes_get_503_and_health_answers() -> None:
    """A server whose fd limit is 256: WebSocket 193 gets 503 (not a reset), and past the socket
    budget every new connection gets 503 except /healthz, which still answers; logged once."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "wirehub", "serve", "examples/echo.py:hub", "--port", str(port)],
        stderr=subprocess.PIPE,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)),
    )
    held: list[asyncio.StreamWriter] = []
    try:
        await asyncio.to_thread(wait_listening, port, process)
        for _ in range(192):  # 256 less a tenth, at least 64
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            held.append(writer)
            writer.write(upgrade_request("/echo"))
            assert (await read_response(reader, head_only=True)).status == 101
        status, headers = await handshake_status(port, "/echo")
        assert (status, headers["retry-after"]) == (503, "5")
        for _ in range(40):  # idle connections, past the socket budget (224)
            held.append((await asyncio.open_connection("127.0.0.1", port))[1])
        health = await http(port, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert health.status == 200 and json.loads(health.body)["websockets"] == 192
        assert (await http(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")).status == 503
    finally:
        for writer in held:
            writer.transport.abort()
        process.terminate()
        _, errors = await asyncio.to_thread(process.communicate, timeout=10 * UNIT)
    assert errors.decode().count("server at capacity") == 1, errors.decode()
