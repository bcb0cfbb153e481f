"""The benchmark workloads. Each is bounded in count and in time, and closes what it opens.

A workload is ``async fn(target, server_pid, params) -> metrics``; ``WORKLOADS``
holds each one's full and ``--quick`` parameters and the metrics shown in tables.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .client import Conn, OnFrames, Target, close_all, connect, connect_many
from .metrics import Window, percentile, rss_kib
from .storm import reconnect_storm

__all__ = ["WORKLOADS", "Metric", "Workload"]

Params = dict[str, Any]
Result = dict[str, Any]
SIZE = 64  # bytes of application payload per message: a small chat/notification message


def payload(stamp: bool = False) -> bytes:
    """64 ASCII bytes; with ``stamp``, ``T`` + 19-digit perf_counter_ns() for latency."""
    head = b"T%019d" % time.perf_counter_ns() if stamp else b"P"
    return head + b"x" * (SIZE - len(head))


class Sink:
    """Counts deliveries across many connections; resolves when ``target`` is reached."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.reset(0)

    def reset(self, target: int) -> None:
        self.count, self.target = 0, target
        self.t_last = time.perf_counter()
        self.done: asyncio.Future[None] = self.loop.create_future()

    def __call__(self, conn: Conn, n: int, payloads: list[bytes] | None) -> None:
        self.count += n
        self.t_last = time.perf_counter()
        if self.count >= self.target and not self.done.done():
            self.done.set_result(None)

    async def wait(self, timeout: float, stall: float) -> bool:
        """True once all deliveries arrived; False on timeout or ``stall`` s without progress."""
        deadline = time.perf_counter() + timeout
        while not self.done.done():
            await asyncio.wait([self.done], timeout=0.1)
            now = time.perf_counter()
            if now > deadline or now - self.t_last > stall:
                return self.done.done()
        return True


async def warm_up(sink: Sink, publish: Callable[[], None], expected: int, tries: int = 10) -> None:
    """Publish until one round reaches every subscriber exactly.

    Some servers register a subscriber just after the 101 response, so an early
    message can miss it. Once one message arrived everywhere, every earlier one
    has too (TCP keeps order per connection), and the counters can be reset.
    """
    timeout = max(5.0, expected / 1000)  # a slow peer may deliver only ~1k/s here
    for _ in range(tries):
        sink.reset(expected)
        publish()
        if await sink.wait(timeout=timeout, stall=3.0):
            await asyncio.sleep(0.05)
            if sink.count == expected:
                return
    raise RuntimeError(f"warm-up never reached all {expected} subscriptions")


def completion(window: Window, sink: Sink, complete: bool) -> Result:
    """Throughput over the time the last delivery arrived; partial if incomplete."""
    out = window.stop(sink.count, end=sink.t_last)
    out.update(complete=complete, delivered_pct=round(100 * sink.count / max(sink.target, 1), 2))
    return out


# -- echo ---------------------------------------------------------------------------
async def echo_latency(target: Target, pid: int, p: Params) -> Result:
    """One client, one message in flight: round-trip latency and round trips/s."""
    loop = asyncio.get_running_loop()
    frame = target.message(payload())
    samples: list[int] = []
    done: asyncio.Future[None] = loop.create_future()
    sent = 0
    limit = p["warmup"] + p["max_round_trips"]
    deadline = 0.0

    def on_frames(conn: Conn, n: int, _: list[bytes] | None) -> None:
        nonlocal sent
        now = time.perf_counter_ns()
        samples.append(now - sent)
        if len(samples) >= limit or (deadline and time.perf_counter() > deadline):
            if not done.done():
                done.set_result(None)
            return
        sent = now
        conn.send(frame)

    conn = await connect(target, target.request("echo"), on_frames)
    window = Window(pid)
    try:
        deadline = time.perf_counter() + p["duration"] + 2.0  # warm-up included
        sent = time.perf_counter_ns()
        conn.send(frame)
        while len(samples) < p["warmup"] and not done.done():
            await asyncio.sleep(0.005)
        window.start()
        first = len(samples)
        deadline = window.t0 + p["duration"]
        async with asyncio.timeout(p["duration"] + 10):
            await done
        measured = sorted(samples[first:])
        out = window.stop(len(measured))
        out.update(
            p50_us=(percentile(measured, 0.50) or 0) / 1000,
            p99_us=(percentile(measured, 0.99) or 0) / 1000,
        )
        return out
    finally:
        close_all([conn])


async def echo_throughput(target: Target, pid: int, p: Params) -> Result:
    """N clients each keep K messages in flight: messages echoed per second."""
    frame = target.message(payload())
    received = 0
    running = True

    def on_frames(conn: Conn, n: int, _: list[bytes] | None) -> None:
        nonlocal received
        received += n
        if running:  # refill the pipeline: one write per read, not per frame
            conn.send(frame if n == 1 else frame * n)

    conns = await connect_many(
        target, p["clients"], lambda i: target.request("echo"), on_frames=lambda i: on_frames
    )
    try:
        burst = frame * p["in_flight"]
        for conn in conns:
            conn.send(burst)
        await asyncio.sleep(p["warmup"])
        window = Window(pid).start()
        before = received
        await asyncio.sleep(p["duration"])
        return window.stop(received - before)
    finally:
        running = False
        close_all(conns)


# -- fan-out ------------------------------------------------------------------------
async def fanout_burst(target: Target, pid: int, p: Params) -> Result:
    """S subscribers in one room; one publisher sends M messages at once.

    Measures until every subscriber has every message: deliveries (S*M) per second.
    """
    sink = Sink()
    subs = await connect_many(
        target,
        p["subs"],
        lambda i: target.request("fanout", role="sub", room="0"),
        on_frames=lambda i: sink,
    )
    pub = await connect(target, target.request("fanout", role="pub", room="0"))
    try:
        frame = target.message(payload())
        await warm_up(sink, lambda: pub.send(frame), p["subs"])
        sink.reset(p["subs"] * p["messages"])
        window = Window(pid).start()
        pub.send(frame * p["messages"])
        complete = await sink.wait(p["timeout"], p["stall"])
        return completion(window, sink, complete)
    finally:
        close_all([pub, *subs])


async def fanout_latency(
    target: Target, pid: int, p: Params, publisher: Target | None = None
) -> Result:
    """S subscribers, evenly spaced publishes at a steady rate: publish-to-delivery latency.

    The payload carries the publish time; ``probes`` subscribers (spread over the
    room) decode it, the rest only count, which keeps the load generator cheap.
    ``publisher`` is where the publisher connects when not to ``target`` (another
    node of the same hub: bench/cross_node.py).
    """
    loop = asyncio.get_running_loop()
    sink = Sink()
    samples: list[int] = []
    stride = max(1, p["subs"] // p["probes"])

    def probe(conn: Conn, n: int, payloads: list[bytes] | None) -> None:
        now = time.perf_counter_ns()
        for data in payloads or ():
            # Inside JSON (Socket.IO, wirehub events) the stamp is the last '"T': a
            # wirehub epoch (random text earlier in the event) may begin with T too.
            i = data.rfind(b'"T')
            i = i + 1 if i >= 0 else data.find(b"T")
            samples.append(now - int(data[i + 1 : i + 20]))
        sink(conn, n, None)

    def handler(i: int) -> OnFrames:
        return probe if i % stride == 0 else sink

    subs = await connect_many(
        target,
        p["subs"],
        lambda i: target.request("fanout", role="sub", room="0"),
        on_frames=handler,
        keep_payloads=lambda i: i % stride == 0,
    )
    publisher = publisher or target
    pub = await connect(publisher, publisher.request("fanout", role="pub", room="0"))
    try:
        await warm_up(sink, lambda: pub.send(target.message(payload(stamp=True))), p["subs"])
        samples.clear()
        count = int(p["rate"] * p["duration"])
        sink.reset(p["subs"] * count)
        window = Window(pid).start()
        start = loop.time() + 0.01
        for k in range(count):  # absolute schedule: late sends don't shift later ones
            delay = start + k / p["rate"] - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            pub.send(target.message(payload(stamp=True)))
        sent_s = loop.time() - start
        # A peer slower than the offered rate builds a backlog: let it drain (bounded).
        complete = await sink.wait(p["drain"], stall=10.0)
        out = completion(window, sink, complete)
        ordered = sorted(samples)
        out.update(
            p50_us=(percentile(ordered, 0.50) or 0) / 1000,
            p99_us=(percentile(ordered, 0.99) or 0) / 1000,
            publish_rate=round(count / max(sent_s, 1e-9), 1),
            latency_samples=len(ordered),
        )
        return out
    finally:
        close_all([pub, *subs])


async def many_rooms(target: Target, pid: int, p: Params) -> Result:
    """R rooms x K subscribers, one publisher per room; M publishes to random rooms at once."""
    rooms, members = p["rooms"], p["members"]
    sink = Sink()
    subs = await connect_many(
        target,
        rooms * members,
        lambda i: target.request("fanout", role="sub", room=str(i % rooms)),
        on_frames=lambda i: sink,
    )
    pubs = await connect_many(
        target, rooms, lambda i: target.request("fanout", role="pub", room=str(i))
    )
    try:
        frame = target.message(payload())

        def publish_all() -> None:
            for pub in pubs:
                pub.send(frame)

        await warm_up(sink, publish_all, rooms * members)
        rng = random.Random(42)  # same room sequence for every peer
        per_room = Counter(rng.randrange(rooms) for _ in range(p["messages"]))
        sink.reset(p["messages"] * members)
        window = Window(pid).start()
        for room, n in per_room.items():
            pubs[room].send(frame * n)
        complete = await sink.wait(p["timeout"], p["stall"])
        return completion(window, sink, complete)
    finally:
        close_all([*pubs, *subs])


# -- connections --------------------------------------------------------------------
async def idle_memory(target: Target, pid: int, p: Params) -> Result:
    """Server RSS growth per idle connection (``deflate``: the client offers permessage-deflate)."""
    request = target.request("echo", deflate=p["deflate"])
    # Warm connections first: one-time allocations (lazy imports, caches) aren't per connection.
    warm = await connect_many(target, p["warm"], lambda i: request)
    conns: list[Conn] = []
    try:
        await asyncio.sleep(p["settle"])
        rss0 = rss_kib(pid)
        window = Window(pid).start()
        conns = await connect_many(
            target,
            p["connections"],
            lambda i: request,
            concurrency=p["concurrency"],
            timeout=p["timeout"],
        )
        out = window.stop(len(conns))
        await asyncio.sleep(p["settle"])
        rss1 = rss_kib(pid)
        out.update(
            kib_per_conn=(rss1 - rss0) / len(conns),
            rss_before_kib=rss0,
            rss_after_kib=rss1,
            deflate_negotiated=all(c.deflate for c in conns),
        )
        return out
    finally:
        close_all(warm + conns)


async def handshakes(target: Target, pid: int, p: Params) -> Result:
    """Open + close connections back to back with ``concurrency`` in flight: handshakes/s.

    A handshake counts once the server's 101 (Socket.IO: its ``40`` connect reply)
    arrived; the client then sends a close frame and FIN without waiting.
    """
    request = target.request("echo")
    done = 0
    window = Window(pid).start()
    deadline = window.t0 + p["duration"]

    async def worker() -> None:
        nonlocal done
        while done < p["max_handshakes"] and time.perf_counter() < deadline:
            conn = await connect(target, request, timeout=5.0)
            done += 1
            conn.close()

    await asyncio.gather(*(worker() for _ in range(p["concurrency"])))
    out = window.stop(done)
    await asyncio.sleep(0.1)  # let the last closes reach the server before the next run
    return out


# -- registry -----------------------------------------------------------------------
@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool
    fmt: str = "{:,.0f}"


@dataclass(frozen=True)
class Workload:
    fn: Callable[[Target, int, Params], Awaitable[Result]]
    full: Params
    quick: Params
    metrics: tuple[Metric, ...]
    deflate: bool = False  # server runs with --compression; skipped by peers without deflate
    limit_s: float = 120.0  # hard bound on one run (full size), enforced by the harness
    restarts: bool = False  # stops the server: the harness starts it again (``pid_file``)
    smoke: bool = True  # in a --quick run of every workload (False: the same as another there)


OPS = "ops_per_s"
FANOUT = {"timeout": 60.0, "stall": 10.0}
FANOUT_QUICK = {"timeout": 10.0, "stall": 3.0, "messages": 50}
MEM = {"warm": 20, "concurrency": 100, "settle": 1.0, "timeout": 120.0}
MEM_QUICK = {"warm": 5, "concurrency": 25, "settle": 0.1, "timeout": 10.0, "connections": 50}
STORM = {
    "members": 10,
    "history": 5,
    "missed": 5,
    "concurrency": 100,
    "timeout": 60.0,
    "stall": 15.0,
    "delay_scale": 1.0,  # backoff delays as the clients wait them
}
STORM_QUICK = STORM | {"concurrency": 20, "timeout": 20.0, "delay_scale": 0.2}
LAT = (Metric("p50_us", "p50 µs", False, "{:,.1f}"), Metric("p99_us", "p99 µs", False, "{:,.1f}"))

WORKLOADS: dict[str, Workload] = {
    "echo_latency": Workload(
        echo_latency,
        {"duration": 5.0, "max_round_trips": 200_000, "warmup": 500},
        {"duration": 0.3, "max_round_trips": 1_000, "warmup": 50},
        (
            Metric(OPS, "echo 1 client: round trips/s", True),
            *(Metric(m.key, f"echo 1 client: {m.label}", False, m.fmt) for m in LAT),
        ),
    ),
    "echo_throughput": Workload(
        echo_throughput,
        {"clients": 100, "in_flight": 10, "duration": 5.0, "warmup": 1.0},
        {"clients": 10, "in_flight": 10, "duration": 0.3, "warmup": 0.1},
        (Metric(OPS, "echo 100x10: msgs/s", True),),
    ),
    "fanout_1k": Workload(
        fanout_burst,
        {"subs": 1_000, "messages": 200, **FANOUT},
        {"subs": 20, **FANOUT_QUICK},
        (Metric(OPS, "fan-out 1k subs: deliveries/s", True),),
    ),
    "fanout_5k": Workload(
        fanout_burst,
        {"subs": 5_000, "messages": 40, **FANOUT},
        {"subs": 40, **FANOUT_QUICK},
        (Metric(OPS, "fan-out 5k subs: deliveries/s", True),),
    ),
    "fanout_10k": Workload(
        fanout_burst,
        {"subs": 10_000, "messages": 20, **FANOUT},
        {"subs": 60, **FANOUT_QUICK},
        (Metric(OPS, "fan-out 10k subs: deliveries/s", True),),
        limit_s=180.0,
    ),
    "fanout_latency": Workload(
        fanout_latency,
        {"subs": 1_000, "rate": 200.0, "duration": 5.0, "probes": 100, "drain": 30.0},
        {"subs": 20, "rate": 200.0, "duration": 0.3, "probes": 20, "drain": 3.0},
        tuple(Metric(m.key, f"fan-out 1k @200/s: {m.label}", False, m.fmt) for m in LAT),
    ),
    "many_rooms": Workload(
        many_rooms,
        {"rooms": 1_000, "members": 10, "messages": 20_000, **FANOUT},
        {"rooms": 5, "members": 4, **FANOUT_QUICK},
        (Metric(OPS, "1k rooms x 10: deliveries/s", True),),
        limit_s=180.0,
    ),
    "idle_memory": Workload(
        idle_memory,
        {"connections": 10_000, "deflate": False, **MEM},
        {"deflate": False, **MEM_QUICK},
        (Metric("kib_per_conn", "idle KiB/conn, deflate off", False, "{:,.1f}"),),
        limit_s=180.0,
    ),
    "idle_memory_deflate": Workload(
        idle_memory,
        {"connections": 10_000, "deflate": True, **MEM},
        {"deflate": True, **MEM_QUICK},
        (Metric("kib_per_conn", "idle KiB/conn, deflate offered", False, "{:,.1f}"),),
        deflate=True,
        limit_s=180.0,
    ),
    "handshakes_seq": Workload(
        handshakes,
        {"concurrency": 1, "duration": 3.0, "max_handshakes": 100_000},
        {"concurrency": 1, "duration": 0.3, "max_handshakes": 50},
        (Metric(OPS, "handshakes/s, sequential", True),),
    ),
    "handshakes_50": Workload(
        handshakes,
        {"concurrency": 50, "duration": 3.0, "max_handshakes": 100_000},
        {"concurrency": 50, "duration": 0.3, "max_handshakes": 100},
        (Metric(OPS, "handshakes/s, 50 concurrent", True),),
    ),
    **{
        f"reconnect_storm{suffix}": Workload(
            reconnect_storm,
            {"clients": clients, "drop": drop, **STORM},
            {"clients": 40, "drop": drop, **STORM_QUICK},
            (
                Metric("recover_all_s", f"storm {label}: s until all back", False, "{:,.2f}"),
                Metric("recover_p50_s", f"storm {label}: median s back", False, "{:,.2f}"),
                Metric(
                    "arrival_peak_to_mean", f"storm {label}: arrivals peak/mean", False, "{:,.1f}"
                ),
                Metric("handshake_peak_per_100ms", f"storm {label}: peak handshakes/100 ms", True),
            ),
            limit_s=150.0,
            restarts=drop == "restart",
            smoke=clients == 1_000,
        )
        for suffix, clients, drop, label in (
            ("", 1_000, "abort", "1k abort"),
            ("_5k", 5_000, "abort", "5k abort"),
            ("_restart", 1_000, "restart", "1k restart"),
            ("_restart_5k", 5_000, "restart", "5k restart"),
        )
    },
}
