"""Two hubs (two servers in this process) sharing one Redis: their clients talk as one hub."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.apps.nodes import make_hub
from tests.conftest import UNIT, Served, serve
from tests.hub.wire import WireClient, expect_nothing
from wirehub.brokers.redis import RedisBroker


@contextlib.asynccontextmanager
async def nodes(
    url: str, prefix: str, count: int = 2, *, cluster: bool = False, **options: Any
) -> AsyncIterator[list[Served]]:
    """``count`` servers on free ports, each a hub with its own RedisBroker on one Redis
    (or one Redis Cluster)."""
    async with contextlib.AsyncExitStack() as stack:
        served = []
        for i in range(count):
            broker = RedisBroker(url, prefix=prefix, cluster=cluster)
            hub = make_hub(f"node{i}", broker=broker, **options)
            served.append(await stack.enter_async_context(serve(hub)))
        yield served


async def test_room_broadcast_crosses_nodes_without_the_sender(redis_url: str, prefix: str) -> None:
    """A room emit from a peer on node B reaches the room on node A and B; the sender gets
    its ``skip`` at the event's position instead (PROTOCOL.md §7)."""
    async with (
        nodes(redis_url, prefix) as (a, b),
        await WireClient.open(a.ws("/ws")) as on_a,
        await WireClient.open(a.ws("/ws")) as also_on_a,
        await WireClient.open(b.ws("/ws")) as on_b,
        await WireClient.open(b.ws("/ws")) as sender,
    ):
        answer, skip = await sender.call_excluded("say", "hi")
        assert answer["data"] is True
        for client in (on_a, also_on_a, on_b):
            message = await client.recv()
            assert (message["event"], message["data"], message["room"]) == ("said", "hi", "lobby")
            assert message["offset"] == 1
        assert skip == {"type": "skip", "room": "lobby", "epoch": message["epoch"], "offset": 1}
        await expect_nothing(sender)
        answer, skip = await on_a.call_excluded("say", "back")
        assert answer["data"] is True and skip is not None and skip["offset"] == 2
        for client in (also_on_a, on_b, sender):
            assert (await client.recv())["data"] == "back"
        await expect_nothing(on_a)


async def test_every_peer_and_one_peer_across_nodes(redis_url: str, prefix: str) -> None:
    """``hub.emit`` reaches peers on every node; ``to_peer`` finds a peer on another node."""
    async with (
        nodes(redis_url, prefix) as (a, b),
        await WireClient.open(a.ws("/ws")) as on_a,
        await WireClient.open(b.ws("/ws")) as on_b,
    ):
        # The shout's own echo and its ack may come in either order.
        await on_a.send({"type": "emit", "event": "shout", "data": "all", "id": 7})
        ack, shouted = sorted([await on_a.recv(), await on_a.recv()], key=lambda m: m["type"])
        assert (ack["type"], ack["id"], shouted["event"], shouted["data"]) == (
            "ack",
            7,
            "shouted",
            "all",
        )
        message = await on_b.recv()
        assert (message["event"], message["data"]) == ("shouted", "all")
        assert "room" not in message
        await on_a.call("whisper", {"to": on_b.id, "text": "psst"})
        message = await on_b.recv()
        assert (message["event"], message["data"]) == ("whispered", "psst")
        await expect_nothing(on_a)


async def test_recovery_on_another_node(redis_url: str, prefix: str) -> None:
    """A client that missed events on node A recovers them when it reconnects to node B."""
    async with nodes(redis_url, prefix) as (a, b), await WireClient.open(b.ws("/ws")) as talker:
        async with await WireClient.open(a.ws("/ws")) as leaving:
            await talker.call("say", "seen")
            seen = await leaving.recv()
        for text in ("missed 1", "missed 2"):
            await talker.call("say", text)
        async with await WireClient.open(b.ws("/ws")) as back:
            since = {"epoch": seen["epoch"], "offset": seen["offset"]}
            await back.send({"type": "join", "room": "lobby", "since": since, "id": 1})
            replayed = [await back.recv(), await back.recv()]
            assert [m["data"] for m in replayed] == ["missed 1", "missed 2"]
            assert [m["offset"] for m in replayed] == [seen["offset"] + 1, seen["offset"] + 2]
            ack = await back.recv()
            assert ack["data"]["recovered"] is True


async def test_presence_notices_cross_nodes(redis_url: str, prefix: str) -> None:
    """With presence on, a join on node B is announced to members on node A."""
    async with (
        nodes(redis_url, prefix, presence=True) as (a, b),
        await WireClient.open(a.ws("/ws")) as on_a,
        await WireClient.open(b.ws("/ws")) as on_b,
    ):
        notice = await on_a.recv()
        assert notice["type"] == "presence" and notice["joined"]["id"] == on_b.id
        await on_b.close()
        notice = await on_a.recv()
        assert notice["type"] == "presence" and notice["left"]["id"] == on_b.id


async def test_health_names_each_node(redis_url: str, prefix: str) -> None:
    """Each node's health shows its own Redis broker, connected."""
    async with nodes(redis_url, prefix) as served:
        reports = [s.server.health()["broker"] for s in served]
        assert all(r["broker"] == "redis" and r["state"] == "connected" for r in reports)
        assert len({r["node"] for r in reports}) == 2


@pytest.mark.parametrize("kind", ["redis", "redis-cluster"])
async def test_a_thousand_emits_keep_their_order_across_nodes(
    request: pytest.FixtureRequest, kind: str, prefix: str
) -> None:
    """1,000 emits sent at once by one client of node A (each handler publishes) reach a
    member on node B in the order they were sent, on one Redis and on a Redis Cluster: one
    ordered publish pipeline per node and Redis server."""
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
    else:
        url = request.getfixturevalue("redis_cluster")[0].url
    async with (
        nodes(url, prefix, cluster=kind == "redis-cluster") as (a, b),
        await WireClient.open(a.ws("/ws")) as sender,
        await WireClient.open(b.ws("/ws")) as receiver,
    ):
        count = 1000
        for n in range(count):  # no waiting for acks: the handlers overlap
            await sender.send({"type": "emit", "event": "say", "data": n})
        got = [(await receiver.recv(5 * UNIT))["data"] for _ in range(count)]
        assert got == list(range(count))
