"""Fixtures for the client tests: a server that can restart on its port, inboxes.

Every wait is bounded by ``UNIT`` (tests/conftest.py); nothing sleeps and hopes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.conftest import TICK, UNIT
from wirehub import Hub
from wirehub.client import Reconnect
from wirehub.server.serve import Server

FAST = Reconnect(initial_delay=TICK / 5, max_delay=TICK, jitter=0.5)
"""A reconnection policy quick enough for tests: a few milliseconds per attempt."""


class Node:
    """One hub served on a fixed loopback port, which can stop and start again."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.port = 0
        self.server: Server | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self, hub: Hub | None = None) -> Node:
        """Serve ``hub`` (the same one by default) on the node's port (a free one at first)."""
        self.hub = hub or self.hub
        self.server = Server(self.hub)
        [(_, self.port)] = await self.server.listen("127.0.0.1", self.port)
        return self

    async def stop(self, code: int | None = None) -> None:
        """Shut the server down (closing clients with ``code``, 1001 by default)."""
        if self.server is not None:
            server, self.server = self.server, None
            await server.shutdown(code, timeout=UNIT)


@pytest.fixture
async def node() -> AsyncIterator[Any]:
    """``await node(hub)``: a started ``Node``; every one is stopped at teardown."""
    nodes: list[Node] = []

    async def start(hub: Hub) -> Node:
        nodes.append(await Node(hub).start())
        return nodes[-1]

    yield start
    for each in nodes:
        await each.stop()


class Inbox:
    """Collects what callbacks receive; ``await inbox.get()`` waits at most ``UNIT``."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def put(self, value: Any = None) -> None:
        """A one-argument callback (or none: ``None`` is recorded)."""
        self.queue.put_nowait(value)

    def put_info(self, data: Any, info: Any) -> None:
        """A two-argument event handler: records ``(data, info)``."""
        self.queue.put_nowait((data, info))

    async def get(self) -> Any:
        return await asyncio.wait_for(self.queue.get(), UNIT)

    def empty(self) -> bool:
        return self.queue.empty()


@contextlib.contextmanager
def serve_in_thread(hub: Hub) -> Iterator[str]:
    """Serve ``hub`` on its own event loop in another thread (for blocking clients)."""
    loop = asyncio.new_event_loop()
    ready: concurrent.futures.Future[tuple[int, asyncio.Event]] = concurrent.futures.Future()

    async def main() -> None:
        server = Server(hub)
        [(_, port)] = await server.listen("127.0.0.1", 0)
        stop = asyncio.Event()
        ready.set_result((port, stop))
        await stop.wait()
        await server.shutdown(timeout=UNIT)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),))
    thread.start()
    try:
        port, stop = ready.result(UNIT)
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        if ready.done():
            loop.call_soon_threadsafe(stop.set)
        thread.join(5 * UNIT)
        loop.close()
