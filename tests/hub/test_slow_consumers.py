"""Slow consumers: a client that stops reading is cut off; everyone else gets everything."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from tests.conftest import UNIT, connect, read_frame, serve
from tests.hub.wire import WireClient
from tests.server.test_bounds import narrow
from wirehub import Hub, Limits, Timeouts, WebSocket, broadcast

COUNT, SIZE = 1500, 4096  # 6 MB: far more than the (shrunk) socket buffers hold
WINDOW = 32  # the publisher stays this many messages ahead of the slowest reading client


def _limits(max_buffered: int) -> Limits:
    return Limits(max_buffered=max_buffered, write_buffer_high=32 * 1024, write_buffer_low=8192)


async def _close_code_or_eof(reader: asyncio.StreamReader) -> int | None:
    """Read what the server still sent: the close code, or None if it cut TCP first.

    The 4008 close frame is queued behind everything the client did not read,
    so after ``Timeouts.close`` the server may drop the connection instead.
    """
    try:
        while True:
            opcode, payload = await asyncio.wait_for(read_frame(reader), 10 * UNIT)
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big")
    except (asyncio.IncompleteReadError, ConnectionResetError):
        return None


class Paced:
    """Readers report progress; the publisher waits until all are within WINDOW of it."""

    def __init__(self, readers: int) -> None:
        self.progress = [0] * readers
        self.changed = asyncio.Condition()

    async def read(self, index: int, receive: Callable[[], Awaitable[int]]) -> list[int]:
        got = []
        for _ in range(COUNT):
            got.append(await receive())
            self.progress[index] += 1
            async with self.changed:
                self.changed.notify_all()
        return got

    async def publish(
        self, send: Callable[[int], Awaitable[None]], watch: Callable[[], None]
    ) -> None:
        for n in range(COUNT):
            async with self.changed:
                await asyncio.wait_for(
                    self.changed.wait_for(lambda n=n: min(self.progress) >= n - WINDOW), 10 * UNIT
                )
            await send(n)
            watch()


async def test_slow_reader_is_disconnected_others_get_everything() -> None:
    """A peer that stops reading is closed with 4008, its buffer bounded; the others get all."""
    max_buffered = 256 * 1024
    hub = Hub(compression=False, limits=_limits(max_buffered), timeouts=Timeouts(close=UNIT / 2))

    @hub.on("connect")
    async def join(peer: Any, request: Any) -> None:
        await peer.join("feed")

    # narrow(): small kernel buffers from the start (see there). The fast clients connect
    # first: the connections accepted after it get its small send buffer too.
    async with serve(hub) as s:
        fast = [await WireClient.open(s.ws("/ws"), compression=None) for _ in range(3)]
        async with narrow(s, "/ws") as (reader, _, slow):
            await read_frame(reader)  # the welcome
            paced = Paced(len(fast))
            buffered: list[int] = []

            async def receive(client: WireClient) -> int:
                return int((await client.recv(timeout=10 * UNIT))["data"]["n"])

            readers = [
                asyncio.create_task(paced.read(i, lambda c=c: receive(c)))
                for i, c in enumerate(fast)
            ]

            async def send(n: int) -> None:
                await hub.to("feed").emit("tick", {"n": n, "pad": "x" * SIZE})

            await paced.publish(send, lambda: buffered.append(slow.buffered))
            results = await asyncio.gather(*readers)
            assert results == [list(range(COUNT))] * len(fast)
            # Bounded: the slow peer's unsent bytes never went far past the limit.
            assert max(buffered) <= max_buffered + 2 * (SIZE + 100)
            assert await _close_code_or_eof(reader) in (4008, None)
            for client in fast:
                await client.close()
    assert hub.stats["slow_consumers"] == 1


async def test_plain_broadcast_reaches_readers_and_cuts_slow_clients() -> None:
    """wirehub.broadcast reaches every reading client and closes a non-reading one with 4008."""
    hub = Hub(compression=False, limits=_limits(128 * 1024), timeouts=Timeouts(close=UNIT / 2))
    members: set[WebSocket] = set()
    joined, left = asyncio.Event(), asyncio.Event()

    @hub.websocket("/room")
    async def room(ws: WebSocket) -> None:
        members.add(ws)
        if len(members) == 3:
            joined.set()
        try:
            await ws.wait_closed()
        finally:
            members.discard(ws)
            left.set()

    async with (
        serve(hub) as s,
        connect(s.ws("/room"), compression=None) as a,
        connect(s.ws("/room"), compression=None) as b,
        narrow(s, "/room") as (slow_reader, _, _),  # last: later ones would share its buffer
    ):
        await asyncio.wait_for(joined.wait(), UNIT)
        paced = Paced(2)

        async def receive(ws: Any) -> int:
            return int((await asyncio.wait_for(ws.recv(), 10 * UNIT))[:8])

        readers = [
            asyncio.create_task(paced.read(i, lambda c=c: receive(c))) for i, c in enumerate((a, b))
        ]
        sent_counts: list[int] = []

        async def send(n: int) -> None:
            sent_counts.append(broadcast(members, f"{n:08d}" + "y" * SIZE))

        await paced.publish(send, lambda: None)
        assert await asyncio.gather(*readers) == [list(range(COUNT))] * 2
        assert sent_counts[0] == 3 and sent_counts[-1] == 2  # the slow one was dropped
        assert await _close_code_or_eof(slow_reader) in (4008, None)
        await asyncio.wait_for(left.wait(), 2 * UNIT)
        assert len(members) == 2
