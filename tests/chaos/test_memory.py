"""Chaos on the memory broker: one ``wirehub serve`` node, the faults that apply to it,
every member judged by the one checker."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from tests.chaos.harness import MEMBERS, WAIT, Member, Run, check, health, until
from tests.chaos.proxy import Proxy
from tests.services import WirehubServer

APP = "tests/chaos/app.py:make_hub"
SLOW = 2  # members behind a paused proxy
KiB = 1024
MAX_BUFFERED = 64 * KiB  # the node's Limits.max_buffered


@contextlib.asynccontextmanager
async def node(directory: Path, **env: str) -> AsyncIterator[WirehubServer]:
    """One ``wirehub serve`` of the chaos app on the memory broker (``env``: its settings)."""
    settings = {f"WIREHUB_CHAOS_{name.upper()}": value for name, value in env.items()}
    server = WirehubServer(directory, APP, "--shutdown-code", "1012", env=settings)
    try:
        await asyncio.to_thread(server.start)
        yield server
    finally:
        await asyncio.to_thread(server.stop)
        sys.stderr.write(server.log())  # shown when the test fails


def lost(members: list[Member]) -> bool:
    return all(m.disconnects for m in members)


async def test_connection_cuts(tmp_path: Path) -> None:
    """Half the members' connections are reset at once: they reconnect and recover."""
    async with node(tmp_path) as server:
        with Proxy(server.port) as proxy:
            urls = [
                f"ws://127.0.0.1:{proxy.port}/ws" if i % 2 else server.ws() for i in range(MEMBERS)
            ]
            async with Run("memory", "connections cut", server.ws(), urls) as run:
                await run.warm()
                assert proxy.cut() == MEMBERS // 2
                await until(lambda: lost(run.members[1::2]), "the cut members noticed")
                await run.publisher.published(2 * len(run.members))
                await run.settle()
    check(run)


async def slow_consumers(tmp_path: Path, policy: str, *, tail: bool = False) -> None:
    """Members behind a paused proxy fall behind until the node applies ``policy``; with
    ``tail``, no event follows those dropped for them."""
    fault = f"slow consumers ({policy}{', tail' if tail else ''})"
    async with node(tmp_path, max_buffered=str(MAX_BUFFERED), slow_consumer=policy) as server:
        with Proxy(server.port) as proxy:
            urls = [f"ws://127.0.0.1:{proxy.port}/ws"] * SLOW + [server.ws()] * (MEMBERS - SLOW)
            async with Run("memory", fault, server.ws(), urls) as run:
                await run.warm()
                proxy.pause()
                try:
                    for member in run.members[:SLOW]:
                        await fill(run, member)
                    if policy == "close":
                        await until(lambda: closed(server), "the node closed the slow consumers")
                    else:
                        await run.publisher.published(2 * MEMBERS)  # dropped for them
                    if tail:
                        await run.publisher.stop()
                finally:
                    proxy.resume()
                await (run.finish() if tail else run.settle())
    check(run)


async def fill(run: Run, member: Member) -> None:
    """Send ``member`` ballast until the node holds more for it than it may."""
    async with asyncio.timeout(WAIT):
        order = {"peer": member.client.id, "size": 64 * KiB, "count": 32}
        while not await run.publisher.client.call("ballast", order):
            pass


async def closed(server: WirehubServer) -> bool:
    """Whether the node closed every slow consumer (``/healthz`` stats)."""
    return int((await health(server.port))["stats"].get("slow_consumers", 0)) >= SLOW


async def test_slow_consumers_closed(tmp_path: Path) -> None:
    """Slow consumers are closed (4008): they reconnect and recover."""
    await slow_consumers(tmp_path, "close")


async def test_slow_consumers_dropped(tmp_path: Path) -> None:
    """Slow consumers miss the events the node drops for them: they must find out."""
    await slow_consumers(tmp_path, "drop")


async def test_slow_consumers_dropped_at_the_tail(tmp_path: Path) -> None:
    """The events dropped for slow consumers are the room's last: nothing later shows the
    hole, so only the node's gap notice can tell them."""
    await slow_consumers(tmp_path, "drop", tail=True)


async def test_restart(tmp_path: Path) -> None:
    """The node restarts (SIGTERM, 1012): memory history is gone, every member reconnects."""
    async with (
        node(tmp_path) as server,
        Run("memory", "server restart", server.ws(), [server.ws()] * MEMBERS) as run,
    ):
        await run.warm()
        await asyncio.to_thread(server.stop)
        await until(lambda: lost(run.members), "every member disconnected")
        await asyncio.to_thread(server.start)
        await run.settle()
    check(run)
