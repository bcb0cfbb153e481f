"""A live dashboard: one producer pushes a metric to room ``metrics`` every 100 ms.

wirehub serve examples/dashboard.py:hub --port 8000              # open http://127.0.0.1:8000
wirehub serve examples/dashboard.py:hub --workers 2 --redis redis://127.0.0.1:6379/0

The producer is a background task started by a startup hook, so it runs in
the process that serves clients (every worker, after the fork), and is
cancelled at shutdown. Under ``--workers N`` with Redis, each worker would
start one: the workers elect a leader through Redis (a lock with an expiry,
renewed while the leader lives) and only the leader produces; its emits
reach the clients of every worker through the broker. If the leader dies,
another worker takes over within ``LEASE`` seconds.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from wirehub import Hub, Peer, Request, Response

PERIOD = 0.1  # seconds between two samples
LEASE = 2.0  # seconds a leader holds the lock without renewing it
LOCK = "dashboard:leader"

# Renew the lock only if this worker still holds it (compare and expire, atomically).
RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

hub = Hub()


@hub.on("connect")
async def connect(peer: Peer, request: Request) -> None:
    await peer.join("metrics")


@hub.on("worker")
def worker(peer: Peer) -> int:
    """The pid of the worker serving this client (samples say which one produced them)."""
    return os.getpid()


async def produce(is_leader: Any = None) -> None:
    """Emit one sample every PERIOD; with ``is_leader``, only while it says so."""
    while True:
        if is_leader is None or await is_leader():
            sample = {"pid": os.getpid(), "time": time.time(), "load": os.getloadavg()[0]}
            await hub.to("metrics").emit("sample", sample, volatile=True)
        await asyncio.sleep(PERIOD)


def leader_check(url: str) -> Any:
    """A coroutine function telling whether this worker leads (a Redis lock with a lease)."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(url)
    renew = client.register_script(RENEW)
    me = f"{os.uname().nodename}:{os.getpid()}"
    lease_ms = int(LEASE * 1000)

    async def is_leader() -> bool:
        if await client.set(LOCK, me, nx=True, px=lease_ms):
            return True  # the lock was free: this worker leads now
        return bool(await renew(keys=[LOCK], args=[me, lease_ms]))

    hub.on_shutdown(client.aclose)
    return is_leader


@hub.on_startup
def start_producer() -> None:
    url = getattr(hub.broker, "url", None)  # set when served with --redis
    hub.start_background_task(produce(leader_check(url) if url else None))


PAGE = b"""<!doctype html>
<meta charset="utf-8"><title>wirehub dashboard</title>
<h1>load <output id="load">&hellip;</output></h1>
<p>produced by worker <output id="pid"></output>, you are served by
worker <output id="me"></output></p>
<script type="module">
  import { connect } from "./wirehub.js";
  const hub = connect("/ws");
  hub.call("worker").then((pid) => { document.getElementById("me").value = pid; });
  hub.on("sample", (s) => {
    document.getElementById("load").value = s.load.toFixed(2);
    document.getElementById("pid").value = s.pid;
  });
</script>
"""


@hub.route("/")
def page(request: Request) -> Response:
    return Response(200, PAGE, "text/html; charset=utf-8")


if __name__ == "__main__":
    hub.run()
