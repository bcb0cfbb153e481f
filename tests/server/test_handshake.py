"""The handshake's own cost: what one upgrade writes, and what it leaves behind."""

from __future__ import annotations

import asyncio
import json
import socket

from tests.conftest import UNIT, serve, upgrade_request
from wirehub import Hub, Peer, Request


async def first_read(port: int, request: bytes) -> bytes:
    """Send ``request`` on a new socket and return what its first read gets."""
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        sock.setblocking(False)
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), UNIT)
        await loop.sock_sendall(sock, request)
        return await asyncio.wait_for(loop.sock_recv(sock, 65536), UNIT)


async def test_101_comes_before_the_welcome() -> None:
    """The 101 held for the session's first step still comes first, the welcome right after."""
    hub = Hub()

    @hub.on("connect")
    async def connect(peer: Peer, request: Request) -> None:
        await peer.join("lobby")

    async with serve(hub) as s:
        data = await first_read(s.port, upgrade_request("/ws"))
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert rest[0] == 0x81, rest  # a text frame: the welcome
    welcome = json.loads(rest[4:] if rest[1] == 126 else rest[2:])
    assert welcome["type"] == "welcome" and "lobby" in welcome["rooms"]


async def test_refused_handshake_keeps_the_engines_answer() -> None:
    """A handshake with an unknown version is answered 400 with the engine's reason, then closed."""
    request = upgrade_request("/ws").replace(b"Version: 13", b"Version: 8")
    async with serve(Hub()) as s:
        data = await first_read(s.port, request)
    assert data.startswith(b"HTTP/1.1 400 "), data
    assert b"Sec-WebSocket-Version" in data
