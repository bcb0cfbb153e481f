"""The node side of the delivery guarantee, end to end over real sockets.

Joins racing their room's subscription or history read, the connect
handler's joins and emits, and a broker that cannot take a publication.
The brokers here are the real ``MemoryBroker`` (its subscribe or history
held at a gate, to make the race happen every time) and a ``RedisBroker``
pointed at a closed port.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import UNIT, serve
from tests.hub.wire import WireClient, expect_nothing
from tests.services import free_port
from wirehub import Hub, Peer, Request
from wirehub.brokers.base import History
from wirehub.brokers.memory import MemoryBroker
from wirehub.brokers.redis import RedisBroker
from wirehub.protocol.messages import Position


class Gated(MemoryBroker):
    """A MemoryBroker whose ``subscribe`` and ``history`` wait at gates the test opens."""

    def __init__(self) -> None:
        super().__init__()
        self.subscribing = asyncio.Event()
        self.reading = asyncio.Event()
        self.subscribe_gate = asyncio.Event()
        self.history_gate = asyncio.Event()
        self.history_gate.set()
        self.fail_subscribe = False

    async def subscribe(self, room: str) -> None:
        if room != "r":  # the hub's own channels subscribe at start
            return await super().subscribe(room)
        self.subscribing.set()
        await self.subscribe_gate.wait()
        if self.fail_subscribe:
            from wirehub.exceptions import Unavailable

            raise Unavailable("the test refused the subscription")
        await super().subscribe(room)

    async def history(self, room: str, since: Position | None, limit: int) -> History:
        if limit and room == "r":  # a replay, not the subscription's position
            self.reading.set()
            await self.history_gate.wait()
        return await super().history(room, since, limit)


async def events(client: WireClient, n: int) -> list[dict[str, Any]]:
    return [await client.recv() for _ in range(n)]


async def test_every_joiner_waits_for_the_rooms_subscription() -> None:
    """Two members joining while the first SUBSCRIBE is in flight both see offset 1."""
    broker = Gated()
    hub = Hub(broker=broker)
    async with (
        serve(hub) as s,
        await WireClient.open(s.ws("/ws")) as a,
        await WireClient.open(s.ws("/ws")) as b,
    ):
        joins = [asyncio.ensure_future(c.join("r")) for c in (a, b)]
        await asyncio.wait_for(broker.subscribing.wait(), UNIT)
        await asyncio.sleep(0.05 * UNIT)  # both joins are waiting now
        assert not any(j.done() for j in joins)
        broker.subscribe_gate.set()
        acks = [(await j)["data"] for j in joins]
        assert [ack["offset"] for ack in acks] == [0, 0]
        await hub.to("r").emit("e", 1)
        for client in (a, b):
            event = await client.recv()
            assert (event["offset"], event["data"]) == (1, 1)


async def test_a_subscription_that_fails_fails_the_join_retryably() -> None:
    """No silent success: the join answers ``unavailable``; a retry then succeeds."""
    broker = Gated()
    broker.fail_subscribe = True
    broker.subscribe_gate.set()
    hub = Hub(broker=broker)
    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as a:
        refused = await a.request({"type": "join", "room": "r"})
        assert (refused["type"], refused["code"]) == ("error", "unavailable")
        assert "r" not in hub.rooms
        broker.fail_subscribe = False
        assert (await a.join("r"))["data"]["offset"] == 0
        assert set(hub.rooms) == {"r"}


async def test_a_join_replaying_history_never_repeats_or_skips_a_position() -> None:
    """Live events published while a ``since`` join reads history reach the joiner once,
    in order, after the replay; the ack is the position the next live event follows."""
    broker = Gated()
    broker.subscribe_gate.set()
    hub = Hub(broker=broker)
    async with (
        serve(hub) as s,
        await WireClient.open(s.ws("/ws")) as member,
        await WireClient.open(s.ws("/ws")) as joiner,
    ):
        first = (await member.join("r"))["data"]
        for n in range(1, 4):
            await hub.to("r").emit("e", n)
        broker.history_gate.clear()
        await joiner.send({"type": "join", "room": "r", "id": 1, "since": {**first, "offset": 1}})
        await asyncio.wait_for(broker.reading.wait(), UNIT)
        for n in range(4, 7):  # live while the joiner's history read waits
            await hub.to("r").emit("e", n)
        broker.history_gate.set()
        got = await events(joiner, 6)
        await hub.to("r").emit("e", 7)
        got += await events(joiner, 1)
        assert [m.get("offset") for m in got] == [2, 3, 4, 5, 6, None, 7]
        ack = got[5]
        assert ack["type"] == "ack" and ack["data"]["recovered"] is True
        assert ack["data"]["offset"] == 6  # what the next live event follows
        await expect_nothing(joiner)


def connect_hub(broker: Any = None) -> Hub:
    hub = Hub(broker=broker)

    @hub.on("connect")
    async def connect(peer: Peer, request: Request) -> None:
        await peer.emit("hello", "before the welcome")
        await peer.join("r")
        await hub.to("r").emit("e", "in connect")  # reaches this peer too: after its welcome
        await asyncio.sleep(0.05 * UNIT)

    return hub


async def test_nothing_reaches_a_client_before_its_welcome() -> None:
    """The connect handler's direct emit and room events wait for the welcome, and the
    welcome's room position is the one the room's next event follows."""
    hub = connect_hub()
    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as other:
        await other.join("r")
        opening = asyncio.ensure_future(WireClient.open(s.ws("/ws")))
        await asyncio.sleep(0.02 * UNIT)
        await hub.to("r").emit("e", "while connecting")
        async with await opening as client:
            start = client.welcome["rooms"]["r"]["offset"]
            got = await events(client, 3)
            assert got[0] == {"type": "event", "event": "hello", "data": "before the welcome"}
            assert [m["offset"] for m in got[1:]] == [start + 1, start + 2]
            await expect_nothing(client)


async def test_a_broker_that_cannot_publish_fails_the_emit_and_delivers_nothing() -> None:
    """A handler's emit raises Unavailable: the caller's call gets ``unavailable``, nobody
    gets the event without a position."""
    broker = RedisBroker(f"redis://127.0.0.1:{free_port()}/0", reconnect=(5.0, 5.0))
    hub = Hub(broker=broker)

    @hub.on("say")
    async def say(peer: Peer, data: Any) -> None:
        await hub.emit("said", data)

    async with serve(hub) as s, await WireClient.open(s.ws("/ws")) as client:
        refused = await client.call("say", "hi")
        assert (refused["type"], refused["code"]) == ("error", "unavailable")
        await expect_nothing(client)
