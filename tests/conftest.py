"""Shared fixtures and helpers for the wirehub test suite.

Every timeout in the suite is a multiple of ``UNIT`` (seconds), so a slow
machine can raise them all at once with ``WIREHUB_TEST_UNIT=3``. Tests never
sleep and hope: they wait on an event with ``asyncio.wait_for(..., UNIT)``.

Peers are independent of wirehub: the ``websockets`` client, raw sockets
speaking HTTP/1.1 by hand, and the small frame codec below (its own code, not
the ``websockets`` one the server uses, so a shared bug cannot hide).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import os
import secrets
import ssl
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trustme
import uvloop
from websockets.asyncio.client import connect as ws_connect

from wirehub import Hub, Limits, Timeouts
from wirehub.server.serve import Server

UNIT = float(os.environ.get("WIREHUB_TEST_UNIT", "1.0"))
"""The one time unit (seconds) every timeout in the suite scales from."""

TICK = UNIT / 20
"""A server timeout short enough to elapse many times within one ``UNIT``.

Only for timeouts nothing races: the test waits for them to fire."""

GRACE = UNIT / 4
"""A server timeout the test's own client must beat (send its first bytes,
answer a ping): long enough that a loaded machine does not lose the race."""

# Opcodes (RFC 6455 §5.2), spelled out here rather than imported.
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


# -- event loops ---------------------------------------------------------------

# Modules whose tests drive the server's socket code run on both loops: the
# stdlib one, and uvloop, which ``wirehub serve`` and ``Hub.run`` use.
BOTH_LOOPS = ("tests/server/", "tests/hub/test_websocket.py")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]] | None:
    if not item.nodeid.startswith(BOTH_LOOPS):
        return {"asyncio": asyncio.new_event_loop}
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


# -- serving -----------------------------------------------------------------


@dataclasses.dataclass
class Served:
    """A running in-process server on 127.0.0.1 and a free port."""

    server: Server
    host: str
    port: int

    @property
    def url(self) -> str:
        return self.server.url

    def ws(self, path: str = "/") -> str:
        scheme = "wss" if self.server.ssl else "ws"
        return f"{scheme}://{self.host}:{self.port}{path}"


@contextlib.asynccontextmanager
async def serve(
    hub: Hub, *, ssl: ssl.SSLContext | None = None, shutdown_code: int = 1001
) -> AsyncIterator[Served]:
    """Serve ``hub`` on ``127.0.0.1:0`` for the ``async with`` block, then shut down."""
    server = Server(hub, ssl=ssl, shutdown_code=shutdown_code)
    [(host, port)] = await server.listen("127.0.0.1", 0)
    try:
        yield Served(server, host, port)
    finally:
        await server.shutdown(timeout=UNIT)


@pytest.fixture(name="serve")
def serve_fixture() -> Callable[..., contextlib.AbstractAsyncContextManager[Served]]:
    """``async with serve(hub) as s:`` — a server on a free loopback port."""
    return serve


def echo_hub(**kwargs: Any) -> Hub:
    """A hub with one ``/echo`` endpoint that sends every message back."""
    hub = Hub(**kwargs)

    @hub.websocket("/echo")
    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    return hub


def fast_hub(**kwargs: Any) -> Hub:
    """``echo_hub`` with the given ``Timeouts``/``Limits`` fields overridden."""
    timeouts = {k: kwargs.pop(k) for k in list(kwargs) if k in Timeouts.__dataclass_fields__}
    limits = {k: kwargs.pop(k) for k in list(kwargs) if k in Limits.__dataclass_fields__}
    return echo_hub(timeouts=Timeouts(**timeouts), limits=Limits(**limits), **kwargs)


def connect(uri: str, **kwargs: Any) -> ws_connect:
    """The ``websockets`` client with the suite's timeouts and no proxy from the environment."""
    kwargs.setdefault("open_timeout", UNIT)
    kwargs.setdefault("close_timeout", UNIT)
    kwargs.setdefault("proxy", None)
    return ws_connect(uri, **kwargs)


# -- TLS -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_ssl(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def client_ssl(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    return context


# -- raw HTTP ------------------------------------------------------------------


@dataclasses.dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names; the last value wins
    body: bytes


async def read_response(reader: asyncio.StreamReader, *, head_only: bool = False) -> RawResponse:
    """Read one HTTP/1.1 response framed by Content-Length (all wirehub sends)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), UNIT)
    status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    version, status, *_ = status_line.split(" ")
    assert version == "HTTP/1.1", status_line
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = 0 if head_only else int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), UNIT)
    return RawResponse(int(status), headers, body)


@contextlib.asynccontextmanager
async def raw_connection(
    port: int, **kwargs: Any
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A plain TCP connection to the server, closed at the end of the block."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, **kwargs), UNIT
    )
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await asyncio.wait_for(writer.wait_closed(), UNIT)


async def http(port: int, request: bytes) -> RawResponse:
    """Send one raw request on a fresh connection and read the response."""
    async with raw_connection(port) as (reader, writer):
        writer.write(request)
        return await read_response(reader)


async def read_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes the connection (within ``UNIT``)."""
    return await asyncio.wait_for(reader.read(), UNIT)


async def dropped(reader: asyncio.StreamReader) -> bool:
    """Wait until the server closes or aborts the connection; True if it sent nothing more."""
    try:
        return await read_eof(reader) == b""
    except ConnectionResetError:
        return True


def upgrade_request(path: str = "/echo", extra: str = "") -> bytes:
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


@contextlib.asynccontextmanager
async def raw_websocket(
    port: int, path: str = "/echo"
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A WebSocket opened by hand (no extensions), for sending bytes no client would."""
    async with raw_connection(port) as (reader, writer):
        writer.write(upgrade_request(path))
        response = await read_response(reader, head_only=True)
        assert response.status == 101, response
        yield reader, writer


# -- raw WebSocket frames --------------------------------------------------------


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
) -> bytes:
    """Encode one frame as a client would (masked), or break the rules on request."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if not mask:
        return head + payload
    key = secrets.token_bytes(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(CLOSE, struct.pack("!H", code) + reason.encode())


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one (unmasked, unfragmented) server frame: ``(opcode, payload)``."""
    head = await asyncio.wait_for(reader.readexactly(2), UNIT)
    assert head[0] & 0x80, "the server sent a fragment"
    assert not head[1] & 0x80, "the server masked a frame"
    length = head[1] & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    payload = await asyncio.wait_for(reader.readexactly(length), UNIT)
    return head[0] & 0x0F, payload


async def read_close(reader: asyncio.StreamReader) -> tuple[int, str]:
    """Skip data and pings until the server's close frame; return ``(code, reason)``."""
    while True:
        opcode, payload = await read_frame(reader)
        if opcode == CLOSE:
            (code,) = struct.unpack("!H", payload[:2])
            return code, payload[2:].decode()


# -- real services (redis-server) ------------------------------------------------

# Fixtures shared by the scaling tests in several folders; defined in their own module.
from tests.services import prefix, redis_cluster, redis_server, redis_url  # noqa: E402, F401
