"""What a game tick costs the server: CPU per tick with N simulated players.

    .venv/bin/python examples/game/bench.py [--players 200] [--seconds 10]

Starts ``wirehub serve examples/game/app.py:hub`` pinned to core 0, connects
``--players`` simulated players from this process pinned to core 1 (each joins
the arena, changes direction every half second and reads every snapshot),
then reads the server's CPU time from /proc over ``--seconds``. Prints the
server CPU per tick (simulation, encoding and fan-out of one snapshot to
every player), per delivered snapshot, and this process's own CPU use (near
100 %: the simulated players, not the server, are the bound).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[2]
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid``, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def player(url: str, number: int, stop: asyncio.Event, counts: list[int]) -> None:
    async with connect(f"{url}?name=bot{number}", compression=None, max_size=None) as ws:
        await ws.send(json.dumps({"type": "join", "room": "arena", "id": 1}))

        async def steer() -> None:
            while not stop.is_set():
                move = {"dx": random.choice((-1, 0, 1)), "dy": random.choice((-1, 0, 1))}
                await ws.send(json.dumps({"type": "emit", "event": "input", "data": move}))
                await asyncio.sleep(0.5)

        steering = asyncio.create_task(steer())
        try:
            while not stop.is_set():
                message = await ws.recv()
                if isinstance(message, bytes):
                    counts[number] += 1
        finally:
            steering.cancel()


async def measure(url: str, pid: int, players: int, seconds: float) -> dict[str, float]:
    stop = asyncio.Event()
    counts = [0] * players
    tasks = []
    for number in range(players):
        tasks.append(asyncio.create_task(player(url, number, stop, counts)))
        await asyncio.sleep(0.002)  # no handshake storm: this measures ticks
    while min(counts) == 0:  # everybody joined and got a snapshot
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # warm up
    before = (cpu_seconds(pid), time.process_time(), time.monotonic(), sum(counts), counts[0])
    await asyncio.sleep(seconds)
    after = (cpu_seconds(pid), time.process_time(), time.monotonic(), sum(counts), counts[0])
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    server, own, wall, deliveries, ticks = (b - a for a, b in zip(before, after, strict=True))
    return {
        "players": players,
        "ticks_per_s": ticks / wall,
        "server_cpu_percent": 100 * server / wall,
        "server_us_per_tick": 1e6 * server / max(ticks, 1),
        "server_us_per_delivery": 1e6 * server / max(deliveries, 1),
        "deliveries_per_s": deliveries / wall,
        "loadgen_cpu_percent": 100 * own / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--players", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    port = free_port()
    command = [sys.executable, "-m", "wirehub", "serve", "examples/game/app.py:hub"]
    command += ["--port", str(port), "--log-level", "warning"]
    server = subprocess.Popen(["taskset", "-c", "0", *command], cwd=ROOT)
    try:
        os.sched_setaffinity(0, {1})
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the game server did not start") from None
                time.sleep(0.05)
        result = asyncio.run(
            measure(f"ws://127.0.0.1:{port}/ws", server.pid, args.players, args.seconds)
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)
    for key, value in result.items():
        print(f"{key:24} {value:,.1f}")


if __name__ == "__main__":
    main()
