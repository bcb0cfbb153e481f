"""Redis dies and comes back under two live hubs: emits fail retryably, clients are told
of what they may have missed, nothing is delivered twice, nothing leaks."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis

from tests.apps.nodes import make_hub
from tests.brokers.conftest import Recorder
from tests.brokers.test_redis import StateWatch, named_clients, open_sockets
from tests.chaos.proxy import Proxy, Rule
from tests.conftest import UNIT, Served, http, serve
from tests.hub.wire import WireClient, expect_nothing
from tests.services import RedisServer, running_redis
from wirehub.brokers.base import Publication
from wirehub.brokers.redis import BrokerState, RedisBroker
from wirehub.brokers.redis_wire import Commands
from wirehub.exceptions import Unavailable

RECONNECT = (0.02, 0.2)  # fast backoff for tests; the default starts at 0.1 s


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server this test may kill and restart on the same port."""
    with running_redis() as server:
        yield server


def two_nodes(
    server: RedisServer, prefix: str
) -> contextlib.AbstractAsyncContextManager[
    tuple[list[Served], list[RedisBroker], list[StateWatch]]
]:
    """Two servers whose hubs share ``server`` through RedisBrokers that report their state."""
    return two_nodes_at(server.url, prefix)


@contextlib.asynccontextmanager
async def two_nodes_at(
    url: str, prefix: str
) -> AsyncIterator[tuple[list[Served], list[RedisBroker], list[StateWatch]]]:
    """Two servers whose hubs share the Redis at ``url``."""
    watches = [StateWatch(), StateWatch()]
    brokers = [
        RedisBroker(url, prefix=prefix, reconnect=RECONNECT, on_state_change=watch)
        for watch in watches
    ]
    async with contextlib.AsyncExitStack() as stack:
        served = [
            await stack.enter_async_context(serve(make_hub(f"node{i}", broker=broker)))
            for i, broker in enumerate(brokers)
        ]
        yield served, brokers, watches


async def all_reach(
    state: BrokerState, brokers: list[RedisBroker], watches: list[StateWatch]
) -> None:
    for broker, watch in zip(brokers, watches, strict=True):
        await watch.reach(state, broker, 10 * UNIT)


async def health(node: Served) -> dict[str, Any]:
    response = await http(node.port, b"GET /healthz HTTP/1.1\r\n\r\n")
    assert response.status == 200
    report: dict[str, Any] = json.loads(response.body)
    return report


async def test_redis_restarts_degrade_then_recover_without_leaks(
    own_redis: RedisServer, prefix: str
) -> None:
    """Through three Redis crashes: emits answer ``unavailable``, /healthz says degraded then
    ok, every member is told of the gap (a new epoch), cross-node delivery resumes, and
    connections, sockets and tasks return to their count."""
    admin = redis.Redis(port=own_redis.port)
    async with (
        two_nodes(own_redis, prefix) as (nodes, brokers, watches),
        await WireClient.open(nodes[0].ws("/ws")) as sender,
        await WireClient.open(nodes[0].ws("/ws")) as local,
        await WireClient.open(nodes[1].ws("/ws")) as remote,
    ):

        async def chat(text: str) -> None:
            """One message each way between the nodes, so both use their connections."""
            await sender.call_excluded("say", text)
            assert [(await c.recv())["data"] for c in (local, remote)] == [text] * 2
            await remote.call_excluded("say", f"re: {text}")
            assert [(await c.recv())["data"] for c in (sender, local)] == [f"re: {text}"] * 2

        await chat("before")
        baseline = (len(named_clients(admin, prefix)), open_sockets(), len(asyncio.all_tasks()))
        for round_ in range(3):
            own_redis.kill()
            await all_reach(BrokerState.RECONNECTING, brokers, watches)
            for node in nodes:
                report = await health(node)
                assert report["status"] == "degraded"
                assert (report["broker"]["ok"], report["broker"]["state"]) == (
                    False,
                    "reconnecting",
                )
            refused = await sender.call("say", f"down {round_}")
            assert (refused["type"], refused["code"]) == ("error", "unavailable")
            await asyncio.to_thread(own_redis.start)
            await all_reach(BrokerState.CONNECTED, brokers, watches)
            for node in nodes:
                assert (await health(node))["status"] == "ok"
            for client in (sender, local, remote):  # Redis lost the room: a new epoch
                gap = await client.recv(5 * UNIT)
                assert (gap["type"], gap["room"], gap["offset"]) == ("gap", "lobby", 0), gap
            # The remote peer's next message is this one: the outage's never came late.
            await chat(f"up {round_}")
        admin.close()
        admin = redis.Redis(port=own_redis.port)
        after = (len(named_clients(admin, prefix)), open_sockets(), len(asyncio.all_tasks()))
        assert after == baseline
        assert [b.reconnects for b in brokers] == [3, 3]
    admin.close()


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait until it is done."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Stream:
    """What one client has heard, read continuously by a task; ``until`` waits for a condition."""

    def __init__(self, client: WireClient) -> None:
        self.client = client
        self.got: list[int] = []  # event data, answered request ids, GAP for a gap notice
        self.answers: list[str] = []  # "ack" or "error", for each answered request
        self.changed = asyncio.Event()

    async def read(self) -> None:
        # ws.recv() itself, not WireClient.recv's wait_for: on Python 3.11 wait_for
        # can swallow the cancellation that stops this task.
        while True:
            message = json.loads(await self.client.ws.recv())
            if message["type"] in ("ack", "error"):
                self.answers.append(message["type"])
                self.got.append(message["id"])
            elif message["type"] == "skip":  # the sender's own event (``exclude``)
                continue
            else:
                self.got.append(GAP if message["type"] == "gap" else message["data"])
            self.changed.set()

    async def until(self, condition: Callable[[list[int]], bool]) -> None:
        async with asyncio.timeout(10 * UNIT):
            while not condition(self.got):
                self.changed.clear()
                await self.changed.wait()


async def test_nothing_is_lost_silently_while_redis_dies_mid_stream(
    own_redis: RedisServer, prefix: str
) -> None:
    """A peer emitting non-stop while Redis is killed and restarted: every acknowledged
    event reaches both nodes' members in order, once, or they get a gap notice before
    anything later; emits during the outage are refused (and retried), never half-done."""
    async with (
        two_nodes(own_redis, prefix) as (nodes, brokers, watches),
        await WireClient.open(nodes[0].ws("/ws")) as sender,
        await WireClient.open(nodes[0].ws("/ws")) as local_client,
        await WireClient.open(nodes[1].ws("/ws")) as remote_client,
        contextlib.AsyncExitStack() as tasks,
    ):
        local, remote, acks = Stream(local_client), Stream(remote_client), Stream(sender)
        sent, refused = 0, 0
        acked: list[int] = []

        def answered(got: list[int]) -> bool:
            return sent in got[-2:]  # its answer, perhaps followed by a gap notice

        async def talk() -> None:
            nonlocal sent, refused
            while True:  # one at a time: each emit is answered before the next
                await sender.send({"type": "emit", "event": "say", "data": sent, "id": sent})
                await acks.until(answered)
                if acks.answers[-1] == "ack":
                    acked.append(sent)
                else:
                    refused += 1
                    await asyncio.sleep(0.01)
                sent += 1

        loop = asyncio.get_running_loop()
        for coro in (local.read(), remote.read(), acks.read(), talk()):
            tasks.push_async_callback(stop, loop.create_task(coro))
        await local.until(lambda got: len(got) >= 20)
        await remote.until(lambda got: len(got) >= 20)
        own_redis.kill()
        await all_reach(BrokerState.RECONNECTING, brokers, watches)
        await asyncio.to_thread(own_redis.start)
        await all_reach(BrokerState.CONNECTED, brokers, watches)
        back = sent
        for stream in (local, remote):
            await stream.until(lambda got: max(got, default=GAP) >= back + 10)
    assert refused > 0, "no emit was refused while Redis was down"
    for stream in (local, remote):
        heard = [x for x in stream.got if x != GAP]
        assert heard == sorted(set(heard)), "repeated or out of order"
        for missing in set(acked) - set(heard):
            assert covered(stream.got, missing), f"{missing} lost without a gap notice"


GAP = -1


def covered(got: list[int], missing: int) -> bool:
    """Whether a gap notice arrived after the last event before ``missing``, and before
    the first one after it."""
    before = max((i for i, x in enumerate(got) if x != GAP and x < missing), default=-1)
    after = min((i for i, x in enumerate(got) if x != GAP and x > missing), default=len(got))
    return GAP in got[before + 1 : after]


async def test_events_published_while_a_node_resubscribes_are_filled_from_history(
    redis_url: str, prefix: str
) -> None:
    """Redis drops node B's pub/sub connection while node A publishes: B's member still
    gets every event, once, in order — what B did not hear is read back from history."""
    admin = redis.Redis.from_url(redis_url)
    async with (
        two_nodes_at(redis_url, prefix) as (nodes, brokers, _),
        await WireClient.open(nodes[1].ws("/ws")) as member,
    ):
        hub = nodes[0].server.hub
        await hub.to("lobby").emit("said", 0)
        assert (await member.recv())["offset"] == 1
        name = f"{prefix}:{brokers[1].node}:sub"
        [deaf] = [c["id"] for c in admin.client_list() if c["name"] == name]
        assert admin.client_kill_filter(_id=deaf) == 1
        for n in range(1, 40):
            await hub.to("lobby").emit("said", n)
        got = [(await member.recv(5 * UNIT))["offset"] for _ in range(39)]
        assert got == list(range(2, 41))
        await expect_nothing(member)
    admin.close()


async def test_a_lost_publish_reply_says_the_outcome_is_unknown(
    redis_server: RedisServer, prefix: str
) -> None:
    """A publish whose reply is held past the timeout (Redis applied it) raises ``Unavailable``
    with ``details["outcome"] == "unknown"`` and is delivered once; one Redis never got
    (a broker that is reconnecting) carries no such detail."""
    with Proxy(redis_server.port, resp=True) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        listener = Recorder()
        broker = RedisBroker(url, prefix=prefix, timeout=UNIT / 2, reconnect=RECONNECT)
        await broker.start(listener)
        try:
            await broker.subscribe("r")
            sha = Commands.publish_sha
            proxy.add(Rule("down", "EVALSHA", (sha,), delay=UNIT, limit=1))
            with pytest.raises(Unavailable) as lost:
                await broker.publish(Publication(b'"event":"x"}', room="r"))
            assert lost.value.details == {"outcome": "unknown"}
            assert (await listener.next()).position is not None  # Redis did apply it
            with pytest.raises(Unavailable) as refused:  # the broker reconnects meanwhile
                await broker.publish(Publication(b'"event":"y"}', room="r"))
            assert refused.value.details is None
        finally:
            await broker.close()
        assert listener.queue.empty()
