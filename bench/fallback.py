"""HTTP fallback: echo latency and fan-out to polling clients, wirehub vs python-socketio.

    .venv/bin/python bench/fallback.py               # 3 runs per cell, medians (~3 min)
    .venv/bin/python bench/fallback.py --quick       # 1 run, small sizes (< 1 min)
    .venv/bin/python bench/fallback.py --json /tmp/fallback.json

Every cell is one (server, transport) pair, measured in the same run so the
numbers compare: wirehub's event hub (``bench/servers/wirehub_events.py``)
over WebSocket, HTTP streaming and long-polling (docs/PROTOCOL.md §14), and
python-socketio (``bench/servers/socketio_server.py --polling``, aiohttp
host) over WebSocket and Engine.IO long-polling, with its own client.

- ``echo``: one client, round trips one after the other; latency percentiles.
- ``burst``: ``--subscribers`` clients in a room, one publisher (always a
  WebSocket client: the subscribers' transport is what is measured) sending
  ``--messages`` messages back to back: deliveries per second until the last
  one, and how many arrived.
- ``paced``: the same at ``--rate`` messages a second (50: 5,000 deliveries
  a second to 100 clients): every delivery's latency (send to receipt) and
  the server's CPU per delivery.
  (A python-socketio *polling* publisher could not take part: its client
  sends everything queued in one POST, and python-engineio refuses a POST
  of more than 16 packets, ``Payload.max_decode_packets``: the messages are
  lost without an error on the sending side. Its client applies the same
  limit to what it receives: a poll answered with more than 16 messages is
  dropped whole, which the ``burst`` column shows.)

The server runs on core 0, this process (every client) on core 1; the
clients are Python (aiohttp, websockets, python-socketio's client), so the
load generator may be the bound: its CPU share is reported (``lg %``, a
``*`` past 90 %). Runs are interleaved cell by cell; medians of ``--repeat``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import socketio
import websockets

from wirehub.loadgen.metrics import Window, percentile

ROOT = Path(__file__).resolve().parents[1]
SERVERS = {
    "wirehub": ["bench/servers/wirehub_events.py"],
    "socketio": ["bench/servers/socketio_server.py", "--polling"],
}
CELLS = [
    ("wirehub", "websocket"),
    ("wirehub", "streaming"),
    ("wirehub", "long-polling"),
    ("socketio", "websocket"),
    ("socketio", "polling"),
]
OnMessage = Callable[[str], None]


# -- clients: one interface, send(text) and a callback per message received ----------------


class WirehubWebSocket:
    """docs/PROTOCOL.md over a WebSocket: ``m`` events out; acks and ``m`` events in."""

    async def open(self, url: str, on_message: OnMessage) -> None:
        self.ws = await websockets.connect(url.replace("http", "ws", 1), max_size=None)
        await self.ws.recv()  # welcome
        self.task = asyncio.get_running_loop().create_task(self._read(on_message))
        self.n = 0

    async def _read(self, on_message: OnMessage) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            if message.get("data") is not None:
                on_message(message["data"])

    async def send(self, text: str) -> None:
        self.n += 1
        await self.ws.send(json.dumps({"type": "emit", "event": "m", "data": text, "id": self.n}))

    async def close(self) -> None:
        self.task.cancel()
        await self.ws.close()


class WirehubHttp:
    """The same over the HTTP fallback: POSTs out, one at a time (batched); polls or a stream in."""

    def __init__(self, stream: bool) -> None:
        self.stream = stream

    async def open(self, url: str, on_message: OnMessage) -> None:
        base, _, query = url.partition("?")
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        async with self.http.post(f"{base}/open?{query}") as response:
            opened = await response.json()
        self.base = base
        self.headers = {"Wirehub-Key": opened["key"]}
        self.session = opened["session"]
        self.ack = self.seq = self.n = 0
        self.out: list[bytes] = []
        self.posting = False
        welcomed = asyncio.get_running_loop().create_future()

        def received(text: str) -> None:
            if not welcomed.done():
                welcomed.set_result(None)  # the first record is the welcome
            else:
                message = json.loads(text)
                if message.get("data") is not None:
                    on_message(message["data"])

        self.task = asyncio.get_running_loop().create_task(self._receive(received))
        await welcomed

    async def _receive(self, received: OnMessage) -> None:
        params = {"session": self.session, **({"stream": "1"} if self.stream else {})}
        while True:
            async with self.http.get(
                f"{self.base}/poll", params={**params, "ack": self.ack}, headers=self.headers
            ) as response:
                rest = b""
                async for chunk in response.content.iter_any():
                    rest = self._take(rest + chunk, received)

    def _take(self, data: bytes, received: OnMessage) -> bytes:
        at = 0
        while len(data) - at >= 2:
            short, head = data[at + 1] & 0x7F, 2
            if short == 126:
                head = 4
            elif short == 127:
                head = 10
            if len(data) - at < head:
                break
            length = short if head == 2 else int.from_bytes(data[at + 2 : at + head])
            if len(data) - at < head + length:
                break
            opcode, payload = data[at] & 0x0F, data[at + head : at + head + length]
            at += head + length
            if opcode != 0x9:
                self.ack += 1
                received(payload.decode())
        return data[at:]

    async def send(self, text: str) -> None:
        self.n += 1
        body = json.dumps({"type": "emit", "event": "m", "data": text, "id": self.n}).encode()
        head = (
            bytes((0x81, len(body)))
            if len(body) < 126
            else b"\x81\x7e" + struct.pack("!H", len(body))
        )
        self.out.append(head + body)
        if not self.posting:
            self.posting = True
            asyncio.get_running_loop().create_task(self._post())

    async def _post(self) -> None:
        while self.out:
            batch, self.out = self.out, []
            async with self.http.post(
                f"{self.base}/send",
                params={"session": self.session, "seq": self.seq},
                data=b"".join(batch),
                headers=self.headers,
            ) as response:
                assert response.status == 204, response.status
            self.seq += len(batch)
        self.posting = False

    async def close(self) -> None:
        self.task.cancel()
        await self.http.close()


class SocketIo:
    """python-socketio's own client, on one transport."""

    def __init__(self, transport: str) -> None:
        self.transport = transport

    async def open(self, url: str, on_message: OnMessage) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("msg", on_message)
        await self.sio.connect(url, transports=[self.transport], wait_timeout=10)

    async def send(self, text: str) -> None:
        await self.sio.emit("msg", text)

    async def close(self) -> None:
        await self.sio.disconnect()


def client(server: str, transport: str) -> Any:
    if server == "socketio":
        return SocketIo(transport)
    if transport == "websocket":
        return WirehubWebSocket()
    return WirehubHttp(stream=transport == "streaming")


def url(server: str, port: int, query: str) -> str:
    path = "/ws" if server == "wirehub" else "/socket.io/"
    return f"http://127.0.0.1:{port}{path}?{query}"


async def closed(member: Any) -> None:
    """Close, giving up after a second: python-socketio's polling client may wait for its
    pending poll (up to its ping interval) before it returns; nothing is measured here."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(member.close(), 1)


# -- workloads -----------------------------------------------------------------------------


async def echo(server: str, transport: str, port: int, pid: int, n: int) -> dict[str, Any]:
    """``n`` round trips one after the other; latency percentiles in microseconds."""
    replies: asyncio.Queue[str] = asyncio.Queue()
    member = client(server, transport)
    await member.open(url(server, port, "ep=echo"), replies.put_nowait)
    latencies = []
    for i in range(n + 20):  # 20 warm-up round trips
        start = time.perf_counter()
        await member.send(f"{i}")
        await asyncio.wait_for(replies.get(), 30)
        if i >= 20:
            latencies.append((time.perf_counter() - start) * 1e6)
    await closed(member)
    latencies.sort()
    return {
        "p50_us": percentile(latencies, 0.5),
        "p99_us": percentile(latencies, 0.99),
        "round_trips_per_s": 1e6 / statistics.mean(latencies),
    }


async def fanout(
    server: str,
    transport: str,
    port: int,
    pid: int,
    subscribers: int,
    messages: int,
    rate: float | None = None,
) -> dict[str, Any]:
    """``messages`` sent to ``subscribers`` members of one room: back to back, or ``rate``
    a second."""
    room = f"r{os.getpid()}{time.monotonic_ns()}"
    latencies: list[float] = []
    got = 0
    done = asyncio.get_running_loop().create_future()
    expected = subscribers * messages

    def received(text: str) -> None:
        nonlocal got
        if text.startswith("w"):
            return  # warm-up
        latencies.append((time.perf_counter() - float(text)) * 1e6)
        got += 1
        if got == expected and not done.done():
            done.set_result(time.perf_counter())

    members = [client(server, transport) for _ in range(subscribers)]
    warm = asyncio.Event()
    warmed = 0

    def warm_up(text: str) -> None:
        nonlocal warmed
        warmed += 1
        if warmed == subscribers:
            warm.set()

    def route(text: str) -> None:
        (warm_up if text.startswith("w") else received)(text)

    for chunk in range(0, subscribers, 20):  # open in groups: connection storms are not measured
        await asyncio.gather(
            *(
                m.open(url(server, port, f"ep=fanout&role=sub&room={room}"), route)
                for m in members[chunk : chunk + 20]
            )
        )
    publisher = client(server, "websocket")  # what is measured is the delivery to polling clients
    await publisher.open(url(server, port, f"ep=fanout&role=pub&room={room}"), lambda t: None)
    await publisher.send("w")
    await asyncio.wait_for(warm.wait(), 30)
    window = Window(pid).start()
    start = time.perf_counter()
    for n in range(messages):
        if rate is not None:
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
        await publisher.send(repr(time.perf_counter()))
    try:
        end = await asyncio.wait_for(done, 10 if rate else 60)
    except TimeoutError:
        end = None
    result = window.stop(got, end)
    await asyncio.gather(*(closed(member) for member in [publisher, *members]))
    latencies.sort()
    return {
        "delivered": f"{got}/{expected}",
        "deliveries_per_s": result["ops_per_s"],
        "p50_ms": (percentile(latencies, 0.5) or 0) / 1e3,
        "p99_ms": (percentile(latencies, 0.99) or 0) / 1e3,
        "server_cpu_us_per_delivery": result["server_cpu_us_per_op"],
        "loadgen_cpu_pct": result["loadgen_cpu_pct"],
        "other_cpu_pct": result["other_cpu_pct"],
    }


# -- the run ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running(server: str) -> Any:
    """The server on a free port, pinned to core 0."""
    port = free_port()
    command = ["taskset", "-c", "0", sys.executable, *SERVERS[server], "--port", str(port)]
    quiet = subprocess.DEVNULL
    process = subprocess.Popen(command, cwd=ROOT, stdout=quiet, stderr=quiet)
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.05)
        yield port, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    # python-socketio's polling clients, given up on at close (see ``closed``), leave
    # aiohttp sessions for the garbage collector: not worth a line each.
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(
        lambda loop, context: (
            None
            if "Unclosed" in context.get("message", "")
            else loop.default_exception_handler(context)
        )
    )
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.repeat):
        for server, transport in CELLS:
            async with running(server) as (port, pid):
                cell = f"{server} {transport}"
                fan = (server, transport, port, pid, args.subscribers, args.messages)
                jobs = {
                    "echo": functools.partial(echo, server, transport, port, pid, args.round_trips),
                    "burst": functools.partial(fanout, *fan),
                    "paced": functools.partial(fanout, *fan, rate=args.rate),
                }
                for name, job in jobs.items():
                    result = await job()
                    runs.setdefault(f"{cell} {name}", []).append(result)
                    print(f"{cell:24} {name:7} {json.dumps(result)}", file=sys.stderr, flush=True)
    return {key: median(values) for key, values in runs.items()}


def median(values: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in values[0]:
        numbers = [v[key] for v in values if isinstance(v[key], int | float)]
        out[key] = statistics.median(numbers) if numbers else values[-1][key]
    return out


def table(medians: dict[str, Any]) -> str:
    lines = [
        "| server | transport | echo p50 µs | echo p99 µs | burst delivered | burst deliveries/s"
        " | paced p50 ms | paced p99 ms | paced server CPU µs/delivery | paced lg % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for server, transport in CELLS:
        cell = f"{server} {transport}"
        e, b, p = (medians[f"{cell} {name}"] for name in ("echo", "burst", "paced"))
        star = "*" if b["loadgen_cpu_pct"] > 90 else ""
        cpu = p["server_cpu_us_per_delivery"]
        lines.append(
            f"| {server} | {transport} | {e['p50_us']:.0f} | {e['p99_us']:.0f} "
            f"| {b['delivered']} | {b['deliveries_per_s']:,.0f}{star} "
            f"| {p['p50_ms']:.1f} | {p['p99_ms']:.1f} "
            f"| {'-' if cpu is None else f'{cpu:.1f}'} | {p['loadgen_cpu_pct']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 run, small sizes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--round-trips", type=int, default=500)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="paced: messages a second")
    parser.add_argument("--json", type=Path, help="write the medians here")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.round_trips, args.subscribers, args.messages = 1, 50, 10, 20
        args.rate = 200.0
    os.sched_setaffinity(0, {1})
    medians = asyncio.run(run(args))
    print(table(medians))
    if args.json:
        args.json.write_text(json.dumps(medians, indent=2))


if __name__ == "__main__":
    main()
