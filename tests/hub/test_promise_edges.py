"""The promise where ``skip`` markers, server-side ``joined``/``left`` and ``drop`` gaps meet.

Over real sockets on 127.0.0.1: each test drives two of those changes at once
and checks that a member gets every event of its room once, in order, or a
notice that it may have missed some.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.conftest import TEXT, UNIT, frame, serve
from tests.hub.test_dropping import Flooding, receiver
from tests.hub.test_guarantee import Gated
from tests.hub.test_server_joins import joining_hub, until
from tests.hub.wire import WireClient, expect_nothing
from tests.server.test_bounds import narrow
from wirehub import Hub
from wirehub.hub.peer import Peer


async def test_a_kick_of_a_slow_consumer_tells_what_was_dropped_before_left() -> None:
    """Under ``drop``, a member kicked while events of the room are dropped for it gets a
    gap at the last dropped position before ``left``, never ``left`` after a silent hole."""
    hub = Flooding()

    @hub.on("flood_kick")
    async def flood_kick(peer: Peer) -> int:
        offset = await hub.burst(16)
        while peer not in hub.node.fanout.drops:
            offset = await hub.burst(16)
        offset = await hub.burst(3)  # no yield since the last drop: still behind, still owed
        assert peer in hub.node.fanout.drops
        await peer.leave("feed")  # the server's kick, while the client is behind
        return offset

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
        broker.history_gate.clear()
        broker.reading.clear()
        await client.send({"type": "join", "room": "r", "since": {"epoch": epoch, "offset": 0},
                           "id": 50})  # fmt: skip
        await asyncio.wait_for(broker.reading.wait(), UNIT)
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
