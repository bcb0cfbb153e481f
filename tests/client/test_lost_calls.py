"""Calls in flight when the connection drops: each fails with ``ConnectionClosed``, and
asyncio logs nothing about an exception that was never retrieved."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import UNIT, frame
from wirehub import ConnectionClosed
from wirehub.client import Client

WELCOME = {
    "type": "welcome",
    "v": 1,
    "peer": "p",
    "ping_interval": None,
    "limits": {"max_message_size": None, "max_rooms": None, "max_pending": None},
    "rooms": {},
}
BIG = 16 << 20  # more than the socket buffers of loopback: a send of it blocks


class Deaf:
    """A WebSocket server that welcomes, then reads nothing: a client's big send blocks."""

    def __init__(self) -> None:
        self.sending = asyncio.Event()  # the client began a frame (and cannot finish it)
        self.writers: list[asyncio.StreamWriter] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(
            hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        writer.write(frame(0x1, json.dumps(WELCOME).encode(), mask=False))
        await reader.readexactly(2)
        self.sending.set()  # and read no more: the StreamReader stops reading when full

    def cut(self) -> None:
        """Reset every connection (the server crashed)."""
        for writer in self.writers:
            writer.transport.abort()


@contextlib.asynccontextmanager
async def deaf_server() -> AsyncIterator[tuple[Deaf, str]]:
    deaf = Deaf()
    server = await asyncio.start_server(deaf.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield deaf, f"ws://127.0.0.1:{port}/ws"
    finally:
        deaf.cut()
        server.close()
        await server.wait_closed()


async def test_calls_cut_off_while_sending_leave_no_unretrieved_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A call blocked in its send and one awaiting its answer, when the TCP connection is
    reset: both raise ConnectionClosed and asyncio reports no unretrieved exception."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        async with deaf_server() as (deaf, url):
            client = Client(url, reconnect=False)
            await client.connect()
            waiting = asyncio.create_task(client.call("small"))
            sending = asyncio.create_task(client.call("big", "x" * BIG))
            await asyncio.wait_for(deaf.sending.wait(), UNIT)
            deaf.cut()
            for call in (waiting, sending):
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(call, UNIT)
            await client.close()
            del waiting, sending, call
        gc.collect()
        await asyncio.sleep(0)  # the handler is called from a callback
    finally:
        loop.set_exception_handler(previous)
    assert [c["message"] for c in reported] == []
    assert "never retrieved" not in caplog.text
