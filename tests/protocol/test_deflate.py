"""permessage-deflate as wirehub negotiates it: lazy, per message, one frame for many."""

from __future__ import annotations

import asyncio
import zlib

import pytest
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Opcode

from tests.conftest import UNIT, connect, echo_hub, serve
from wirehub import WebSocket, broadcast
from wirehub.protocol.websocket import (
    COMPRESSION_THRESHOLD,
    WINDOW_BITS,
    WebSocketProtocol,
    encode_deflated_frame,
    encode_frame,
)


async def test_negotiates_no_server_context_takeover() -> None:
    """The server answers a deflate offer with server_no_context_takeover and 12-bit windows."""
    async with serve(echo_hub()) as s, connect(s.ws("/echo")) as ws:
        header = ws.response.headers["Sec-WebSocket-Extensions"]
        assert "permessage-deflate" in header
        assert "server_no_context_takeover" in header
        assert f"server_max_window_bits={WINDOW_BITS}" in header
        await ws.send("x" * 5000)
        assert await ws.recv() == "x" * 5000


async def test_small_messages_go_uncompressed_large_ones_compressed() -> None:
    """Below the threshold frames are plain; above it they carry RSV1 and are smaller."""
    hub = echo_hub()
    async with serve(hub) as s, connect(s.ws("/echo")) as ws:
        seen: list[tuple[bool, int]] = []
        protocol = ws.protocol

        # Observe raw frame headers as they arrive: RSV1 marks a compressed message.
        def feed(data: bytes) -> None:
            if data and data[0] & 0x0F in (Opcode.TEXT, Opcode.BINARY):
                seen.append((bool(data[0] & 0x40), len(data)))
            receive(data)

        receive = protocol.receive_data
        protocol.receive_data = feed  # type: ignore[method-assign]
        small, large = "s" * (COMPRESSION_THRESHOLD - 1), "L" * 10_000
        await ws.send(small)
        assert await asyncio.wait_for(ws.recv(), UNIT) == small
        await ws.send(large)
        assert await asyncio.wait_for(ws.recv(), UNIT) == large
        assert seen[0][0] is False
        assert seen[-1][0] is True and seen[-1][1] < 1000


async def test_compressed_broadcast_serves_every_kind_of_client() -> None:
    """One deflated broadcast frame reaches deflate clients; others get it uncompressed."""
    hub = echo_hub()
    members: set[WebSocket] = set()
    ready = asyncio.Event()

    @hub.websocket("/room")
    async def room(ws: WebSocket) -> None:
        members.add(ws)
        if len(members) == 3:
            ready.set()
        await ws.wait_closed()

    message = "broadcast " * 500
    small_window = ClientPerMessageDeflateFactory(server_max_window_bits=10)
    async with (
        serve(hub) as s,
        connect(s.ws("/room")) as default,
        connect(s.ws("/room"), compression=None) as plain,
        connect(s.ws("/room"), extensions=[small_window], compression=None) as narrow,
    ):
        await asyncio.wait_for(ready.wait(), UNIT)
        shares = sorted(ws._transport.shares_deflate for ws in members)  # type: ignore[attr-defined]
        assert shares == [False, False, True]
        assert broadcast(members, message) == 3
        for client in (default, plain, narrow):
            assert await asyncio.wait_for(client.recv(), UNIT) == message


def test_deflated_frame_decompresses_to_the_payload() -> None:
    """encode_deflated_frame produces RSV1 + raw deflate data a 12-bit inflater reads back."""
    payload = b'{"type":"event","data":"' + b"z" * 4000 + b'"}'
    frame = encode_deflated_frame(payload, True)
    assert frame[0] == 0x80 | 0x40 | Opcode.TEXT  # FIN, RSV1, text
    length = frame[1] & 0x7F
    body = frame[2:] if length < 126 else frame[4:]
    inflater = zlib.decompressobj(wbits=-WINDOW_BITS)
    assert inflater.decompress(body + b"\x00\x00\xff\xff") == payload


def test_decompressor_is_allocated_on_first_compressed_message() -> None:
    """An idle deflate connection holds no zlib state; the first compressed frame creates it."""
    from websockets.datastructures import Headers

    protocol = WebSocketProtocol(max_message_size=2**20)
    headers = Headers(
        {
            "Host": "x",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
        }
    )
    assert protocol.accept("/", headers).status_code == 101
    [extension] = protocol.engine.extensions
    assert "decoder" not in vars(extension) and "encoder" not in vars(extension)


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
@pytest.mark.parametrize("text", [True, False])
def test_encode_frame_is_read_back_by_websockets(size: int, text: bool) -> None:
    """Our frame header (7-, 16- and 64-bit lengths) parses as the same frame in websockets."""
    from websockets.frames import Frame
    from websockets.streams import StreamReader

    payload = b"a" * size
    reader = StreamReader()
    reader.feed_data(encode_frame(payload, text))
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame = done.value
    else:  # pragma: no cover - the whole frame was fed
        raise AssertionError("frame not complete")
    assert frame.opcode is (Opcode.TEXT if text else Opcode.BINARY)
    assert frame.fin and frame.data == payload
