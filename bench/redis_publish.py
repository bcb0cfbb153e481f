"""Room publications per second from one hub through one Redis (issue 11's two figures).

Usage (redis-server on core 0, this on core 1)::

    taskset -c 0 redis-server --port 6390 --save '' --appendonly no &
    taskset -c 1 .venv/bin/python bench/redis_publish.py redis://127.0.0.1:6390/0

Prints microseconds per publication one at a time, and publications/s with
256 in flight, three times (report the median). Nothing subscribes: this
measures the publishing side only.
"""

from __future__ import annotations

import asyncio
import sys
import time

from wirehub import Hub
from wirehub.brokers.redis import RedisBroker


async def measure(url: str, one: int = 3000, total: int = 40_960, inflight: int = 256) -> None:
    hub = Hub(broker=RedisBroker(url, prefix="bench"))
    await hub.start()
    target = hub.to("room")
    started = time.perf_counter()
    for n in range(one):
        await target.emit("e", n)
    each = (time.perf_counter() - started) / one

    async def worker(count: int) -> None:
        for n in range(count):
            await target.emit("e", n)

    started = time.perf_counter()
    await asyncio.gather(*(worker(total // inflight) for _ in range(inflight)))
    rate = total / (time.perf_counter() - started)
    await hub.stop()
    print(f"one at a time: {each * 1e6:.0f} us; {inflight} in flight: {rate:,.0f}/s")


if __name__ == "__main__":
    for _ in range(3):
        asyncio.run(measure(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"))
