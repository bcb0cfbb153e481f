"""Cluster-wide presence: members and notices across nodes, and a node killed with kill -9."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.apps.ops import make_hub
from tests.brokers.test_redis import StateWatch
from tests.conftest import TICK, UNIT, Served, serve
from tests.hub.wire import WireClient
from tests.services import running_redis
from tests.test_cli import START, served_url
from wirehub import ConfigError, Hub
from wirehub.brokers.presence import MemoryPresence
from wirehub.brokers.redis import BrokerState, RedisBroker
from wirehub.brokers.redis_presence import RedisPresence

ROOT = Path(__file__).resolve().parents[2]
TTL = UNIT  # presence ttl of the nodes in these tests: heartbeats every TTL / 3


def ids(members: list[dict[str, Any]]) -> set[str]:
    return {m["id"] for m in members}


async def presence_notice(client: WireClient, timeout: float = UNIT) -> dict[str, Any]:
    """The next ``presence`` message (skipping anything else)."""
    async with asyncio.timeout(timeout):
        while (message := await client.recv(timeout))["type"] != "presence":
            pass
    return message


def redis_node(redis_url: str, prefix: str, ttl: float = TTL, **options: Any) -> Hub:
    store = RedisPresence(redis_url, prefix=prefix, ttl=ttl)
    return make_hub(broker=RedisBroker(redis_url, prefix=prefix, **options), presence=store)


@contextlib.asynccontextmanager
async def two_nodes(redis_url: str, prefix: str) -> AsyncIterator[tuple[Served, Served]]:
    async with (
        serve(redis_node(redis_url, prefix)) as a,
        serve(redis_node(redis_url, prefix)) as b,
    ):
        yield a, b


async def test_members_and_notices_cover_both_nodes(redis_url: str, prefix: str) -> None:
    """Clients of two nodes see each other in one room's members and presence notices."""
    async with (
        two_nodes(redis_url, prefix) as (a, b),
        await WireClient.open(a.ws("/ws")) as on_a,
        await WireClient.open(b.ws("/ws")) as on_b,
    ):
        first = await on_a.join("lobby")
        assert ids(first["data"]["members"]) == {on_a.id}
        second = await on_b.join("lobby")
        assert ids(second["data"]["members"]) == {on_a.id, on_b.id}
        joined = await presence_notice(on_a)
        assert joined["joined"]["id"] == on_b.id
        assert ids(await a.server.hub.members("lobby")) == {on_a.id, on_b.id}
        assert await b.server.hub.room_sizes() == {"lobby": 2}
        await on_b.request({"type": "leave", "room": "lobby"})
        left = await presence_notice(on_a)
        assert left["left"]["id"] == on_b.id
        assert ids(await b.server.hub.members("lobby")) == {on_a.id}


async def test_members_of_a_single_node_and_errors() -> None:
    """With the in-memory broker presence is this process's; members() needs presence=True."""
    hub = make_hub(presence=True)
    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as client:
        await client.join("lobby")
        assert ids(await hub.members("lobby")) == {client.id}
        assert await hub.room_sizes() == {"lobby": 1}
        assert hub.cluster is not None and isinstance(hub.cluster.store, MemoryPresence)
    with pytest.raises(ConfigError):
        await make_hub().members("lobby")


async def test_a_node_killed_with_kill_9_leaves_within_the_bound(
    redis_url: str, prefix: str
) -> None:
    """A node process killed with SIGKILL: its member's leave reaches the other node in time."""
    env = {
        **os.environ,
        "WIREHUB_TEST_REDIS": redis_url,
        "WIREHUB_TEST_PREFIX": prefix,
        "WIREHUB_TEST_PRESENCE_TTL": str(TTL),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wirehub",
        "serve",
        "tests/apps/presence.py:hub",
        "--redis",
        redis_url,
        "--redis-prefix",
        prefix,
        "--port",
        "0",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        url = (await served_url(process)).replace("http://", "ws://") + "/ws"
        async with (
            serve(redis_node(redis_url, prefix)) as a,
            await WireClient.open(a.ws("/ws")) as on_a,
        ):
            doomed = await WireClient.open(url)
            await doomed.join("lobby")
            joined = await on_a.join("lobby")
            assert ids(joined["data"]["members"]) == {on_a.id, doomed.id}
            process.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            left = await presence_notice(on_a, timeout=TTL * 4 / 3 + 2 * UNIT)
            took = time.monotonic() - killed
            assert left["left"]["id"] == doomed.id
            assert took <= TTL * 4 / 3 + UNIT, took  # ttl + one heartbeat, plus slack
            assert ids(await a.server.hub.members("lobby")) == {on_a.id}
            with contextlib.suppress(Exception):
                await doomed.close()
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), START)


async def test_members_are_listed_again_after_redis_restarts_empty(prefix: str) -> None:
    """Redis killed and restarted empty under two nodes: a join on one node right away lists
    that node's earlier members, and both nodes' are listed within one heartbeat interval."""
    with running_redis() as redis_server:
        watches = [StateWatch(), StateWatch()]
        # Node 0 heartbeats too rarely to find the loss first: its join must.
        hubs = [
            redis_node(redis_server.url, prefix, ttl, reconnect=(0.02, 0.2), on_state_change=watch)
            for ttl, watch in zip((60 * UNIT, TTL), watches, strict=True)
        ]
        async with contextlib.AsyncExitStack() as stack:
            nodes = [await stack.enter_async_context(serve(hub)) for hub in hubs]
            clients = [
                await stack.enter_async_context(await WireClient.open(node.ws("/ws")))
                for node in (*nodes, *nodes)
            ]
            for client in clients:
                await client.join("lobby")
            everyone = {client.id for client in clients}
            assert ids(await hubs[1].members("lobby")) == everyone

            redis_server.kill()
            await asyncio.to_thread(redis_server.start)
            back = time.monotonic()
            for hub, watch in zip(hubs, watches, strict=True):
                assert isinstance(hub.broker, RedisBroker)
                await watch.reach(BrokerState.CONNECTED, hub.broker, 5 * UNIT)
            late = await stack.enter_async_context(await WireClient.open(nodes[0].ws("/ws")))
            ack = await late.join("lobby")
            assert {clients[0].id, clients[2].id, late.id} <= ids(ack["data"]["members"])
            everyone.add(late.id)
            async with asyncio.timeout(TTL / 3 + UNIT):  # node 1 heartbeats within TTL / 3
                while ids(await hubs[1].members("lobby")) != everyone:
                    await asyncio.sleep(TICK)
            took = time.monotonic() - back
            assert took <= TTL / 3 + UNIT / 2, took
            assert ids(await hubs[0].members("lobby")) == everyone
            assert await hubs[0].room_sizes() == {"lobby": 5}
