"""A raw WebSocket client protocol cheap enough to act as thousands of clients.

It parses only frame headers and counts data frames; payloads are sliced out
only for connections that ask for them (latency probes). Frames it sends carry
an all-zero mask key, so the masked payload equals the payload and can be
pre-built once and written many times (RFC 6455 requires a key, not a random
one; every server unmasks whatever key it gets, so the server's work is unchanged).

``dialect="sio"`` speaks Engine.IO v4 / Socket.IO v5 over the same frames: it
answers the ``0{...}`` open packet with ``40``, is ready on the ``40{...}``
reply, answers pings ``2`` with ``3`` and counts only ``42[...]`` event packets.

``dialect="wh"`` speaks wirehub's event protocol (docs/PROTOCOL.md): it is
ready on the ``welcome`` message (not counted), and every message it sends is
an ``emit`` of event ``m`` whose answer (an ``ack`` or a room ``event``) it counts.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

__all__ = [
    "Conn",
    "HandshakeError",
    "OnFrames",
    "Target",
    "client_frame",
    "close_all",
    "connect",
    "connect_many",
]

ZERO_MASK = b"\x00\x00\x00\x00"
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
# Fixed key: the load generator doesn't check Sec-WebSocket-Accept (loopback, known peers).
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
DEFLATE_OFFER = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"

# (connection, frames counted in this read, their payloads or None)
OnFrames = Callable[["Conn", int, "list[bytes] | None"], None]


def client_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + ZERO_MASK + payload


CLOSE_FRAME = client_frame(b"\x03\xe8", OP_CLOSE)  # 1000 normal closure
SIO_CONNECT = client_frame(b"40")
SIO_PONG = client_frame(b"3")


class HandshakeError(ConnectionError):
    pass


@dataclass(frozen=True)
class Target:
    """Where and how to reach one server under test."""

    host: str
    port: int
    dialect: str = "ws"  # "ws" | "sio" | "wh"

    def request(self, ep: str, deflate: bool = False, **query: str) -> bytes:
        """HTTP upgrade request for endpoint ``ep`` ("echo" | "fanout")."""
        if self.dialect == "sio":
            path = "/socket.io/?" + urlencode(
                {"EIO": "4", "transport": "websocket", "ep": ep, **query}
            )
        elif self.dialect == "wh":  # one event endpoint; the query says what to be
            path = "/ws?" + urlencode({"ep": ep, **query})
        else:
            path = f"/{ep}" + (f"?{urlencode(query)}" if query else "")
        return (
            (
                f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {KEY.decode()}\r\nSec-WebSocket-Version: 13\r\n"
            ).encode()
            + (DEFLATE_OFFER if deflate else b"")
            + b"\r\n"
        )

    def message(self, payload: bytes) -> bytes:
        """One application message as a ready-to-write frame (payload must be JSON-safe ASCII)."""
        if self.dialect == "sio":
            payload = b'42["msg","' + payload + b'"]'
        elif self.dialect == "wh":
            payload = b'{"type":"emit","event":"m","data":"' + payload + b'","id":1}'
        return client_frame(payload)


class Conn(asyncio.Protocol):
    transport: asyncio.Transport

    def __init__(
        self,
        request: bytes,
        sio: bool,
        on_frames: OnFrames | None = None,
        keep_payloads: bool = False,
        welcome: bool = False,
    ) -> None:
        self.request = request
        self.sio = sio
        self.welcome = welcome  # wirehub events: the first data frame is the welcome
        self.on_frames = on_frames
        self.keep_payloads = keep_payloads
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.frames = 0  # data frames (sio: event packets) received since open
        self.deflate = False  # server accepted permessage-deflate
        self.open = False  # upgraded (and, for sio, Socket.IO-connected)
        self.upgraded = False
        self.closed = False
        self.closing = False  # our close frame is sent
        self.close_payload = b""  # the server's close frame: code and reason
        self._buf = b""
        self._inflater: zlib._Decompress | None = None

    # -- asyncio.Protocol -------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(exc or ConnectionError("closed during handshake"))

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self._buf = buf
                return
            head, buf = buf[:end], buf[end + 4 :]
            if not head.startswith(b"HTTP/1.1 101"):
                self._fail(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                return
            self.upgraded = True
            self.deflate = b"permessage-deflate" in head.lower()
            if not self.sio and not self.welcome:
                self._set_open()
        # Hot loop: parse headers only; one callback per read, not per frame.
        sio, keep = self.sio, self.keep_payloads
        payloads: list[bytes] | None = [] if keep else None
        i, n, count = 0, len(buf), 0
        while n - i >= 2:
            length, head_len = buf[i + 1] & 0x7F, 2
            if length == 126:
                if n - i < 4:
                    break
                length, head_len = (buf[i + 2] << 8) | buf[i + 3], 4
            elif length == 127:
                if n - i < 10:
                    break
                length, head_len = int.from_bytes(buf[i + 2 : i + 10], "big"), 10
            start = i + head_len
            end = start + length
            if end > n:
                break
            first, i = buf[i], end
            opcode = first & 0x0F
            if first & 0x40:  # RSV1: a permessage-deflate frame
                count += self._compressed(buf[start:end], payloads)
                continue
            if opcode <= 2:  # text / binary / continuation
                if self.welcome and not self.open:  # wirehub's welcome: not a delivery
                    self._set_open()
                    continue
                if sio and (length < 2 or buf[start + 1] != 0x32 or buf[start] != 0x34):
                    self._sio_packet(buf[start:end])  # not a "42" event packet
                    continue
                count += 1
                if payloads is not None:
                    payloads.append(buf[start:end])
            elif opcode == OP_PING:
                self.transport.write(client_frame(buf[start:end], OP_PONG))
            elif opcode == OP_CLOSE:
                self.close_payload = buf[start:end]
                self.closed = True
                self.transport.close()
                break
        self._buf = buf[i:] if i < n else b""
        if count:
            self.frames += count
            if self.on_frames is not None:
                self.on_frames(self, count, payloads)

    # -- helpers ----------------------------------------------------------------
    def _compressed(self, data: bytes, payloads: list[bytes] | None) -> int:
        """Slow path for a compressed data frame (only deflate-negotiated connections)."""
        if self._inflater is None:
            self._inflater = zlib.decompressobj(wbits=-zlib.MAX_WBITS)
        data = self._inflater.decompress(data + b"\x00\x00\xff\xff")
        if self.sio and not data.startswith(b"42"):
            self._sio_packet(data)
            return 0
        if payloads is not None:
            payloads.append(data)
        return 1

    def _set_open(self) -> None:
        self.open = True
        if not self.ready.done():
            self.ready.set_result(None)

    def _fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(HandshakeError(why))
        self.transport.close()

    def _sio_packet(self, packet: bytes) -> None:
        if packet == b"2":  # Engine.IO ping
            self.transport.write(SIO_PONG)
        elif packet.startswith(b"0"):  # Engine.IO open -> Socket.IO connect
            self.transport.write(SIO_CONNECT)
        elif packet.startswith(b"40"):  # Socket.IO connected
            self._set_open()
        elif packet.startswith((b"44", b"41", b"1")):  # connect error / disconnect / close
            self._fail(packet[:200].decode(errors="replace"))

    def send(self, frame: bytes) -> None:
        if not self.closed and not self.closing:
            self.transport.write(frame)

    def close(self) -> None:
        """Polite close: send a close frame, close TCP when the server's close frame
        (or its FIN) arrives, at the latest after 1 s.

        Closing TCP right after our close frame races the server's reply: data
        arriving on a closed socket is answered with RST, and on loopback those
        races showed up as retransmissions that stalled handshakes for 200 ms+.
        """
        if not self.closed and not self.closing:
            self.closing = True
            self.transport.write(CLOSE_FRAME)
            asyncio.get_running_loop().call_later(1.0, self.transport.close)


async def connect(
    target: Target,
    request: bytes,
    on_frames: OnFrames | None = None,
    keep_payloads: bool = False,
    timeout: float = 10.0,
) -> Conn:
    loop = asyncio.get_running_loop()
    conn = Conn(request, target.dialect == "sio", on_frames, keep_payloads, target.dialect == "wh")
    async with asyncio.timeout(timeout):
        await loop.create_connection(lambda: conn, target.host, target.port)
        await conn.ready
    return conn


async def connect_many(
    target: Target,
    count: int,
    make_request: Callable[[int], bytes],
    on_frames: Callable[[int], OnFrames | None] = lambda i: None,
    keep_payloads: Callable[[int], bool] = lambda i: False,
    concurrency: int = 100,
    timeout: float = 60.0,
) -> list[Conn]:
    """Open ``count`` connections, at most ``concurrency`` handshakes in flight.

    Bounded workers instead of ``count`` tasks: cheaper, and it doesn't overflow
    the server's accept backlog. Raises on the first failure or after ``timeout``.
    """
    conns: list[Conn | None] = [None] * count
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            i = next_index
            next_index += 1
            conns[i] = await connect(target, make_request(i), on_frames(i), keep_payloads(i))

    async with asyncio.timeout(timeout):
        await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return [c for c in conns if c is not None]


def close_all(conns: list[Conn]) -> None:
    for conn in conns:
        conn.close()
