"""The Python client and the rooms a server joins it to or takes it out of (``joined``/``left``).

Against a real hub restarted on its port: a room the server joined the
client to from a handler is re-joined with ``since`` after the reconnection
(what was published meanwhile is recovered); a kicked room is forgotten —
not in ``rooms``, not re-joined, nothing of it replayed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.client.conftest import FAST, Inbox, Node
from tests.conftest import UNIT, serve
from tests.hub.test_guarantee import Gated
from tests.hub.test_server_joins import with_joins
from wirehub import Hub, MemoryBroker
from wirehub.client import Client, connect


def joining_hub(broker: MemoryBroker | None = None) -> Hub:
    return with_joins(Hub(broker=broker or MemoryBroker()))


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


async def test_a_server_join_while_the_clients_own_join_is_in_flight() -> None:
    """``enter`` and the client's ``join`` of one room both wait for its subscription: the
    server's ``joined`` comes while the client's join is pending; the client ends in the
    room once, and its events arrive once, in order."""
    broker = Gated()
    hub = joining_hub(broker)
    async with serve(hub) as served, connect(served.ws("/ws")) as client:
        said, joined = Inbox(), Inbox()
        client.on("said", said.put)
        client.on("joined", joined.put)
        entering = asyncio.ensure_future(client.call("enter", "r"))
        await asyncio.wait_for(broker.subscribing.wait(), UNIT)
        joining = asyncio.ensure_future(client.join("r"))
        deadline = asyncio.get_running_loop().time() + UNIT
        while hub.rooms["r"].joining < 2:  # both wait for the subscription now
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.001)
        broker.subscribe_gate.set()
        await entering
        await joining
        assert await joined.get() == "r"
        assert client.rooms == {"r"}
        for n in (1, 2):
            await hub.to("r").emit("said", n)
        assert [await said.get() for _ in range(2)] == [1, 2]
        await client.ping()
        assert said.empty() and joined.empty()
