"""Chaos on the Redis backplane: two ``wirehub serve`` nodes (or ``--workers 2``) on a real
``redis-server``, one fault at a time, every member judged by the one checker."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.crc import key_slot

from tests.chaos.harness import MEMBERS, ROOM, TIMEOUT, Member, Run, check, health, until
from tests.chaos.proxy import Proxy, Rule
from tests.services import (
    SLOTS,
    RedisServer,
    WirehubServer,
    redis_command,
    running_cluster,
    running_redis,
)
from wirehub.brokers.redis_wire import PUBLISH_SCRIPT

APP = "tests/chaos/app.py:make_hub"
PREFIX = f"chaos{secrets.token_hex(4)}"  # every run's own keys (each starts its own Redis)
PUBLISH_SHA = hashlib.sha1(PUBLISH_SCRIPT.encode()).hexdigest()  # what EVALSHA names


@contextlib.asynccontextmanager
async def nodes(
    directory: Path, redis_port: int, *args: str, count: int = 2, cluster: bool = False
) -> AsyncIterator[list[WirehubServer]]:
    """``count`` ``wirehub serve`` processes of the chaos app on Redis at ``redis_port``
    (a node of a Redis Cluster with ``cluster``)."""
    env = {
        "WIREHUB_CHAOS_REDIS": f"redis://127.0.0.1:{redis_port}/0",
        "WIREHUB_CHAOS_PREFIX": PREFIX,
        "WIREHUB_CHAOS_TIMEOUT": str(TIMEOUT),
        "WIREHUB_CHAOS_CLUSTER": "1" if cluster else "0",
    }
    servers = [WirehubServer(directory, APP, *args, env=env) for _ in range(count)]
    try:
        await asyncio.gather(*(asyncio.to_thread(server.start) for server in servers))
        yield servers
    finally:
        for server in servers:
            await asyncio.to_thread(server.stop)
            sys.stderr.write(server.log())  # shown when the test fails


def spread(*servers: WirehubServer) -> list[str]:
    """Member URLs, round-robin over ``servers``."""
    return [servers[i % len(servers)].ws() for i in range(MEMBERS)]


async def broker_states(*servers: WirehubServer) -> list[tuple[str, int]]:
    """Each node's broker state and reconnection count, from its ``/healthz``."""
    reports = [(await health(server.port))["broker"] for server in servers]
    return [(report["state"], report["reconnects"]) for report in reports]


async def all_connected(*servers: WirehubServer) -> bool:
    return all(state == "connected" for state, _ in await broker_states(*servers))


async def none_connected(*servers: WirehubServer) -> bool:
    return all(state != "connected" for state, _ in await broker_states(*servers))


async def reconnected(servers: list[WirehubServer], before: list[tuple[str, int]]) -> bool:
    """Every node reconnected since ``before`` and is connected now."""
    now = await broker_states(*servers)
    return all(
        state == "connected" and count > old
        for (state, count), (_, old) in zip(now, before, strict=True)
    )


def lost(members: list[Member]) -> bool:
    return all(m.disconnects for m in members)


@contextlib.asynccontextmanager
async def two_nodes(
    directory: Path, fault: str, *redis_args: str
) -> AsyncIterator[tuple[RedisServer, list[WirehubServer], Run]]:
    """Redis, two nodes on it, and a run: members spread over both, the publisher on the first."""
    with running_redis(*redis_args) as server:
        async with nodes(directory, server.port) as servers:
            a, b = servers
            async with Run("redis", fault, a.ws(), spread(a, b)) as run:
                yield server, servers, run


async def test_kill_a_node(tmp_path: Path) -> None:
    """kill -9 one of two nodes and start it again: its members reconnect and recover."""
    async with two_nodes(tmp_path, "kill -9 a node") as (_, (_, b), run):
        await run.warm()
        b.kill()
        await until(lambda: lost(run.members[1::2]), "the members of b disconnected")
        await run.publisher.published(2 * MEMBERS)
        await asyncio.to_thread(b.start)
        await run.settle()
    check(run)


async def test_kill_a_worker(tmp_path: Path) -> None:
    """kill -9 one of two workers (not the publisher's): its members reconnect and recover."""
    with running_redis() as server:
        async with nodes(tmp_path, server.port, "--workers", "2", count=1) as (node,):
            urls = [node.ws()] * MEMBERS
            async with Run("redis", "kill -9 a worker", node.ws(), urls) as run:
                pids = await asyncio.gather(*(m.whoami() for m in run.members))
                publisher = int(await run.publisher.client.call("whoami"))
                node.pids |= {*pids, publisher}
                victim = next((pid for pid in pids if pid != publisher), None)
                assert victim is not None, "every member landed on the publisher's worker"
                await run.warm()
                os.kill(victim, signal.SIGKILL)
                victims = [m for m in run.members if m.pid == victim]
                await until(lambda: lost(victims), "the members of the killed worker disconnected")
                await run.publisher.published(2 * MEMBERS)
                await run.settle()
    check(run)


@pytest.mark.parametrize(
    ("fault", "redis_args"),
    [("kill -9 Redis", ()), ("kill -9 Redis (AOF)", ("--appendonly", "yes"))],
)
async def test_kill_redis(tmp_path: Path, fault: str, redis_args: tuple[str, ...]) -> None:
    """kill -9 Redis and start it again on its port: without persistence every room starts
    on a new epoch; with an append-only file the rooms come back with their offsets."""
    async with two_nodes(tmp_path, fault, *redis_args) as (server, servers, run):
        await run.warm()
        server.kill()
        await until(lambda: none_connected(*servers), "every node saw Redis go")
        await run.publisher.published(2 * MEMBERS)
        await asyncio.to_thread(server.start)
        await until(lambda: all_connected(*servers), "every node reconnected to Redis")
        await run.settle()
    check(run)


async def test_client_kill_pubsub(tmp_path: Path) -> None:
    """CLIENT KILL TYPE pubsub: every node loses its subscriptions while Redis stays up."""
    async with two_nodes(tmp_path, "CLIENT KILL TYPE pubsub") as (server, servers, run):
        await run.warm()
        before = await broker_states(*servers)
        assert redis_command(server.port, "CLIENT", "KILL", "TYPE", "pubsub")[:1] == b":"
        await until(lambda: reconnected(servers, before), "every node resubscribed")
        await run.settle()
    check(run)


async def test_sigstop_redis(tmp_path: Path) -> None:
    """SIGSTOP Redis for longer than the nodes' command timeout, then SIGCONT."""
    async with two_nodes(tmp_path, "SIGSTOP Redis") as (server, servers, run):
        await run.warm()
        server.pause()
        try:
            await until(lambda: none_connected(*servers), "every node gave up on Redis")
            # A few more: each may wait out the command timeout on the frozen Redis.
            await run.publisher.published(3)
        finally:
            server.resume()
        await until(lambda: all_connected(*servers), "every node reconnected to Redis")
        await run.settle()
    check(run)


async def test_slow_subscribe(tmp_path: Path) -> None:
    """SUBSCRIBE held back by a proxy while members join a room new to their node."""
    with running_redis() as server, Proxy(server.port, resp=True) as proxy:
        # Slow (30 events go by) but well within the timeout: the joins must wait, not fail.
        proxy.add(Rule("up", "SUBSCRIBE", delay=TIMEOUT / 4))
        async with nodes(tmp_path, proxy.port) as (a, b):
            late = range(1, MEMBERS, 2)  # b's members join while the room is busy
            async with Run("redis", "slow SUBSCRIBE", a.ws(), spread(a, b), late=late) as run:
                await run.warm()
                await run.join_late()
                await run.settle()
    check(run)


async def test_publish_reply_times_out(tmp_path: Path) -> None:
    """A proxy holds one publish's reply past the command timeout (Redis did apply it)."""
    with running_redis() as server, Proxy(server.port, resp=True) as proxy:
        async with nodes(tmp_path, proxy.port) as servers:
            a, b = servers
            async with Run("redis", "publish reply times out", a.ws(), spread(a, b)) as run:
                await run.warm()
                before = await broker_states(a)
                rule = proxy.add(
                    Rule("down", "EVALSHA", (PUBLISH_SHA,), delay=2 * TIMEOUT, limit=1)
                )
                await until(lambda: rule.matched == 1, "a publish reply held back")
                await until(lambda: reconnected([a], before), "the publishing node reconnected")
                await run.settle()
    check(run)


async def test_cluster_failover(tmp_path: Path) -> None:
    """CLUSTER FAILOVER on a 3-primary, 3-replica Redis Cluster: the replica of the room's
    shard is promoted mid-stream; both nodes move their publishing and subscriptions."""
    with running_cluster(replicas=1) as cluster:
        slot = key_slot(f"{PREFIX}:room:{ROOM}".encode())
        shard = next(i for i, (low, high) in enumerate(SLOTS) if low <= slot <= high)
        primary, replica = cluster[shard], cluster[3 + shard]
        async with nodes(tmp_path, cluster[0].port, cluster=True) as servers:
            a, b = servers
            async with Run("redis-cluster", "CLUSTER FAILOVER", a.ws(), spread(a, b)) as run:
                await run.warm()
                before = await broker_states(*servers)
                assert redis_command(replica.port, "CLUSTER", "FAILOVER") == b"+OK\r\n"
                await until(lambda: promoted(replica, primary), "the replica took over")
                await until(lambda: reconnected(servers, before), "every node moved over")
                await run.settle()
    check(run)


def promoted(replica: RedisServer, primary: RedisServer) -> bool:
    """The replica is a primary now and the old primary follows it."""
    return b"role:master" in redis_command(replica.port, "INFO", "replication") and (
        b"role:slave" in redis_command(primary.port, "INFO", "replication")
    )
