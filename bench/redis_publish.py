"""Room publications per second from one hub through one Redis (issue 11's two figures).

Usage (redis-server on core 0, this on core 1)::

    taskset -c 0 redis-server --port 6390 --save '' --appendonly no &
    taskset -c 1 .venv/bin/python bench/redis_publish.py redis://127.0.0.1:6390/0 [--runs 3]

Prints, per run, microseconds per publication one at a time and
publications/s with 256 in flight through ``hub.to(room).emit``, beside the
floor measured in the same run: the same publish script sent by a bare
asyncio stream, one at a time (``EVALSHA`` round trip: what no client
library can beat on this machine right now) and 256 per write. Then the
medians. Nothing subscribes: this measures the publishing side only.

To compare another checkout (e.g. ``main`` before a change) in the same run,
put its ``src`` first: ``PYTHONPATH=/path/to/other/src .venv/bin/python ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from urllib.parse import urlsplit

from wirehub import Hub
from wirehub.brokers.base import Publication
from wirehub.brokers.redis import RedisBroker
from wirehub.brokers.redis_wire import PUBLISH_SCRIPT, publish_args, room_channel

PUBLISH = b'"event":"e","data":1}'


async def through_hub(url: str, one: int, total: int, inflight: int) -> tuple[float, float]:
    """(µs per publication one at a time, publications/s with ``inflight`` in flight)."""
    hub = Hub(broker=RedisBroker(url, prefix="bench"))
    await hub.start()
    target = hub.to("room")
    for n in range(200):  # warm: the script loaded, the room created
        await target.emit("e", n)
    started = time.perf_counter()
    for n in range(one):
        await target.emit("e", n)
    each = (time.perf_counter() - started) / one

    async def worker(count: int) -> None:
        for n in range(count):
            await target.emit("e", n)

    started = time.perf_counter()
    await asyncio.gather(*(worker(total // inflight) for _ in range(inflight)))
    rate = total // inflight * inflight / (time.perf_counter() - started)
    await hub.stop()
    return each * 1e6, rate


async def floor(url: str, one: int, total: int, inflight: int) -> tuple[float, float]:
    """The same two figures for the publish script sent by a bare asyncio stream (no hub,
    no client library): round trip and Redis's own speed on this machine, now."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 6379)
    writer.write(pack("SCRIPT", "LOAD", PUBLISH_SCRIPT))
    await reader.readline()  # $40
    sha = (await reader.readline())[:-2].decode()
    args = publish_args(
        Publication(PUBLISH, room="room"), epoch="floor", size=100, ttl=3600, sharded=False
    )
    command = pack("EVALSHA", sha, 1, room_channel("floorbench", "room"), *args)
    started = time.perf_counter()
    for _ in range(one):
        await _round_trip(reader, writer, command)
    each = (time.perf_counter() - started) / one
    batch = command * inflight
    started = time.perf_counter()
    for _ in range(total // inflight):
        await _round_trip(reader, writer, batch, inflight)
    rate = total // inflight * inflight / (time.perf_counter() - started)
    writer.close()
    return each * 1e6, rate


def pack(*args: bytes | str | int) -> bytes:
    """A RESP command (here too, so that an older checkout without it can be measured)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


async def _round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, command: bytes, count: int = 1
) -> None:
    """Send; read ``count`` replies of the publish script (four lines each)."""
    writer.write(command)
    for _ in range(4 * count):
        line = await reader.readline()
        if line[:1] == b"-":
            raise RuntimeError(line.decode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="?", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--one", type=int, default=3000, help="publications one at a time")
    parser.add_argument("--total", type=int, default=40_960, help="publications in flight")
    parser.add_argument("--inflight", type=int, default=256)
    args = parser.parse_args()
    rows: list[tuple[float, float, float, float]] = []
    for _ in range(args.runs):
        f_each, f_rate = asyncio.run(floor(args.url, args.one, args.total, args.inflight))
        each, rate = asyncio.run(through_hub(args.url, args.one, args.total, args.inflight))
        rows.append((each, rate, f_each, f_rate))
        print(
            f"one at a time: {each:.0f} us (floor {f_each:.0f} us); "
            f"{args.inflight} in flight: {rate:,.0f}/s (floor {f_rate:,.0f}/s)"
        )
    each, rate, f_each, f_rate = (statistics.median(column) for column in zip(*rows, strict=True))
    print(
        f"median: one at a time {each:.0f} us ({each / f_each:.2f}x the floor); "
        f"{args.inflight} in flight {rate:,.0f}/s ({rate / f_rate:.2f}x the floor)"
    )


if __name__ == "__main__":
    main()
