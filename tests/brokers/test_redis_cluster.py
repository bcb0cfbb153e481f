"""``RedisBroker(cluster=True)`` on a real 3-primary Redis Cluster: sharded pub/sub.

The broker contract itself runs against the cluster too (``test_broker_contract.py``,
``[redis-cluster]``); these tests pin what is specific to the cluster.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from redis.crc import key_slot

from tests.apps.nodes import make_hub
from tests.brokers.conftest import Recorder
from tests.conftest import serve
from tests.hub.wire import WireClient, expect_nothing
from tests.services import RedisServer, redis_command
from wirehub import AsyncEmitter
from wirehub.brokers.base import Publication
from wirehub.brokers.redis import RedisBroker

SLOTS = [(0, 5460), (5461, 10922), (10923, 16383)]  # as the redis_cluster fixture assigns them


def owner(nodes: list[RedisServer], channel: str) -> RedisServer:
    """The primary serving ``channel``'s slot."""
    slot = key_slot(channel.encode())
    return next(n for n, (low, high) in zip(nodes, SLOTS, strict=True) if low <= slot <= high)


@contextlib.asynccontextmanager
async def cluster_node(url: str, prefix: str) -> AsyncIterator[tuple[RedisBroker, Recorder]]:
    broker = RedisBroker(url, prefix=prefix, cluster=True)
    recorder = Recorder()
    await broker.start(recorder)
    try:
        yield broker, recorder
    finally:
        await broker.close()


async def test_rooms_spread_over_shards_with_sharded_pubsub(
    redis_cluster: list[RedisServer], prefix: str
) -> None:
    """Each room's channel is subscribed with SSUBSCRIBE on the shard owning it; rooms on
    every shard cross between nodes in order; nothing uses classic pub/sub."""
    url = redis_cluster[0].url
    rooms = [f"room-{i}" for i in range(12)]
    async with cluster_node(url, prefix) as (a, _), cluster_node(url, prefix) as (b, heard):
        for room in rooms:
            await b.subscribe(room)
        positions = [await a.publish(Publication(b'"event":"x"}', room=room)) for room in rooms]
        assert all(p is not None and p.offset == 1 for p in positions)
        got = await heard.take(len(rooms))  # in order per room; rooms on different shards race
        assert {p.room: p.position for p in got} == dict(zip(rooms, positions, strict=True))
        shards = set()
        for room in rooms:
            channel = f"{prefix}:room:{room}"
            node = owner(redis_cluster, channel)
            assert channel.encode() in redis_command(node.port, "PUBSUB", "SHARDCHANNELS")
            shards.add(node.port)
        assert len(shards) == 3, "12 rooms should land on all three shards"
        for node in redis_cluster:
            assert prefix.encode() not in redis_command(node.port, "PUBSUB", "CHANNELS")


async def test_hubs_on_a_cluster_chat_across_nodes(
    redis_cluster: list[RedisServer], prefix: str
) -> None:
    """Two hubs on the cluster: a room emit from one reaches the other, without the sender."""
    url = redis_cluster[0].url
    async with contextlib.AsyncExitStack() as stack:
        a, b = [
            await stack.enter_async_context(
                serve(make_hub(name, broker=RedisBroker(url, prefix=prefix, cluster=True)))
            )
            for name in ("a", "b")
        ]
        on_a = await stack.enter_async_context(await WireClient.open(a.ws("/ws")))
        on_b = await stack.enter_async_context(await WireClient.open(b.ws("/ws")))
        answer, skip = await on_b.call_excluded("say", "over the cluster")
        assert answer["data"] is True and skip is not None and skip["offset"] == 1
        message = await on_a.recv()
        assert (message["data"], message["offset"]) == ("over the cluster", 1)
        await expect_nothing(on_b)
        async with AsyncEmitter(url, prefix=prefix, cluster=True) as emitter:
            position = await emitter.emit("news", "from outside", room="lobby")
            assert position is not None and position.offset == 2
            await emitter.emit("all", "everyone")
        for client in (on_a, on_b):
            # A room event and a global one travel on different shards: either may come first.
            got = {m["event"]: m for m in (await client.recv(), await client.recv())}
            assert (got["news"]["data"], got["news"]["offset"]) == ("from outside", 2)
            assert got["all"]["data"] == "everyone"
