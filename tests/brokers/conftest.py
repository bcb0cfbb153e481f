"""Brokers under test, and a listener that records what they deliver."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.conftest import UNIT
from wirehub.brokers.base import Broker, Publication


class Recorder:
    """A ``BrokerListener`` that queues every publication delivered to it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Publication] = asyncio.Queue()
        self.resubscribes = 0

    def deliver(self, publication: Publication) -> None:
        self.queue.put_nowait(publication)

    def resubscribed(self) -> None:
        self.resubscribes += 1

    async def next(self) -> Publication:
        return await asyncio.wait_for(self.queue.get(), UNIT)

    async def take(self, n: int) -> list[Publication]:
        return [await self.next() for _ in range(n)]

    async def nothing_before(self, broker: Broker) -> None:
        """Prove nothing else was delivered: a global marker published now arrives next.

        A broker delivers in the order it publishes, so anything delivered
        before the marker was published earlier.
        """
        marker = Publication(b'"event":"marker"}')
        await broker.publish(marker)
        got = await self.next()
        assert got.body == marker.body, got


Start = Callable[..., Any]


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def start(request: pytest.FixtureRequest) -> AsyncIterator[Start]:
    """``await start(**options)`` → ``(broker, recorder)``, a started node; all share one Redis.

    Parametrized over every broker: the contract holds for each (``RedisBroker`` on
    one redis-server, and with ``cluster=True`` on a 3-primary Redis Cluster).
    """
    kind = request.param
    stack = contextlib.AsyncExitStack()
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
    elif kind == "redis-cluster":
        url = request.getfixturevalue("redis_cluster")[0].url
        options_default = {"cluster": True}
    if kind != "memory":
        prefix = request.getfixturevalue("prefix")

    async def start_(**options: Any) -> tuple[Broker, Recorder]:
        broker: Broker
        if kind == "memory":
            from wirehub.brokers.memory import MemoryBroker

            broker = MemoryBroker(**options)
        else:
            from wirehub.brokers.redis import RedisBroker

            if kind == "redis-cluster":
                options = {**options_default, **options}
            broker = RedisBroker(url, prefix=prefix, **options)
        recorder = Recorder()
        await broker.start(recorder)
        stack.push_async_callback(broker.close)
        return broker, recorder

    async with stack:
        yield start_
