"""``skip``: a room event sent with ``exclude`` reaches its excluded member as a marker.

Over real sockets, with the independent wire client: live, held while a
join replays history (the race forced by a gated ``MemoryBroker``), in a
replay (for the peer itself and for the peer its reconnection names in
``last_peer``), before the welcome, and never for messages without a
position (volatile events, presence).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import UNIT, serve
from tests.hub.test_guarantee import Gated, events
from tests.hub.wire import WireClient, expect_nothing
from wirehub import Hub, Peer, Request
from wirehub.brokers.memory import MemoryBroker


def shouting_hub(broker: MemoryBroker | None = None, **options: Any) -> Hub:
    """A hub whose ``shout`` sends everyone in room ``r`` but the caller an ``e`` event."""
    hub = Hub(broker=broker, **options)

    @hub.on("shout")
    async def shout(peer: Peer, data: Any) -> int | None:
        position = await hub.to("r").emit("e", data, exclude=peer)
        return None if position is None else position.offset

    @hub.on("whisper")
    async def whisper(peer: Peer, data: Any) -> None:
        await hub.to("r").emit("e", data, exclude=peer, volatile=True)

    return hub


def skip(epoch: str, offset: int) -> dict[str, Any]:
    return {"type": "skip", "room": "r", "epoch": epoch, "offset": offset}


async def shout(client: WireClient, data: Any) -> list[dict[str, Any]]:
    """Call ``shout``; return what came before its ack (``request`` would drop it)."""
    await client.send({"type": "emit", "event": "shout", "data": data, "id": 1000})
    before = []
    while (message := await client.recv()).get("id") != 1000:
        before.append(message)
    return before


async def test_the_excluded_member_gets_a_skip_where_the_event_would_be() -> None:
    """The sender gets ``skip`` at the event's position, the others the event; both go on."""
    hub = shouting_hub(MemoryBroker(history_size=0))
    async with (
        serve(hub) as s,
        await WireClient.open(s.ws("/ws")) as sender,
        await WireClient.open(s.ws("/ws")) as other,
    ):
        epoch = (await sender.join("r"))["data"]["epoch"]
        await other.join("r")
        assert await shout(sender, "mine") == [skip(epoch, 1)]
        await hub.to("r").emit("e", "theirs")
        assert await sender.recv() == {
            "type": "event", "room": "r", "epoch": epoch, "offset": 2, "event": "e",
            "data": "theirs",
        }  # fmt: skip
        assert [(m["offset"], m["data"]) for m in await events(other, 2)] == [
            (1, "mine"),
            (2, "theirs"),
        ]
        await expect_nothing(sender)


async def test_messages_without_a_position_send_no_skip() -> None:
    """A volatile excluded event and a member's own presence reach it as nothing at all."""
    hub = shouting_hub(presence=True)
    async with (
        serve(hub) as s,
        await WireClient.open(s.ws("/ws")) as sender,
        await WireClient.open(s.ws("/ws")) as other,
    ):
        await other.join("r")
        await sender.join("r")  # its own "joined" is excluded
        await sender.call("whisper", "typing…")
        presence, whisper = await events(other, 2)
        assert presence["type"] == "presence" and whisper["data"] == "typing…"
        assert "offset" not in whisper
        await expect_nothing(sender)


async def test_a_replay_sends_the_skip_to_the_peer_and_to_its_reconnection() -> None:
    """A ``since`` join replays the excluded event as ``skip`` to the same peer and to a
    connection naming it in ``last_peer``; to any other, as the event."""
    hub = shouting_hub()
    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as sender:
        start = (await sender.join("r"))["data"]
        await shout(sender, "mine")
        await hub.to("r").emit("e", "theirs")
        await events(sender, 1)
        since = {"since": {"epoch": start["epoch"], "offset": 0}}
        again = await WireClient.open(s.ws(f"/ws?last_peer={sender.id}"))
        stranger = await WireClient.open(s.ws("/ws"))
        async with again, stranger:
            for client in (sender, again, stranger):
                await client.send({"type": "join", "room": "r", "id": 1, **since})
                got = await events(client, 3)
                assert got[2]["data"] == {"epoch": start["epoch"], "offset": 2, "recovered": True}
                assert got[1]["data"] == "theirs"
                first = got[0] if client is stranger else skip(start["epoch"], 1)
                assert got[0]["type"] == first["type"] and got[0]["offset"] == 1
                await expect_nothing(client)


async def test_a_skip_held_during_a_join_comes_in_order() -> None:
    """A joiner's live messages are held while it reads history: its ``skip`` among them
    comes after the replay, in position order, once, before the ack."""
    broker = Gated()
    broker.subscribe_gate.set()
    hub = shouting_hub(broker)
    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as sender:
        first = (await sender.join("r"))["data"]
        await hub.to("r").emit("e", 1)
        await events(sender, 1)
        broker.history_gate.clear()
        await sender.send({"type": "join", "room": "r", "id": 50, "since": {**first, "offset": 0}})
        await asyncio.wait_for(broker.reading.wait(), UNIT)
        assert await shout(sender, 2) == []  # its skip is held
        await hub.to("r").emit("e", 3)
        broker.history_gate.set()
        got = await events(sender, 4)
        assert [(m["type"], m.get("offset")) for m in got] == [
            ("event", 1),
            ("skip", 2),
            ("event", 3),
            ("ack", None),
        ]
        assert got[3]["data"]["offset"] == 3
        await expect_nothing(sender)


async def test_a_skip_waits_for_the_welcome() -> None:
    """An excluded emit in the connect handler, after joining: ``skip`` follows the welcome,
    at the position after the welcome's."""
    hub = Hub()

    @hub.on("connect")
    async def connect(peer: Peer, request: Request) -> None:
        await peer.join("r")
        await hub.to("r").emit("e", "hello, others", exclude=peer)

    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as client:
        start = client.welcome["rooms"]["r"]
        assert await client.recv() == skip(start["epoch"], start["offset"] + 1)
        await expect_nothing(client)
