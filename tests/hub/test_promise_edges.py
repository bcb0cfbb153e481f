"""The promise where ``skip`` markers, server-side ``joined``/``left`` and ``drop`` gaps meet.

Over real sockets on 127.0.0.1: each test drives two of those changes at once
and checks that a member gets every event of its room once, in order, or a
notice that it may have missed some.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import Any

from tests.chaos.proxy import Proxy
from tests.client.conftest import FAST, Node
from tests.conftest import TEXT, TICK, UNIT, frame, serve
from tests.hub.test_dropping import Flooding, continuous, receiver
from tests.hub.test_guarantee import Gated
from tests.hub.test_server_joins import joining_hub, since_join_reading_history, until
from tests.hub.wire import WireClient, expect_nothing
from tests.server.test_bounds import narrow
from wirehub import Hub
from wirehub.brokers.redis import RedisBroker
from wirehub.client import Client, EventInfo, Gap
from wirehub.hub.peer import Peer


class Kicking(Flooding):
    """``Flooding`` with ``flood_kick``: publish in ``feed`` until events are dropped for
    the caller, then kick it from ``feed`` while it is still behind; returns the last offset."""

    def __init__(self) -> None:
        super().__init__()
        self.on("flood_kick")(self.flood_kick)

    async def flood_kick(self, peer: Peer) -> int:
        try:
            offset = await self.burst(16)
            while peer not in self.node.fanout.drops:
                offset = await self.burst(16)
            # No await since the check: it is still behind and the drops are still owed.
            await peer.leave("feed")  # the server's kick
            return offset
        finally:
            self.flooded.set()


async def test_a_kick_of_a_slow_consumer_tells_what_was_dropped_before_left() -> None:
    """Under ``drop``, a member kicked while events of the room are dropped for it gets a
    gap at the last dropped position before ``left``, never ``left`` after a silent hole."""
    hub = Kicking()
    async with serve(hub) as s, narrow(s, "/ws") as (reader, writer, _):
        receive = receiver(reader)
        offset = int((await receive())["rooms"]["feed"]["offset"])
        request = {"type": "emit", "event": "flood_kick", "id": 1}
        writer.write(frame(TEXT, json.dumps(request).encode()))  # then no reading for now
        last, left = None, False
        while last is None or not left:
            message = await receive()
            if message["type"] == "event":
                assert not left and message["offset"] == offset + 1, "a hole no gap announced"
                offset = message["offset"]
            elif message["type"] == "gap":
                assert not left and message["offset"] > offset
                offset = message["offset"]
            elif message["type"] == "left":
                assert message["room"] == "feed"
                left = True
            else:
                assert message["type"] == "ack" and message["id"] == 1, message
                last = message["data"]
        assert offset == last, f"left at {offset}, events went on to {last}: silent"


async def test_an_excluding_emit_racing_a_server_join_gives_joined_then_a_skip() -> None:
    """Events excluding a member, published all along while a handler joins it to the room:
    ``joined`` first, then a contiguous run of ``skip`` markers from its position."""
    hub = joining_hub()
    stop = asyncio.Event()
    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as client:

        async def publish() -> None:
            while not stop.is_set():
                await hub.to("game").emit("tick", 0, exclude=client.id)
                await asyncio.sleep(0)

        publisher = asyncio.create_task(publish())
        try:
            await asyncio.sleep(0.02 * UNIT)
            await client.send({"type": "emit", "event": "enter", "data": "game", "id": 1})
            seen = await until(client, "joined")
            assert [m["type"] for m in seen if m["type"] in ("event", "skip")] == []
            offset = seen[-1]["offset"]
            for _ in range(5):
                marker = (await until(client, "skip"))[-1]
                assert marker["offset"] == offset + 1, marker
                offset = marker["offset"]
        finally:
            stop.set()
            await publisher
        await client.request({"type": "ping"})  # reads what is queued: a quick close


async def test_a_server_join_during_the_clients_since_join_sends_each_position_once() -> None:
    """A handler joins the member while its own ``since`` join of that room waits for the
    subscription: every position after ``since`` comes once and in order, then the ack."""
    hub = joining_hub()
    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as client:
        first = await client.join("game")
        epoch, since = first["data"]["epoch"], first["data"]["offset"]
        await client.request({"type": "leave", "room": "game"})
        for n in range(3):
            await hub.to("game").emit("tick", n)
        await client.send({"type": "join", "room": "game",
                           "since": {"epoch": epoch, "offset": since}, "id": 40})  # fmt: skip
        await client.send({"type": "emit", "event": "enter", "data": "game", "id": 41})
        await hub.to("game").emit("tick", 3)
        seen = await until(client, "ack")
        while {m.get("id") for m in seen if m["type"] == "ack"} != {40, 41}:
            seen += await until(client, "ack")
        positions = [m["offset"] for m in seen if m["type"] in ("event", "skip")]
        assert positions == sorted(set(positions)), seen
        starts = [m["offset"] for m in seen if m["type"] == "joined"]
        ack = next(m for m in seen if m.get("id") == 40)
        if not starts:  # the client's join made it a member: the replay covers it all
            assert ack["data"]["recovered"] is True
            assert positions == list(range(since + 1, ack["data"]["offset"] + 1)), seen
        await expect_nothing(client)


async def test_an_excluded_member_behind_under_drop_then_kicked_gets_no_false_event() -> None:
    """Under ``drop``, exclusions of a member that is behind (its markers dropped) and then
    a kick: what it reads is in order, and nothing of the room follows ``left``."""
    hub = Flooding()

    @hub.on("flood_excluding")
    async def flood_excluding(peer: Peer, count: int) -> None:
        for n in range(count):
            await hub.to("feed").emit(
                "tick", {"pad": "x" * 4096}, exclude=peer.id if n % 2 else None
            )
            if n % 16 == 15:
                await asyncio.sleep(0)
        while not hub.stats["dropped"]:
            await hub.burst(16)
        hub.flooded.set()

    async with serve(hub) as s, narrow(s, "/ws") as (reader, writer, _):
        receive = receiver(reader)
        offset = int((await receive())["rooms"]["feed"]["offset"])
        request = {"type": "emit", "event": "flood_excluding", "data": 200, "id": 1}
        writer.write(frame(TEXT, json.dumps(request).encode()))
        await asyncio.wait_for(hub.flooded.wait(), 5 * UNIT)
        (peer,) = hub.peers.values()
        await peer.leave("feed")
        await hub.to("feed").emit("tick", "after")
        left = acked = False
        while not (left and acked):
            message = await receive()
            kind = message["type"]
            if kind in ("event", "skip", "gap"):
                assert not left, f"{kind} after left: {message}"
                assert message["offset"] > offset
                if kind != "gap":
                    assert message["offset"] == offset + 1, "a hole no gap announced"
                offset = message["offset"]
            elif kind == "left":
                left = True
            else:
                assert kind == "ack" and message["id"] == 1, message
                acked = True


async def kick_and_rejoin_during_replay(publish_between: bool) -> list[dict[str, Any]]:
    """A member's ``since`` join of ``r`` reads history; meanwhile the server kicks it and
    joins it again (and, ``publish_between``, publishes): all it gets up to the answer."""
    broker = Gated()
    hub = Hub(broker=broker)
    broker.subscribe_gate.set()
    async with (
        serve(hub) as s,
        await WireClient.open(s.ws("/ws")) as client,
        await WireClient.open(s.ws("/ws")) as other,
    ):
        await other.join("r")  # keeps the room subscribed across the kick
        epoch = (await client.join("r"))["data"]["epoch"]
        await hub.to("r").emit("e", 1)
        await client.recv()
        await since_join_reading_history(client, broker, epoch)
        peer = hub.peers[client.id]
        await peer.leave("r")
        await hub.to("r").emit("e", 2)  # while it is out of the room
        await peer.join("r")
        if publish_between:
            await hub.to("r").emit("e", 3)
        broker.history_gate.set()
        return await until(client, "ack")


def check_stream(seen: list[dict[str, Any]]) -> None:
    """Every event follows the position ``joined``/the previous event gave, none while out."""
    position: int | None = 0
    for m in seen:
        if m["type"] == "left":
            position = None
        elif m["type"] == "joined":
            position = m["offset"]
        elif m["type"] in ("event", "skip"):
            assert position is not None, f"{m} while not a member: {seen}"
            assert m["offset"] == position + 1, f"{m} after {position}: {seen}"
            position = m["offset"]


async def test_kick_and_server_rejoin_during_a_since_join_keep_the_stream_whole() -> None:
    """Kicked and joined again by the server while its ``since`` join reads history, with no
    event after the re-join: what follows ``joined`` follows its position."""
    seen = await kick_and_rejoin_during_replay(False)
    check_stream(seen)


async def test_kick_and_server_rejoin_with_events_during_a_since_join() -> None:
    """Kicked, joined again and sent an event while its ``since`` join reads history: what
    follows ``joined`` follows its position, once."""
    seen = await kick_and_rejoin_during_replay(True)
    check_stream(seen)


async def test_reconnect_with_last_peer_while_the_connect_handler_rejoins_the_room() -> None:
    """A ``connect`` handler joins ``game`` again on the reconnection while events, half of
    them excluding the client's peer, go on: the Python client gets each event it is owed
    once, in order, and no gap."""
    hub = Hub()
    hub.on("connect")(lambda peer: peer.join("game"))
    server = await Node(hub).start()
    got: list[int] = []
    gaps: list[Gap] = []
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(server.stop)
        client = await stack.enter_async_context(Client(server.url, reconnect=FAST))
        client.on("tick", got.append)
        client.on("gap", gaps.append)
        n = 0

        def peer() -> str | None:
            return client.welcome.peer if client.welcome else None

        async def publish(until: int) -> None:
            nonlocal n
            while n < until and not stop.is_set():
                n += 1
                await hub.to("game").emit("tick", n, exclude=peer() if n % 2 else None)
                await asyncio.sleep(0)

        await publish(10)
        await server.stop()
        await publish(20)  # while it is down: the odd ones exclude its old peer id
        restarted = asyncio.create_task(server.start())
        await publish(60)  # on across the reconnection and its re-join
        await restarted
        deadline = asyncio.get_running_loop().time() + UNIT
        while (not got or got[-1] < 60) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(TICK)
        assert not gaps, gaps
        assert got == sorted(set(got)), got  # once, in order
        assert set(range(2, 61, 2)) <= set(got), got  # every event it is owed


async def test_through_redis_joins_on_one_node_and_excluding_publishes_on_the_other(
    redis_url: str, prefix: str
) -> None:
    """Node A publishes all along, every other event excluding the client; node B joins it
    server-side, then kicks it: ``joined``, a contiguous run of events and skips, ``left``,
    then nothing of the room."""
    a, b = (joining_hub(broker=RedisBroker(redis_url, prefix=prefix)) for _ in range(2))
    stop = asyncio.Event()
    async with serve(a) as _, serve(b) as on_b, await WireClient.open(on_b.ws("/ws")) as client:

        async def publish() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                await a.to("game").emit("tick", n, exclude=client.id if n % 2 else None)

        publisher = asyncio.create_task(publish())
        try:
            await client.send({"type": "emit", "event": "enter", "data": "game", "id": 1})
            seen = await until(client, "joined")
            for _ in range(20):
                seen.append(await client.recv())
            await client.send({"type": "emit", "event": "kick", "data": "game", "id": 2})
            while seen[-1] != {"type": "ack", "id": 2, "data": None}:
                seen += await until(client, "ack")
        finally:
            stop.set()
            await publisher
        check_stream(seen)
        notices = [m["type"] for m in seen if m["type"] not in ("ack", "event", "skip")]
        assert notices == ["joined", "left"], seen
        assert {"event", "skip"} <= {m["type"] for m in seen}, seen
        await expect_nothing(client)


async def test_the_python_client_reports_the_drops_of_a_room_it_is_kicked_from() -> None:
    """Behind a paused proxy, the Python client is kicked from a room whose events were
    dropped for it: ``on("gap")`` reports them up to the last one before ``left`` fires."""
    hub = Kicking()
    log: list[EventInfo | Gap] = []
    left = asyncio.Event()
    async with serve(hub) as s:
        for listener in s.server._servers[0].sockets:  # small kernel buffers: drops come soon
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        with Proxy(s.port) as proxy:
            client = Client(f"ws://127.0.0.1:{proxy.port}/ws", call_timeout=10 * UNIT)
            client.on("tick", lambda data, info: log.append(info))
            client.on("gap", log.append)
            client.on("left", lambda room: left.set())
            async with client:
                assert client.welcome is not None
                start = client.welcome.rooms["feed"].offset
                proxy.pause()
                try:
                    call = asyncio.ensure_future(client.call("flood_kick"))
                    await asyncio.wait_for(hub.flooded.wait(), 10 * UNIT)
                finally:
                    proxy.resume()
                last = await asyncio.wait_for(call, 5 * UNIT)
                await asyncio.wait_for(left.wait(), 5 * UNIT)
                assert any(isinstance(entry, Gap) for entry in log), log
                assert continuous(log, start) == last, "kicked past a silent hole"
                assert client.rooms == set()
