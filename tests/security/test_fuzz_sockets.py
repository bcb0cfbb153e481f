"""Raw-socket fuzzing: bad handshakes and frames never disturb a bystander.

300 attempts, drawn from the families below with a fixed seed, go to one
server while a bystander client receives a steady stream of numbered room
events. Each attempt's outcome (an HTTP status, a close code, error
replies, a dropped connection) must be one its family allows, and the
bystander must receive every event, in order, with consecutive offsets.
The table of outcomes is printed (``pytest -s``) for the record.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import random
import struct
import zlib
from collections.abc import Callable
from typing import Any

from tests.conftest import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    TEXT,
    UNIT,
    close_frame,
    frame,
    raw_connection,
    serve,
    upgrade_request,
)
from tests.hub.wire import WireClient
from wirehub import Hub, Limits, Peer, Timeouts

SEED = 20261121
ATTEMPTS = 300
CONCURRENCY = 10
PROBE = 424242
"""The id of the ``ping`` sent after an attempt's bytes once the server upgraded: the server
answers messages in order, so its ack means everything before it was answered."""

MAX_SIZE = 64 * 1024
DEFLATE = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"

Case = Callable[[random.Random], tuple[list[bytes], bool]]
"""Builds the bytes to send and whether to half-close after them."""


def handshake(extra: str = "", path: str = "/ws") -> bytes:
    return upgrade_request(path, extra)


def without_key() -> bytes:
    lines = handshake().split(b"\r\n")
    return b"\r\n".join(line for line in lines if not line.startswith(b"Sec-WebSocket-Key"))


def ws(*frames: bytes, extra: str = "") -> list[bytes]:
    return [handshake(extra), *frames]


def text(message: Any) -> bytes:
    raw = message if isinstance(message, str) else json.dumps(message)
    return frame(TEXT, raw.encode())


def random_json(rng: random.Random) -> Any:
    choices: list[Any] = [
        {"type": rng.choice(["emit", "join", "leave", "ping", "auth", "welcome", "x", 7])},
        {
            "type": "emit",
            "event": rng.choice(["echo", 1, None, "", "connect"]),
            "id": rng.choice([1, -1, "1", 2**70, None]),
        },
        {"type": "join", "room": rng.choice(["", "x" * 500, "a\x00b", 5, None]), "id": 3},
        {"type": "join", "room": "r", "since": rng.choice([{}, {"epoch": 1}, [], "x"]), "id": 4},
        {"type": "join", "room": "r", "history": rng.choice([-1, 10**9, "many"]), "id": 5},
        [1, 2, 3],
        "string",
        None,
    ]
    return rng.choice(choices)


@functools.cache
def deflate_bomb(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -12)
    out = b"".join(compressor.compress(bytes(1 << 20)) for _ in range(size >> 20))
    return (out + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


FAMILIES: dict[str, tuple[Case, set[str]]] = {
    # -- handshakes ------------------------------------------------------------
    "random bytes": (
        lambda r: ([r.randbytes(r.randint(1, 2000))], False),
        {"HTTP 400", "HTTP 408"},
    ),
    "truncated handshake, then silence": (
        lambda r: ([handshake()[: r.randint(1, len(handshake()) - 3)]], False),
        {"HTTP 408"},
    ),
    "truncated handshake, then EOF": (
        lambda r: ([handshake()[: r.randint(1, len(handshake()) - 3)]], True),
        {"dropped"},
    ),
    "header over 16 KiB": (
        lambda r: ([handshake("X-Pad: " + "a" * r.randint(17000, 40000) + "\r\n")], False),
        {"HTTP 431"},
    ),
    "150 header fields": (
        lambda r: ([handshake("".join(f"X-{i}: v\r\n" for i in range(150)))], False),
        {"HTTP 431"},
    ),
    "10 KiB request line": (
        lambda r: ([handshake(path="/ws?" + "q" * 10_000)], False),
        {"HTTP 414"},
    ),
    "bad Sec-WebSocket-Version": (
        lambda r: (
            [handshake().replace(b"Version: 13", b"Version: " + r.choice([b"12", b"0", b"x"]))],
            False,
        ),
        {"HTTP 400", "HTTP 426"},  # websockets answers 400; RFC 6455 §4.4 suggests 426
    ),
    "bad Sec-WebSocket-Key": (
        lambda r: ([handshake().replace(b"Key: ", b"Key: bad")], False),
        {"HTTP 400"},
    ),
    "no Sec-WebSocket-Key": (lambda r: ([without_key()], False), {"HTTP 400"}),
    "POST upgrade": (lambda r: ([handshake().replace(b"GET", b"POST", 1)], False), {"HTTP 405"}),
    "unknown path": (lambda r: ([handshake(path="/nowhere")], False), {"HTTP 404"}),
    "forged Origin": (
        lambda r: ([handshake("Origin: https://evil.example\r\n")], False),
        {"HTTP 403"},
    ),
    "control byte in a header": (lambda r: ([handshake("X-A: b\x01c\r\n")], False), {"HTTP 400"}),
    "NUL in the path": (lambda r: ([handshake(path="/ws\x00")], False), {"HTTP 400"}),
    # HTTP/0.9-style: parsed as a plain GET of the WebSocket route
    "request line only": (lambda r: ([b"GET /ws\r\n\r\n"], False), {"HTTP 400", "HTTP 426"}),
    "upgrade without Connection: Upgrade": (
        lambda r: ([handshake().replace(b"Connection: Upgrade", b"Connection: keep-alive")], False),
        {"HTTP 426"},
    ),
    # -- frames after a valid handshake ------------------------------------------
    "random bytes after the handshake": (
        lambda r: (ws(r.randbytes(r.randint(1, 3000))), False),
        {"close 1002", "close 1007", "close 1009", "101 open", "101 errors, open"},
    ),
    "unmasked frame": (
        lambda r: (ws(frame(TEXT, b'{"type":"ping"}', mask=False)), False),
        {"close 1002"},
    ),
    "reserved opcode": (
        lambda r: (ws(frame(r.choice([3, 4, 5, 6, 7, 11, 15]), b"x")), False),
        {"close 1002"},
    ),
    "RSV bits without an extension": (
        lambda r: (ws(frame(TEXT, b"{}", rsv=r.choice([1, 2, 4, 7]))), False),
        {"close 1002"},
    ),
    "invalid UTF-8 text": (
        lambda r: (ws(frame(TEXT, b'{"a":"\xff\xfe' + r.randbytes(3) + b'"}')), False),
        {"close 1007"},
    ),
    "2^62-byte length header": (
        lambda r: (ws(bytes([0x81, 0xFF]) + struct.pack("!Q", 1 << 62) + b"mask"), False),
        {"close 1009"},
    ),
    "message over the size limit": (
        lambda r: (ws(frame(BINARY, bytes(MAX_SIZE + r.randint(1, 5000)))), False),
        {"close 1009"},
    ),
    "fragmented ping": (lambda r: (ws(frame(PING, b"x", fin=False)), False), {"close 1002"}),
    "control frame over 125 bytes": (
        lambda r: (ws(frame(PING, bytes(126))), False),
        {"close 1002"},
    ),
    "continuation without a start": (lambda r: (ws(frame(CONT, b"x")), False), {"close 1002"}),
    "truncated frame, then EOF": (
        lambda r: (ws(frame(TEXT, b"x" * 50)[: r.randint(1, 30)]), True),
        {"dropped"},
    ),
    "close code 999 / 1005 / 5000": (
        lambda r: (ws(frame(CLOSE, struct.pack("!H", r.choice([999, 1005, 1006, 5000])))), False),
        {"close 1002"},
    ),
    "close reason not UTF-8": (
        lambda r: (ws(frame(CLOSE, struct.pack("!H", 1000) + b"\xff")), False),
        {"close 1007"},
    ),
    "malformed JSON messages": (
        lambda r: (
            ws(
                *(
                    frame(TEXT, r.choice([b"{", b"[]", b"null", b'{"type":', b'"x"']))
                    for _ in range(r.randint(1, 5))
                )
            ),
            False,
        ),
        {"101 errors, open"},
    ),
    "binary message with a lying header length": (
        lambda r: (ws(frame(BINARY, struct.pack("!I", r.randint(100, 2**32 - 1)) + b"{}")), False),
        {"101 errors, open"},
    ),
    "protocol messages with wrong fields": (
        lambda r: (ws(*(text(random_json(r)) for _ in range(r.randint(1, 5)))), False),
        {"101 errors, open"},
    ),
    "deflate bomb (16 MiB inflated)": (
        lambda r: (ws(frame(BINARY, deflate_bomb(16 << 20), rsv=4), extra=DEFLATE), False),
        {"close 1009"},
    ),
    "valid close": (lambda r: (ws(close_frame(1000)), False), {"close 1000"}),
}


async def classify(reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> str:
    """What the server did: an HTTP status, a close code, error replies, or dropping us.

    After a 101, a ``PROBE`` ping goes out (on ``writer``, unless the attempt half-closed):
    its ack says the connection stays open, on the server's word rather than a quiet spell.
    Only a probe swallowed by broken framing (random bytes) waits out ``UNIT``: open.
    """
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5 * UNIT)
    except (asyncio.IncompleteReadError, ConnectionError):
        return "dropped"
    except asyncio.LimitOverrunError:
        return "bad response"
    status = int(head.split(b" ", 2)[1])
    if status != 101:
        return f"HTTP {status}"
    if writer is not None:
        writer.write(text({"type": "ping", "id": PROBE}))
    errors = 0
    while True:
        try:
            first = await asyncio.wait_for(reader.readexactly(2), UNIT)
        except TimeoutError:
            return "101 errors, open" if errors else "101 open"
        except (asyncio.IncompleteReadError, ConnectionError):
            return "dropped"
        length = first[1] & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await reader.readexactly(8))
        payload = await reader.readexactly(length)
        opcode = first[0] & 0x0F
        if opcode == CLOSE:
            return f"close {struct.unpack('!H', payload[:2])[0]}" if payload else "close (no code)"
        reply = json.loads(payload) if opcode == TEXT else {}
        if reply.get("type") == "error":
            errors += 1
        elif reply.get("type") == "ack" and reply.get("id") == PROBE:
            return "101 errors, open" if errors else "101 open"


async def attempt(port: int, chunks: list[bytes], half_close: bool) -> str:
    async with raw_connection(port) as (reader, writer):
        for chunk in chunks:
            writer.write(chunk)
        if half_close:
            writer.write_eof()
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        return await classify(reader, None if half_close else writer)


def fuzz_hub() -> Hub:
    hub = Hub(
        limits=Limits(max_message_size=MAX_SIZE),
        timeouts=Timeouts(handshake=UNIT / 4),
    )

    @hub.on("echo")
    def echo(peer: Peer, data: Any) -> Any:
        return data

    return hub


async def test_bad_handshakes_and_frames_never_disturb_a_bystander() -> None:
    """300 malformed, truncated and oversized handshakes and frames: each gets an answer its
    family allows, and a bystander receives every one of a steady stream of events."""
    rng = random.Random(SEED)
    hub = fuzz_hub()
    names = sorted(FAMILIES)
    plan = [names[i % len(names)] for i in range(ATTEMPTS)]
    rng.shuffle(plan)
    outcomes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    async with serve(hub) as served:
        bystander = await WireClient.open(served.ws("/ws"))
        await bystander.join("stream")
        done = asyncio.Event()
        sent = 0

        async def produce() -> None:
            nonlocal sent
            while not done.is_set():
                await hub.to("stream").emit("seq", sent)
                sent += 1
                await asyncio.sleep(0.003)

        received: list[dict[str, Any]] = []
        arrived = asyncio.Event()

        async def consume() -> None:
            while True:
                received.append(await bystander.recv(timeout=10 * UNIT))
                arrived.set()

        producer = asyncio.ensure_future(produce())
        consumer = asyncio.ensure_future(consume())
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def one(name: str, seed: int) -> None:
            async with semaphore:
                chunks, half_close = FAMILIES[name][0](random.Random(seed))
                outcomes[name][await attempt(served.port, chunks, half_close)] += 1

        deflate_bomb(16 << 20)  # built once, before the clock matters

        await asyncio.gather(*(one(name, rng.randrange(2**32)) for name in plan))
        done.set()
        await producer
        while len(received) < sent:  # the bystander's backlog, however slow the machine
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 10 * UNIT)
        consumer.cancel()
        await bystander.close()

    report = "\n".join(f"  {name}: {dict(counts)}" for name, counts in sorted(outcomes.items()))
    print(f"\n{ATTEMPTS} fuzz attempts, outcomes by family:\n{report}")
    unexpected = {
        name: set(counts) - FAMILIES[name][1]
        for name, counts in outcomes.items()
        if set(counts) - FAMILIES[name][1]
    }
    assert not unexpected, report
    assert sum(sum(c.values()) for c in outcomes.values()) == ATTEMPTS
    assert sent > 50
    assert [m["data"] for m in received] == list(range(sent))
    offsets = [m["offset"] for m in received]
    assert offsets == list(range(offsets[0], offsets[0] + sent))
