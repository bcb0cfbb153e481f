"""Volatile room events to a receiver that is behind: dropped for it, never queued or fatal."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.conftest import UNIT, read_frame, serve
from tests.hub.test_slow_consumers import _limits
from tests.server.test_bounds import narrow
from wirehub import Hub, Timeouts

COUNT, SIZE = 1500, 4096  # 6 MB of volatile events: far more than the socket buffers hold


async def test_a_receiver_behind_skips_volatile_events_and_stays_connected() -> None:
    """Volatile events (a game's snapshots) skip a peer that is behind, instead of piling up
    behind the write-buffer mark or cutting it as a slow consumer; it gets the newer ones."""
    max_buffered = 256 * 1024
    hub = Hub(compression=False, limits=_limits(max_buffered), timeouts=Timeouts(close=UNIT / 2))

    @hub.on("connect")
    async def join(peer: Any, request: Any) -> None:
        await peer.join("feed")

    async with serve(hub) as s, narrow(s, "/ws") as (reader, _, slow):
        await read_frame(reader)  # the welcome
        high = hub.limits.write_buffer_high
        buffered = []
        for n in range(COUNT):
            await hub.to("feed").emit("tick", {"n": n, "pad": "x" * SIZE}, volatile=True)
            await asyncio.sleep(0)  # the end-of-tick flush
            buffered.append(slow.buffered)
        assert max(buffered) <= high + 2 * (SIZE + 100)  # never past the mark (and one frame)
        assert hub.stats["slow_consumers"] == 0

        async def next_tick() -> int:
            while True:
                opcode, payload = await asyncio.wait_for(read_frame(reader), 5 * UNIT)
                assert opcode == 0x1, f"closed: {payload!r}"
                message = json.loads(payload)
                if message["type"] == "event":
                    return int(message["data"]["n"])

        received = [await next_tick()]
        while received[-1] < COUNT - 1 and slow.buffered:  # what was queued before the drop
            received.append(await next_tick())
        assert received == sorted(set(received)) and len(received) < COUNT  # in order, some skipped
        await hub.to("feed").emit("tick", {"n": COUNT}, volatile=True)  # caught up: delivered
        while received[-1] != COUNT:
            received.append(await next_tick())
