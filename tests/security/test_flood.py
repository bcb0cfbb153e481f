"""A flooding client is limited and cut off; a bystander's round trips stay fast meanwhile."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

from tests.conftest import (
    TEXT,
    UNIT,
    frame,
    raw_connection,
    read_close,
    read_response,
    serve,
    upgrade_request,
)
from tests.hub.wire import WireClient
from wirehub import Hub, Peer
from wirehub.security import Rate, RateLimits

FLOOD = 50_000
"""Messages the flooder sends, pipelined without reading a single answer."""


async def round_trips(client: WireClient, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.monotonic()
        reply = await client.request({"type": "ping"})
        assert reply["type"] == "ack"
        times.append(time.monotonic() - start)
        await asyncio.sleep(0.002)
    return times


async def test_flooder_is_limited_and_the_bystander_keeps_its_latency() -> None:
    """50,000 pipelined emits: a few hundred run, the rest are refused, the flooder is closed
    (4029), and the bystander's round-trip times stay within a generous bound."""
    hub = Hub(rate_limits=RateLimits(messages=Rate(200, burst=400)))
    ran = 0

    @hub.on("work")
    def work(peer: Peer, data: Any) -> Any:
        nonlocal ran
        ran += 1
        return data

    flood = b"".join(
        frame(TEXT, json.dumps({"type": "emit", "event": "work", "data": i, "id": i}).encode())
        for i in range(FLOOD)
    )
    async with serve(hub) as served:
        bystander = await WireClient.open(served.ws("/ws"))
        before = await round_trips(bystander, 30)
        async with raw_connection(served.port) as (reader, writer):
            writer.write(upgrade_request("/ws"))
            assert (await read_response(reader, head_only=True)).status == 101
            writer.write(flood)
            during = await round_trips(bystander, 30)
            code, _ = await read_close(reader)
        after = await round_trips(bystander, 10)
        await bystander.close()
    assert code == 4029
    assert hub.stats["rate_limit_closes"] == 1
    assert 400 <= ran < 1000
    worst = max(during + after)
    print(
        f"\nround trips: before p50 {statistics.median(before) * 1e3:.2f} ms, during flood"
        f" p50 {statistics.median(during) * 1e3:.2f} ms max {worst * 1e3:.2f} ms"
    )
    assert worst < 0.5 * UNIT
