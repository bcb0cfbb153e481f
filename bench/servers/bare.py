"""Limit reference: a bare asyncio.Protocol WebSocket server with hand-rolled framing.

No library, no validation beyond what the benchmark needs, no compression
(``--compression`` is accepted and ignored): this is roughly the least work
CPython + uvloop can do per message, so peers are judged against it.

``--coalesce`` buffers outgoing frames per receiver and flushes each receiver
once per loop tick with ``transport.writelines`` instead of one
``transport.write`` per frame (one send syscall per receiver per tick).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections import defaultdict

import uvloop
from _common import BACKLOG, make_parser, raise_fd_limit, route

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC65B11"
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA

rooms: defaultdict[str, set[Conn]] = defaultdict(set)
COALESCE = False  # set from --coalesce
dirty: list[Conn] = []  # receivers with buffered frames (coalesce mode)


def frame(opcode: int, payload: bytes) -> bytes:
    """Server frame: unmasked, never fragmented."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big") + payload


def unmask(payload: bytes, mask: bytes) -> bytes:
    # XOR as one big integer: much faster in CPython than a per-byte loop.
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def flush() -> None:
    for conn in dirty:
        conn.transport.writelines(conn.out)
        conn.out = []
    dirty.clear()


class Conn(asyncio.Protocol):
    transport: asyncio.Transport

    def __init__(self) -> None:
        self.buf = b""
        self.upgraded = False
        self.kind = ""  # "echo" | "sub" | "pub"
        self.members: set[Conn] = set()
        self.out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.members.discard(self)

    def send(self, data: bytes) -> None:
        if not COALESCE:
            self.transport.write(data)
            return
        if not self.out:
            if not dirty:
                asyncio.get_running_loop().call_soon(flush)
            dirty.append(self)
        self.out.append(data)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            self.handshake(buf[:end])
            buf = buf[end + 4 :]
        i, n = 0, len(buf)
        while n - i >= 6:  # client frames: 2 header bytes + 4 mask bytes at least
            length, head = buf[i + 1] & 0x7F, 2
            if length == 126:
                length, head = int.from_bytes(buf[i + 2 : i + 4], "big"), 4
            elif length == 127:
                length, head = int.from_bytes(buf[i + 2 : i + 10], "big"), 10
            end = i + head + 4 + length
            if end > n:
                break
            opcode = buf[i] & 0x0F
            payload = unmask(buf[i + head + 4 : end], buf[i + head : i + head + 4])
            i = end
            if opcode == OP_TEXT or opcode == 0x2:
                self.on_message(opcode, payload)
            elif opcode == OP_PING:
                self.send(frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                self.transport.write(frame(OP_CLOSE, payload[:2]))
                self.transport.close()
                return
        self.buf = buf[i:]

    def handshake(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        target = lines[0].split(b" ")[1].decode()
        key = b""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        path, role, room = route(target)
        if path not in ("/echo", "/fanout") or not key:
            self.transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            self.transport.close()
            return
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.upgraded = True
        self.kind = "echo" if path == "/echo" else role
        self.members = rooms[room]
        if self.kind == "sub":
            self.members.add(self)

    def on_message(self, opcode: int, payload: bytes) -> None:
        if self.kind == "echo":
            self.send(frame(opcode, payload))
        elif self.kind == "pub":
            out = frame(opcode, payload)  # encoded once, written to every subscriber
            for sub in self.members:
                sub.send(out)


async def main() -> None:
    global COALESCE
    parser = make_parser((__doc__ or "").splitlines()[0])
    parser.add_argument("--coalesce", action="store_true", help="one writelines per tick")
    args = parser.parse_args()
    COALESCE = args.coalesce
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Conn, args.host, args.port, backlog=BACKLOG)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    raise_fd_limit()
    uvloop.run(main())
