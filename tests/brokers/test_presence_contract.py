"""One contract for every presence store: memory, Redis, Redis Cluster (``PresenceStore``).

Two "nodes" share a store the way two processes share a Redis: each test
names them ``a`` and ``b``. Time passes through ``backend.elapse``: a fake
clock for the memory store, real time (a fraction of ``UNIT``) for Redis,
whose own clock decides there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.conftest import UNIT
from wirehub.brokers.presence import MemoryPresence, PeerInfo, PresenceStore
from wirehub.brokers.redis_presence import MAX_INFO, RedisPresence


@dataclasses.dataclass
class Backend:
    """Makes the stores of one backend and lets time pass for them."""

    make: Callable[[], Any]  # -> an awaitable of a started PresenceStore
    elapse: Callable[[float], Any]  # -> an awaitable; advances the store's clock
    ttl: float
    wipe: Callable[[], Any]  # -> an awaitable; the store loses everything (Redis: FLUSHALL)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def elapse(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        clock = FakeClock()
        shared = MemoryPresence(ttl=15.0, clock=clock)

        async def shared_store() -> MemoryPresence:
            return shared

        async def forget_all() -> None:  # the only loss in memory is reaping: do it all
            shared.__init__(ttl=shared.ttl, clock=clock)  # type: ignore[misc]

        yield Backend(shared_store, clock.elapse, shared.ttl, forget_all)
        return
    if request.param == "redis":
        url, cluster = request.getfixturevalue("redis_url"), False
    else:
        url, cluster = request.getfixturevalue("redis_cluster")[0].url, True
    prefix = request.getfixturevalue("prefix")
    ttl = UNIT / 2
    async with contextlib.AsyncExitStack() as stack:

        stores: list[RedisPresence] = []

        async def redis_store() -> RedisPresence:
            store = RedisPresence(url, prefix=prefix, ttl=ttl, cluster=cluster)
            await store.start()
            stack.push_async_callback(store.close)
            await warm(store)
            stores.append(store)
            return store

        async def flush() -> None:  # this test's keys only: the redis-server is shared
            client = stores[0]._client
            await client.delete(*[key async for key in client.scan_iter(stores[0].base + "*")])

        yield Backend(redis_store, asyncio.sleep, ttl, flush)


async def warm(store: RedisPresence) -> None:
    """Connect ``store`` and load every script into Redis.

    A client's first command pays for its connection (on a cluster, discovering
    the slots first) and each script's first call for a NOSCRIPT round trip and
    its compiling: tens of ms here, far more on a loaded machine. The tests'
    windows are a fraction of ``ttl`` (a live node read back within it, a dead
    one reaped before its keys expire): only warm round trips may fall in them.
    """
    await store.heartbeat("warm-up", [])
    await store.add("warm-up", "warm-up", peer("w", "warm-up"))
    await store.remove("warm-up", "warm-up", "w")
    await store.members("warm-up")
    await store.drop("warm-up")


def peer(id: str, node: str, **info: Any) -> PeerInfo:
    return PeerInfo(id, info, node)


async def ids(store: PresenceStore, room: str) -> set[str]:
    return {p.id for p in await store.members(room)}


async def test_members_of_every_node_and_counts(backend: Backend) -> None:
    """Members added on two nodes are listed together, with their info and node; remove works."""
    a, b = await backend.make(), await backend.make()
    await a.add("A", "lobby", peer("p1", "A", name="ada"))
    await b.add("B", "lobby", peer("p2", "B", name="bob"))
    await b.add("B", "kitchen", peer("p2", "B", name="bob"))
    members = sorted(await a.members("lobby"), key=lambda p: p.id)
    assert members == [peer("p1", "A", name="ada"), peer("p2", "B", name="bob")]
    assert await a.rooms() == {"lobby": 2, "kitchen": 1}
    await b.remove("B", "lobby", "p2")
    await b.remove("B", "lobby", "p2")  # idempotent
    await a.add("A", "lobby", peer("p1", "A", name="ada"))  # idempotent
    assert await ids(b, "lobby") == {"p1"}
    assert await b.rooms() == {"lobby": 1, "kitchen": 1}
    await b.remove("B", "kitchen", "p2")
    assert await a.rooms() == {"lobby": 1}
    assert await a.members("nowhere") == []


async def test_a_dead_node_leaves_within_ttl_and_is_reaped_once(backend: Backend) -> None:
    """Nodes silent for ttl vanish from members at once; one heartbeat of another returns them."""
    a, b, c = await backend.make(), await backend.make(), await backend.make()
    await a.add("A", "lobby", peer("p1", "A"))
    await a.add("A", "kitchen", peer("p1", "A"))
    await b.add("B", "lobby", peer("p2", "B"))
    assert await ids(c, "lobby") == {"p1", "p2"}
    await backend.elapse(backend.ttl * 1.1)  # A and B fall silent (killed)
    await c.add("C", "lobby", peer("p3", "C"))
    assert await ids(c, "lobby") == {"p3"}  # gone from members before any reaping
    beat = await c.heartbeat("C", ["lobby"])
    assert sorted(beat.departed, key=lambda d: (d[0], d[1].id)) == [
        ("kitchen", peer("p1", "A")),
        ("lobby", peer("p1", "A")),
        ("lobby", peer("p2", "B")),
    ]
    assert (await c.heartbeat("C", ["lobby"])).departed == []  # exactly once
    assert await c.rooms() == {"lobby": 1}


async def test_heartbeats_keep_a_node_and_a_reaped_node_is_told(backend: Backend) -> None:
    """Heartbeating nodes stay past many ttl; a node reaped while alive learns it and re-adds."""
    a, b = await backend.make(), await backend.make()
    await a.add("A", "lobby", peer("p1", "A"))
    await b.add("B", "lobby", peer("p2", "B"))
    for _ in range(3):
        await backend.elapse(backend.ttl / 2)
        assert not (await a.heartbeat("A", ["lobby"])).lost
        assert (await b.heartbeat("B", ["lobby"])).departed == []
    assert await ids(a, "lobby") == {"p1", "p2"}
    await backend.elapse(backend.ttl * 1.2)  # A misses its heartbeats (a blocked event loop)
    assert [d[1].id for d in (await b.heartbeat("B", ["lobby"])).departed] == ["p1"]
    beat = await a.heartbeat("A", ["lobby"])
    assert beat.lost and beat.departed == []
    await a.add("A", "lobby", peer("p1", "A"))
    assert await ids(b, "lobby") == {"p1", "p2"}


async def test_a_node_whose_entries_the_store_lost_is_told_and_syncs(backend: Backend) -> None:
    """After the store lost everything (Redis restarted empty), the next add or heartbeat of
    each node says so, and ``sync`` makes the node's entries its list again, and only it."""
    a, b = await backend.make(), await backend.make()
    assert not await a.add("A", "lobby", peer("p1", "A"))  # a node the store never saw
    assert await a.add("A", "kitchen", peer("p1", "A"))
    assert not await b.add("B", "lobby", peer("p2", "B"))
    assert not (await a.heartbeat("A", ["lobby", "kitchen"])).lost
    await backend.wipe()
    assert not await a.add("A", "lobby", peer("p3", "A"))  # a join before any heartbeat
    assert await a.add("A", "lobby", peer("p4", "A"))  # known again: only one add is told
    assert (await b.heartbeat("B", ["lobby"])).lost
    await a.sync("A", [("lobby", peer("p1", "A")), ("kitchen", peer("p1", "A"))])
    await a.sync("A", [(r, peer(p, "A")) for r, p in [("lobby", "p1"), ("lobby", "p3")]])
    await b.sync("B", [("lobby", peer("p2", "B"))])
    assert await ids(b, "lobby") == {"p1", "p2", "p3"}  # p4 left, kitchen too: sync replaces
    assert await a.rooms() == {"lobby": 3}
    assert not (await a.heartbeat("A", ["lobby"])).lost
    assert not (await b.heartbeat("B", ["lobby"])).lost
    await backend.elapse(backend.ttl * 1.1)
    await b.heartbeat("B", ["lobby"])  # A falls silent: its synced entries are reaped as usual
    assert await ids(b, "lobby") == {"p2"}


@pytest.mark.parametrize("lost", ["nodes", "node:A", "room:lobby", "counts"])
async def test_redis_heals_from_losing_any_one_key(redis_url: str, prefix: str, lost: str) -> None:
    """Redis evicting one presence key (``maxmemory``): the next heartbeat of its node says
    the node's entries are lost (or, for ``counts``, writes it again)."""
    store = RedisPresence(redis_url, prefix=prefix, ttl=UNIT)
    await store.start()
    try:
        await store.add("A", "lobby", peer("p1", "A"))
        await store.add("A", "kitchen", peer("p1", "A"))
        assert not (await store.heartbeat("A", ["lobby", "kitchen"])).lost
        await store._client.delete(store.base + lost)
        beat = await store.heartbeat("A", ["lobby", "kitchen"])
        assert beat.lost == (lost != "counts")
        if beat.lost:
            await store.sync("A", [(r, peer("p1", "A")) for r in ("lobby", "kitchen")])
        assert await ids(store, "lobby") == {"p1"}
        assert await store.rooms() == {"lobby": 1, "kitchen": 1}
        assert not (await store.heartbeat("A", ["lobby", "kitchen"])).lost
    finally:
        await store.close()


async def test_redis_state_expires_and_info_is_bounded(redis_url: str, prefix: str) -> None:
    """Every presence key expires 3 ttl after the last write; oversized info is stored as {}."""
    store = RedisPresence(redis_url, prefix=prefix, ttl=UNIT / 4)
    await store.start()
    try:
        await store.add("A", "lobby", peer("p1", "A", blob="x" * MAX_INFO))
        [member] = await store.members("lobby")
        assert member.info == {}
        client = store._client
        keys = await client.keys(store.base + "*")
        assert len(keys) == 4  # nodes, counts, the room, A's held set
        lives = [await client.pttl(key) for key in keys]
        assert all(0 < ms <= 3 * UNIT * 250 for ms in lives), lives
        async with asyncio.timeout(3 * UNIT):
            while await client.keys(store.base + "*"):
                await asyncio.sleep(UNIT / 20)
    finally:
        await store.close()


async def test_a_node_that_stops_cleanly_is_dropped_at_once(backend: Backend) -> None:
    """``drop`` removes a node's entries now, and no heartbeat reports them later."""
    a, b = await backend.make(), await backend.make()
    await a.add("A", "lobby", peer("p1", "A"))
    await b.add("B", "lobby", peer("p2", "B"))
    await a.drop("A")
    assert await ids(b, "lobby") == {"p2"} and await b.rooms() == {"lobby": 1}
    await backend.elapse(backend.ttl * 1.1)
    assert (await b.heartbeat("B", ["lobby"])).departed == []
