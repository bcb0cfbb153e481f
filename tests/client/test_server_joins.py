"""The Python client and the rooms a server joins it to or takes it out of (``joined``/``left``).

Against a real hub restarted on its port: a room the server joined the
client to from a handler is re-joined with ``since`` after the reconnection
(what was published meanwhile is recovered); a kicked room is forgotten —
not in ``rooms``, not re-joined, nothing of it replayed.
"""

from __future__ import annotations

from typing import Any

from tests.client.conftest import FAST, Inbox, Node
from wirehub import Hub, MemoryBroker, Peer
from wirehub.client import Client


def joining_hub() -> Hub:
    """``enter``/``kick`` join and leave the caller to/from the room it names, server-side."""
    hub = Hub(broker=MemoryBroker())

    @hub.on("enter")
    async def enter(peer: Peer, room: str) -> None:
        await peer.join(room)

    @hub.on("kick")
    async def kick(peer: Peer, room: str) -> None:
        await peer.leave(room)

    return hub


async def test_a_room_the_server_joined_is_recovered_after_a_reconnection(node: Any) -> None:
    """``enter`` joins ``game`` server-side; events published while the server was down
    arrive after the reconnection, in order, and ``reconnect`` says ``game`` recovered."""
    hub = joining_hub()
    server: Node = await node(hub)
    async with Client(server.url, reconnect=FAST) as client:
        said, joined, reconnected = Inbox(), Inbox(), Inbox()
        client.on("said", said.put)
        client.on("joined", joined.put)
        client.on("reconnect", reconnected.put)
        await client.call("enter", "game")
        assert await joined.get() == "game"
        assert client.rooms == {"game"}
        await hub.to("game").emit("said", 1)
        assert await said.get() == 1
        await server.stop()
        for n in (2, 3):
            await hub.to("game").emit("said", n)
        await server.start()
        assert (await reconnected.get()).recovered == {"game": True}
        assert [await said.get() for _ in range(2)] == [2, 3]
        await hub.to("game").emit("said", 4)
        assert await said.get() == 4
        assert joined.empty() and said.empty()


async def test_a_kicked_room_is_not_rejoined_and_nothing_is_replayed(node: Any) -> None:
    """After ``kick`` the room leaves ``rooms`` (``left`` is called); the reconnection does
    not re-join it, so what was published after the kick never arrives."""
    hub = joining_hub()
    server: Node = await node(hub)
    async with Client(server.url, reconnect=FAST) as client:
        said, left, reconnected = Inbox(), Inbox(), Inbox()
        client.on("said", said.put)
        client.on("left", left.put)
        client.on("reconnect", reconnected.put)
        await client.join("lobby")
        await client.join("other")
        await client.call("kick", "lobby")
        assert await left.get() == "lobby"
        assert client.rooms == {"other"}
        await hub.to("lobby").emit("said", "while kicked")
        await server.stop()
        await server.start()
        assert (await reconnected.get()).recovered == {"other": True}
        assert set(hub.rooms) == {"other"}
        await hub.to("other").emit("said", "after")
        assert await said.get() == "after"  # nothing of lobby came before it
        assert client.rooms == {"other"} and left.empty()
