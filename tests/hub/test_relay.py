"""Fallback sessions served by any node: polls and POSTs relayed through Redis to the owner."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.apps.nodes import make_hub
from tests.conftest import UNIT, Served, serve
from tests.hub.fallback_wire import PollClient
from tests.hub.wire import WireClient
from wirehub import Timeouts
from wirehub.brokers.redis import RedisBroker

STYLES = pytest.mark.parametrize("stream", [False, True], ids=["long-polling", "streaming"])


@contextlib.asynccontextmanager
async def two_nodes(redis_url: str, prefix: str) -> AsyncIterator[tuple[Served, Served]]:
    """Nodes a and b sharing one Redis (every peer joins ``lobby``)."""
    timeouts = Timeouts(relay=UNIT / 2)
    async with contextlib.AsyncExitStack() as stack:
        nodes = []
        for name in ("a", "b"):
            hub = make_hub(name, broker=RedisBroker(redis_url, prefix=prefix), timeouts=timeouts)
            nodes.append(await stack.enter_async_context(serve(hub)))
        yield nodes[0], nodes[1]


@STYLES
async def test_a_session_served_by_the_other_node(
    redis_url: str, prefix: str, stream: bool
) -> None:
    """A session opened on node a, then polled and posted to through node b only: calls,
    room events from a WebSocket peer on b, and its close all go through."""
    async with two_nodes(redis_url, prefix) as (a, b):
        client = await PollClient.open(f"{a.url}/ws", stream=stream, welcome=False)
        client.base = f"{b.url}/ws"  # every request from now on reaches the other node
        try:
            assert (await client.recv())["type"] == "welcome"
            assert (await client.call("whoami"))["data"]["node"] == "a"
            async with await WireClient.open(b.ws("/ws")) as ws:
                await ws.call_excluded("say", "hello from b")
                event = await client.recv()
                assert (event["event"], event["data"]) == ("said", "hello from b")
                await client.call_excluded("say", "hello back")
                assert (await ws.recv())["data"] == "hello back"
            assert b.server.hub.stats["fallback_relayed"] >= 3  # a poll or stream, two POSTs
            assert not b.server.hub.fallback or not b.server.hub.fallback.sessions
        finally:
            await client.close()
        [peer_gone] = [p for p in a.server.hub.peers.values() if p.id == client.id] or [None]
        assert peer_gone is None or not peer_gone.connected


async def test_a_session_whose_node_is_gone(redis_url: str, prefix: str) -> None:
    """A request for a session of a node that no longer runs is told 410 within
    Timeouts.relay, so the client opens a new session."""
    async with two_nodes(redis_url, prefix) as (a, b):
        client = await PollClient.open(f"{a.url}/ws")
        client._receiving.cancel()  # type: ignore[union-attr]  # poll by hand
        await a.server.shutdown(timeout=UNIT)
        client.base = f"{b.url}/ws"
        a.server.hub.fallback.sessions.clear()  # type: ignore[union-attr]  # as if it died
        await a.server.hub.broker.close()
        assert (await client.poll(client.ack)).status == 410
        assert await client.post(b"") == 410
        await client.close(None)
