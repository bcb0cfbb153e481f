"""A live dashboard: this machine's CPU, memory and network, and wirehub's own counters.

    wirehub serve examples/dashboard/app.py:hub --port 8000
    wirehub serve examples/dashboard/app.py:hub --workers 2 --redis redis://127.0.0.1:6379/0 \\
        --history-size 600

then open http://127.0.0.1:8000. A background task (started by a startup
hook, so it runs after the fork in whichever process serves clients) samples
the figures with ``psutil`` every ``PERIOD`` seconds and emits them to the
room ``metrics`` as a ``sample`` event ``{ts, pid, cpu, memory, rx, tx,
connections, messages}`` (``ts`` in seconds since the epoch, ``cpu`` and
``memory`` in percent, ``rx``/``tx`` in bytes per second, ``messages`` the
messages the hub received per second).

Samples are ordinary room events, numbered and kept: a page that opens late,
or reconnects, joins with ``history`` and draws the last ``WINDOW`` seconds
at once; when the room tells it that samples may be missing (a ``gap``), the
page breaks the line there instead of drawing across it.

One producer: under ``--workers N`` every worker runs the task, but only the
one holding a lease in Redis emits (``SET NX PX``, renewed while it lives;
another worker takes over within ``LEASE`` seconds of its death). With one
process (no ``--redis``) it always emits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

from wirehub import Hub, MemoryBroker, Peer

STATIC = Path(__file__).resolve().parent / "static"
PERIOD = 0.25  # seconds between two samples
WINDOW = 120  # seconds of samples the page shows, and the room's history keeps
LEASE = 2.0  # seconds a producer keeps the lease without renewing it
ROOM = "metrics"

logger = logging.getLogger("dashboard")

# Renew the lease only while this process still holds it (compare, then expire).
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class Sampler:
    """Turns counters into rates between two calls (no I/O but psutil's reads)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.last = time.monotonic()
        self.net = psutil.net_io_counters()
        self.messages = hub.stats["messages_in"]
        self.cpu = psutil.cpu_times()

    def sample(self) -> dict[str, float | int]:
        now = time.monotonic()
        elapsed = max(now - self.last, 1e-6)
        net = psutil.net_io_counters()
        messages = self.hub.stats["messages_in"]
        cpu = psutil.cpu_times()
        sample = {
            "ts": time.time(),
            "pid": os.getpid(),
            "cpu": busy(self.cpu, cpu),
            "memory": psutil.virtual_memory().percent,
            "rx": round((net.bytes_recv - self.net.bytes_recv) / elapsed),
            "tx": round((net.bytes_sent - self.net.bytes_sent) / elapsed),
            "connections": len(self.hub.peers),
            "messages": round((messages - self.messages) / elapsed, 1),
        }
        self.last, self.net, self.messages, self.cpu = now, net, messages, cpu
        return sample


def busy(before: Any, after: Any) -> float:
    """The share of CPU time (all cores, in percent) that was not idle between two readings.

    Computed here from ``psutil.cpu_times()`` rather than with
    ``psutil.cpu_percent()``, whose state is global to the process.
    """
    total = sum(after) - sum(before)
    idle = (after.idle + getattr(after, "iowait", 0.0)) - (
        before.idle + getattr(before, "iowait", 0.0)
    )
    return round(100.0 * (1.0 - idle / total), 1) if total > 0 else 0.0


def redis_lease(hub: Hub, url: str, name: str) -> Callable[[], Awaitable[bool]]:
    """A coroutine function: whether this process holds the lease ``name`` (taking it if free)."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(url)
    renew = client.register_script(RENEW)
    me = f"{os.uname().nodename}:{os.getpid()}"
    ttl = int(LEASE * 1000)

    async def held() -> bool:
        if await client.set(name, me, nx=True, px=ttl):
            return True  # it was free: ours now
        return bool(await renew(keys=[name], args=[me, ttl]))

    hub.on_shutdown(client.aclose)
    return held


async def produce(hub: Hub, period: float, lease: Callable[[], Awaitable[bool]] | None) -> None:
    """Emit a sample every ``period`` seconds, while this process holds the lease (if any)."""
    sampler = Sampler(hub)
    loop = asyncio.get_running_loop()
    due = loop.time() + period  # a rate needs some time to measure
    while True:
        await asyncio.sleep(max(0.0, due - loop.time()))
        due = max(due + period, loop.time() + period / 2)  # late: skip a sample, never burst
        sample = sampler.sample()
        try:
            if lease is None or await lease():
                await hub.to(ROOM).emit("sample", sample)
        except Exception as exc:  # Redis unreachable for a moment: skip this sample
            logger.warning("sample skipped: %r", exc)


def create_hub(period: float = PERIOD) -> Hub:
    """A dashboard hub sampling every ``period`` seconds once it runs."""
    history = int(WINDOW / period)
    hub = Hub(broker=MemoryBroker(history_size=history))

    @hub.on_startup
    def start_producer() -> None:
        url = getattr(hub.broker, "url", None)  # a RedisBroker (``--redis``): elect one producer
        name = f"{getattr(hub.broker, 'prefix', 'wirehub')}:dashboard:producer"
        lease = redis_lease(hub, url, name) if url else None
        hub.start_background_task(produce(hub, period, lease))

    @hub.on("config")
    def config(peer: Peer) -> dict[str, float | str | int]:
        """What the page needs to lay its charts out, and which process serves it."""
        return {"period": period, "window": WINDOW, "host": os.uname().nodename, "pid": os.getpid()}

    @hub.authorize_join
    def only_metrics(peer: Peer, room: str) -> bool:
        return room == ROOM

    hub.mount("/", STATIC)
    return hub


hub = create_hub()

if __name__ == "__main__":
    hub.run()
