"""Cross-node workloads through Redis: wirehub beside python-socketio, in one run (issue 11 §3).

Usage (Redis and both nodes on core 0, this load generator on core 1)::

    .venv/bin/python bench/cross_node.py [--repeat 3] [--subs 1000] [--messages 100]

Starts its own ``redis-server`` and, per peer and workload, two server
processes on it — ``bench/servers/wirehub_events.py --redis`` (RedisBroker)
and ``bench/servers/socketio_server.py --redis`` (``AsyncRedisManager``) —
then drives them with the harness's load generator (``wirehub.loadgen``):

- ``fanout``: ``--subs`` subscribers of one room on node B, one publisher on
  node A sends ``--messages`` at once: deliveries/s until every subscriber
  has every message;
- ``rooms``: ``--rooms`` rooms x 10 members, members and each room's
  publisher alternating between A and B; ``--publishes`` to random rooms at
  once (seeded);
- ``emitter``: the subscribers of ``fanout`` on node B; a separate process
  publishes ``--messages`` one after the other (``wirehub.Emitter``;
  ``socketio.RedisManager(write_only=True)`` for python-socketio);
- ``latency``: the subscribers of ``fanout`` on B, 200 evenly spaced
  publishes/s for 3 s on A: publish-to-delivery p50/p99 (100 subscribers
  read the publish time in the payload);
- ``fanout_local``: the ``fanout`` of one node without Redis (the reference
  for server CPU per delivery);
- ``workers1``, ``workers2`` (wirehub only, not in the default list): the
  ``fanout`` against one port served by ``wirehub serve --workers N --redis``
  (the subscribers spread over the workers by the kernel).

Server CPU is both nodes' (``/proc``; Redis not included) per delivery. A
``*`` marks runs where the load generator used > 90 % of its core: the rate
is then a lower bound. Prints one line per run and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from wirehub.loadgen.client import Conn, Target, close_all, connect, connect_many
from wirehub.loadgen.metrics import Window, server_cpu_s
from wirehub.loadgen.workloads import Sink, fanout_latency, payload, warm_up

HERE = Path(__file__).resolve().parent
PEERS = {  # name: (server script, load generator dialect)
    "wirehub": ("servers/wirehub_events.py", "wh"),
    "socketio": ("servers/socketio_server.py", "sio"),
}
Result = dict[str, Any]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {port}") from None
            time.sleep(0.05)


class Node:
    """One server process of a peer, pinned to core 0."""

    def __init__(self, peer: str, redis: str | None, workers: int = 0) -> None:
        script, self.dialect = PEERS[peer]
        self.port = free_port()
        command = [sys.executable, str(HERE / script), "--port", str(self.port)]
        if workers:  # the CLI's supervisor and its forked workers
            app = f"{HERE / script}:build"
            command = [sys.executable, "-m", "wirehub", "serve", app, "--port", str(self.port)]
            command += ["--workers", str(workers)]
        if redis:
            command += ["--redis", redis]
        self.process = subprocess.Popen(
            ["taskset", "-c", "0", *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port(self.port, self.process)

    @property
    def target(self) -> Target:
        return Target("127.0.0.1", self.port, self.dialect)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def family(pid: int) -> list[int]:
    """``pid`` and its descendants (taskset execs in place; ``--workers`` forks)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(p for child in children for p in family(int(child)))]


class Windows:
    """A measurement window over several server processes (their CPU summed)."""

    def __init__(self, nodes: list[Node]) -> None:
        self.pids = [pid for n in nodes for pid in family(n.process.pid)]
        self.window = Window(self.pids[0])

    def start(self) -> Windows:
        self.cpu0 = sum(server_cpu_s(p) for p in self.pids)
        self.window.start()
        return self

    def stop(self, sink: Sink, complete: bool) -> Result:
        cpu = sum(server_cpu_s(p) for p in self.pids) - self.cpu0
        out = self.window.stop(sink.count, end=sink.t_last)
        out["server_cpu_us_per_op"] = cpu * 1e6 / sink.count if sink.count else None
        out.update(complete=complete, delivered_pct=round(100 * sink.count / sink.target, 1))
        return out


async def subscribers(node: Node, count: int, sink: Sink, room: str = "0") -> list[Conn]:
    target = node.target
    return await connect_many(
        target,
        count,
        lambda i: target.request("fanout", role="sub", room=room),
        on_frames=lambda i: sink,
    )


async def fanout(a: Node, b: Node, args: argparse.Namespace) -> Result:
    """Publisher on ``a``, every subscriber on ``b``."""
    sink = Sink()
    subs = await subscribers(b, args.subs, sink)
    pub = await connect(a.target, a.target.request("fanout", role="pub", room="0"))
    try:
        frame = a.target.message(payload())
        await warm_up(sink, lambda: pub.send(frame), args.subs)
        sink.reset(args.subs * args.messages)
        window = Windows([a, b] if a is not b else [a]).start()
        pub.send(frame * args.messages)
        return window.stop(sink, await sink.wait(60.0, 10.0))
    finally:
        close_all([pub, *subs])


async def rooms(a: Node, b: Node, args: argparse.Namespace) -> Result:
    """``args.rooms`` rooms x 10 members and a publisher each, alternating between nodes."""
    sink = Sink()
    nodes = (a, b)
    members: list[Conn] = []
    publishers: list[Conn] = []
    try:
        for r in range(args.rooms):
            room = str(r)
            for m in range(10):
                target = nodes[(r + m) % 2].target
                request = target.request("fanout", role="sub", room=room)
                members.append(await connect(target, request, sink))
            target = nodes[r % 2].target
            request = target.request("fanout", role="pub", room=room)
            publishers.append(await connect(target, request))
        frames = [nodes[r % 2].target.message(payload()) for r in range(args.rooms)]

        def one_each() -> None:
            for publisher, frame in zip(publishers, frames, strict=True):
                publisher.send(frame)

        await warm_up(sink, one_each, 10 * args.rooms)
        picks = random.Random(7).choices(range(args.rooms), k=args.publishes)
        batches: dict[int, int] = {}
        for r in picks:
            batches[r] = batches.get(r, 0) + 1
        sink.reset(10 * args.publishes)
        window = Windows([a, b]).start()
        for r, n in batches.items():
            publishers[r].send(frames[r] * n)
        return window.stop(sink, await sink.wait(60.0, 10.0))
    finally:
        close_all(members + publishers)


EMIT = {
    "wirehub": (
        "import sys\nfrom wirehub import Emitter\n"
        "with Emitter(sys.argv[1], prefix='bench') as e:\n"
        "    for _ in range(int(sys.argv[2])): e.emit('m', sys.argv[3], room='0')\n"
    ),
    "socketio": (
        "import sys, socketio\n"
        "m = socketio.RedisManager(sys.argv[1], write_only=True)\n"
        "for _ in range(int(sys.argv[2])): m.emit('msg', sys.argv[3], room='0')\n"
    ),
}


async def emitter(a: Node, b: Node, args: argparse.Namespace, peer: str, redis: str) -> Result:
    """Subscribers on ``b``; a separate process emits through Redis (on core 1 too)."""
    sink = Sink()
    subs = await subscribers(b, args.subs, sink)
    text = payload().decode()

    def run(count: int) -> None:
        subprocess.run(
            ["taskset", "-c", "1", sys.executable, "-c", EMIT[peer], redis, str(count), text],
            check=True,
        )

    try:
        await warm_up(sink, lambda: run(1), args.subs)
        sink.reset(args.subs * args.messages)
        window = Windows([b]).start()
        emitting = asyncio.get_running_loop().run_in_executor(None, run, args.messages)
        complete = await sink.wait(60.0, 10.0)
        await emitting
        return window.stop(sink, complete)
    finally:
        close_all(subs)


async def measure(peer: str, workload: str, redis: str, args: argparse.Namespace) -> Result:
    local = workload == "fanout_local"
    if workload.startswith("workers"):  # fanout on one port served by N workers
        a = b = Node(peer, redis, workers=int(workload[-1]))
        workload = "fanout"
    else:
        a = Node(peer, None if local else redis)
        b = a if local else Node(peer, redis)
    try:
        await asyncio.sleep(0.3)  # the nodes' broker connections
        if workload in ("fanout", "fanout_local"):
            return await fanout(a, b, args)
        if workload == "rooms":
            return await rooms(a, b, args)
        if workload == "latency":
            params = {"subs": args.subs, "probes": 100, "rate": 200, "duration": 3.0, "drain": 30.0}
            return await fanout_latency(b.target, b.process.pid, params, publisher=a.target)
        return await emitter(a, b, args, peer, redis)
    finally:
        for node in {a, b}:
            node.stop()


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    directory = tempfile.mkdtemp(prefix="wirehub-bench-redis-")
    command = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        ["taskset", "-c", "0", *command, "--dir", directory],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port, process)
    return process, f"redis://127.0.0.1:{port}/0"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--peers", default="wirehub,socketio")
    parser.add_argument("--workloads", default="fanout,latency,rooms,emitter,fanout_local")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--subs", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--publishes", type=int, default=5000)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed (scripts/system-deps.sh)")
    redis, url = start_redis()
    results: dict[tuple[str, str], list[Result]] = {}
    try:
        for _ in range(args.repeat):  # interleaved, so noise spreads over every peer
            for workload in args.workloads.split(","):
                for peer in args.peers.split(","):
                    if workload.startswith("workers") and peer != "wirehub":
                        continue  # python-socketio's server has no --workers
                    try:
                        result = asyncio.run(measure(peer, workload, url, args))
                    except Exception as exc:  # report it; the other cells still run
                        print(f"{workload:13} {peer:9} failed: {exc}", flush=True)
                        continue
                    results.setdefault((workload, peer), []).append(result)
                    print(line(workload, peer, result), flush=True)
    finally:
        redis.terminate()
        redis.wait()
    print("\nmedians (deliveries/s, server CPU µs/delivery):")
    for (workload, peer), runs in results.items():
        rate = statistics.median(r["ops_per_s"] for r in runs)
        cpu = statistics.median(r["server_cpu_us_per_op"] or 0.0 for r in runs)
        bound = "*" if any(r["loadgen_saturated"] for r in runs) else ""
        print(f"{workload:13} {peer:9} {rate:12,.0f}{bound:1} /s  {cpu:7.1f} µs")


def line(workload: str, peer: str, r: Result) -> str:
    bound = "*" if r["loadgen_saturated"] else " "
    cpu = r["server_cpu_us_per_op"] or 0.0
    latency = f"  p50 {r['p50_us']:,.0f} µs p99 {r['p99_us']:,.0f} µs" if "p50_us" in r else ""
    return (
        f"{workload:13} {peer:9} {r['ops_per_s']:12,.0f}{bound}/s  {cpu:7.1f} µs/delivery  "
        f"{r['delivered_pct']:5.1f}% delivered  other CPU {r['other_cpu_pct']}%{latency}"
    )


if __name__ == "__main__":
    main()
