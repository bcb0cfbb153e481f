"""Server-side joins and leaves after the welcome are told to the client (``joined``/``left``).

Over real sockets, with the independent wire client (and the HTTP
fallback's): the ``joined`` message comes before any event of the room,
even while events are published at the same moment, on one node and through
Redis across two (with presence, whose Redis round trips follow the
membership); the ``left`` message comes after the last one; a join of a
room the peer is already in says nothing; a kick while the client's own
join replays history fails that join (the client is not left believing it
is a member).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import UNIT, serve
from tests.hub.fallback_wire import PollClient
from tests.hub.test_guarantee import Gated
from tests.hub.wire import Requests, WireClient, expect_nothing
from wirehub import Hub, Peer
from wirehub.brokers.redis import RedisBroker


def joining_hub(**options: Any) -> Hub:
    return with_joins(Hub(**options))


def with_joins(hub: Hub) -> Hub:
    """Give ``hub`` ``enter``/``kick``: they join and leave the caller to/from the room it
    names, server-side (Flask-SocketIO's ``join_room``, a kick)."""

    @hub.on("enter")
    async def enter(peer: Peer, room: str) -> None:
        await peer.join(room)

    @hub.on("kick")
    async def kick(peer: Peer, room: str) -> None:
        await peer.leave(room)

    return hub


async def since_join_reading_history(client: WireClient, broker: Gated, epoch: int) -> None:
    """Send ``client``'s join of ``r`` with ``since`` (id 50) and wait until ``broker``
    holds its history read (the replay waits for ``broker.history_gate``)."""
    broker.history_gate.clear()
    broker.reading.clear()
    since = {"epoch": epoch, "offset": 0}
    await client.send({"type": "join", "room": "r", "since": since, "id": 50})
    await asyncio.wait_for(broker.reading.wait(), UNIT)


async def until(client: Requests, kind: str) -> list[dict[str, Any]]:
    """Messages up to and including the first of type ``kind`` (within ``UNIT``, even while
    events keep coming)."""
    # A deadline, not asyncio.timeout: 3.11's wait_for (in recv) can swallow the
    # cancellation when a message is always ready.
    deadline = asyncio.get_running_loop().time() + UNIT
    seen = [await client.recv()]
    while seen[-1]["type"] != kind:
        assert asyncio.get_running_loop().time() < deadline, f"no {kind!r} in {len(seen)}"
        seen.append(await client.recv())
    return seen


@pytest.mark.parametrize("presence", [False, True])
async def test_joined_comes_before_the_rooms_events_while_they_are_published(
    presence: bool,
) -> None:
    """With events published all along, ``joined`` precedes the room's first event, which
    follows its position (with presence too)."""
    hub = joining_hub(presence=presence)
    stop = asyncio.Event()

    async def publish() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            await hub.to("game").emit("tick", n)
            await asyncio.sleep(0)

    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as client:
        publisher = asyncio.create_task(publish())
        try:
            await asyncio.sleep(0.02 * UNIT)  # the room has a history by now
            await client.send({"type": "emit", "event": "enter", "data": "game", "id": 1})
            seen = await until(client, "joined")
            assert not [m for m in seen if m["type"] == "event"], seen
            joined = seen[-1]
            assert joined["offset"] > 0, joined
            first = await until(client, "event")
        finally:
            stop.set()
            await publisher
        event = first[-1]
        assert (event["epoch"], event["offset"]) == (joined["epoch"], joined["offset"] + 1)


async def test_a_kick_is_told_after_the_events_before_it() -> None:
    """The wire order: event 1, ``left``, then the kick's ack; event 2 never comes."""
    hub = joining_hub()
    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as client:
        await client.join("lobby")
        await hub.to("lobby").emit("said", 1)
        await client.send({"type": "emit", "event": "kick", "data": "lobby", "id": 7})
        seen = await until(client, "ack")
        assert [(m["type"], m.get("data")) for m in seen] == [
            ("event", 1),
            ("left", None),
            ("ack", None),
        ]
        assert seen[1] == {"type": "left", "room": "lobby"}
        await hub.to("lobby").emit("said", 2)
        await expect_nothing(client)


async def test_a_server_join_of_a_room_already_joined_says_nothing() -> None:
    """The client joined the room itself: the server's join of it sends no ``joined``."""
    hub = joining_hub()
    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as client:
        await client.join("lobby")
        assert (await client.call("enter", "lobby"))["type"] == "ack"
        await expect_nothing(client)


async def test_a_kick_while_the_clients_join_replays_fails_that_join() -> None:
    """A kick while a ``since`` join reads history: ``left``, then the join's error, no replay."""
    broker = Gated()
    hub = joining_hub(broker=broker)
    async with (
        serve(hub) as s,
        await WireClient.open(s.ws("/ws")) as client,
    ):
        broker.subscribe_gate.set()
        epoch = (await client.join("r"))["data"]["epoch"]
        await hub.to("r").emit("e", 1)
        await client.recv()
        await since_join_reading_history(client, broker, epoch)
        (peer,) = hub.peers.values()
        await peer.leave("r")  # the server's kick, as a handler would
        broker.history_gate.set()
        seen = await until(client, "error")
        assert [m["type"] for m in seen] == ["left", "error"]
        assert "r" not in hub.rooms
        await hub.to("r").emit("e", 2)
        await expect_nothing(client)


async def test_through_redis_joined_comes_first_and_the_room_is_recovered_on_another_node(
    redis_url: str, prefix: str
) -> None:
    """Two nodes on one Redis: node A publishes all along while node B's handler joins the
    client; ``joined`` precedes the room's first event, which follows it (presence's Redis
    round trips come after the membership: a ``joined`` sent once the join returned would
    come too late); a re-join with that position on node A replays what came after it."""
    a, b = (
        joining_hub(broker=RedisBroker(redis_url, prefix=prefix), presence=True) for _ in range(2)
    )
    stop = asyncio.Event()
    published: list[Any] = []

    async def publish() -> None:
        while not stop.is_set():
            position = await a.to("game").emit("tick", len(published) + 1)
            published.append(position)

    async with serve(a) as on_a, serve(b) as on_b:
        async with await WireClient.open(on_b.ws("/ws")) as client:
            publisher = asyncio.create_task(publish())
            try:
                while len(published) < 3:
                    await asyncio.sleep(0.01 * UNIT)
                await client.send({"type": "emit", "event": "enter", "data": "game", "id": 1})
                seen = await until(client, "joined")
                assert not [m for m in seen if m["type"] == "event"], seen
                joined = seen[-1]
                event = (await until(client, "event"))[-1]
            finally:
                stop.set()
                await publisher
            assert (event["epoch"], event["offset"]) == (joined["epoch"], joined["offset"] + 1)
        async with await WireClient.open(on_a.ws("/ws")) as again:
            since = {"epoch": joined["epoch"], "offset": joined["offset"]}
            await again.send({"type": "join", "room": "game", "since": since, "id": 2})
            replay = await until(again, "ack")
            ack = replay.pop()
            assert ack["data"]["recovered"] is True
            assert [m["offset"] for m in replay] == list(
                range(joined["offset"] + 1, ack["data"]["offset"] + 1)
            )


async def test_joined_and_left_over_the_http_fallback() -> None:
    """A long-polling client gets ``joined``, the room's event after it, then ``left``."""
    hub = joining_hub()
    async with serve(hub) as s, await PollClient.open(f"{s.url}/ws") as client:
        await client.send({"type": "emit", "event": "enter", "data": "game", "id": 1})
        joined = (await until(client, "joined"))[-1]
        await hub.to("game").emit("said", 1)
        event = (await until(client, "event"))[-1]
        assert (event["offset"], event["data"]) == (joined["offset"] + 1, 1)
        await client.send({"type": "emit", "event": "kick", "data": "game", "id": 2})
        assert await until(client, "left") == [{"type": "left", "room": "game"}]
        assert (await client.recv())["id"] == 2  # the kick's ack
        await hub.to("game").emit("said", 2)
        await expect_nothing(client)  # type: ignore[arg-type]  # same interface
