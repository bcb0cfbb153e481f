"""The Python client's gaps against a real hub: notices, recovery, exclusions, early events.

Every gap source a hub produces is provoked on the real path: a broker that
loses live deliveries (kept in its history, like a node that missed a
publication: the node fills the hole, or announces it with a ``gap``
notice), a reconnection whose missed events are gone, and a notice sent by
a handler. Each test checks that the gap is reported before any later
event of its room. (The client's own checks of skipped offsets and epochs,
which a hub's node never lets through, are in test_stream_checks.py.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import websockets.asyncio.server

from tests.client.conftest import FAST, Inbox, Node
from tests.conftest import UNIT, serve
from wirehub import Hub, MemoryBroker
from wirehub.brokers.base import BrokerListener, Publication
from wirehub.client import Client, Gap, connect
from wirehub.hub.peer import Peer
from wirehub.protocol import messages as wire
from wirehub.protocol.messages import Position


class LossyBroker(MemoryBroker):
    """Keeps every room event in history but loses the live delivery of the next ``lose``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lose = 0

    async def start(self, listener: BrokerListener) -> None:
        await super().start(_Lossy(self, listener))


class _Lossy:
    def __init__(self, broker: LossyBroker, listener: BrokerListener) -> None:
        self.broker = broker
        self.listener = listener

    def deliver(self, publication: Publication) -> None:
        if self.broker.lose and publication.numbered:
            self.broker.lose -= 1
            return
        self.listener.deliver(publication)


class Log:
    """What the client's handlers saw, in order: ``("said", data)`` and ``("gap", Gap)``."""

    def __init__(self, client: Client) -> None:
        self.seen: list[tuple[str, Any]] = []
        self.gaps = Inbox()
        client.on("said", lambda data: self.seen.append(("said", data)))
        client.on("gap", self._gap)

    def _gap(self, gap: Gap) -> None:
        self.seen.append(("gap", gap))
        self.gaps.put(gap)

    def said(self) -> list[Any]:
        return [data for kind, data in self.seen if kind == "said"]


def room_hub(broker: MemoryBroker) -> Hub:
    hub = Hub(broker=broker)

    @hub.on("notice")
    async def notice(peer: Peer, data: dict[str, Any]) -> None:
        # A gap notice as the hub sends it (TEAM.md decision 1).
        gap = wire.Gap(data["room"], data["epoch"], data["offset"], "test notice")
        peer.send(wire.encode(gap), True)

    return hub


async def settle(client: Client) -> None:
    """Wait until what the server sent before now was handled (a ping's answer comes after)."""
    await client.ping()


async def test_lost_deliveries_still_kept_are_filled_without_a_gap() -> None:
    """Events the node missed (still in history) are filled by it: in order, once, no gap."""
    broker = LossyBroker()
    hub = room_hub(broker)
    async with serve(hub) as served, connect(served.ws("/ws")) as client:
        log = Log(client)
        await client.join("news")
        await hub.to("news").emit("said", 1)
        broker.lose = 2
        for n in (2, 3, 4, 5):
            await hub.to("news").emit("said", n)
        await settle(client)
        assert log.seen == [("said", n) for n in (1, 2, 3, 4, 5)]


async def test_lost_deliveries_no_longer_kept_are_a_gap_before_later_events() -> None:
    """Lost events no longer kept: the node's notice is a gap before the events after it."""
    broker = LossyBroker(history_size=2)
    hub = room_hub(broker)
    async with serve(hub) as served, connect(served.ws("/ws")) as client:
        log = Log(client)
        epoch = (await client.join("news"))["epoch"]
        await hub.to("news").emit("said", 1)
        broker.lose = 3
        for n in (2, 3, 4, 5):
            await hub.to("news").emit("said", n)
        gap = await log.gaps.get()  # 2, 3, 4 are lost; 5 was delivered live
        # The hub's node notices the jump first (hub/stream.py) and sends the notice.
        assert gap == Gap("news", "server", Position(epoch, 1), Position(epoch, 4), "evicted")
        await hub.to("news").emit("said", 6)
        await settle(client)
        assert log.seen == [("said", 1), ("gap", gap), ("said", 5), ("said", 6)]


async def test_a_server_gap_notice_is_reported_in_order() -> None:
    """A ``gap`` notice is reported where it arrives; the stream goes on after its position."""
    hub = room_hub(MemoryBroker())
    async with serve(hub) as served, connect(served.ws("/ws")) as client:
        log = Log(client)
        epoch = (await client.join("news"))["epoch"]
        await hub.to("news").emit("said", 1)
        await settle(client)
        await client.emit("notice", {"room": "news", "epoch": epoch, "offset": 3})
        gap = await log.gaps.get()
        assert gap == Gap("news", "server", Position(epoch, 1), Position(epoch, 3), "test notice")
        for n in (2, 3, 4):  # 2 and 3 are covered by the notice: this client is past them
            await hub.to("news").emit("said", n)
        await settle(client)
        assert log.seen == [("said", 1), ("gap", gap), ("said", 4)]


async def test_a_reconnection_that_cannot_recover_reports_a_gap(node: Any) -> None:
    """History gone while away: ``reconnect`` says so, and a ``recovery`` gap comes first."""
    hub = room_hub(MemoryBroker(history_size=2))
    server: Node = await node(hub)
    async with Client(server.url, reconnect=FAST) as client:
        log = Log(client)
        reconnected = Inbox()
        client.on("reconnect", reconnected.put)
        epoch = (await client.join("news"))["epoch"]
        await server.stop()
        for n in range(5):
            await hub.to("news").emit("said", n)
        await server.start()
        assert (await reconnected.get()).gaps == ["news"]
        gap = await log.gaps.get()
        assert gap == Gap("news", "recovery", Position(epoch, 0), Position(epoch, 5))
        await hub.to("news").emit("said", "live")
        await settle(client)
        assert log.seen == [("gap", gap), ("said", "live")]


class Recoveries(MemoryBroker):
    """Counts the history reads of joins with ``since`` (re-joins), beside the room's start."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reads = 0

    async def history(self, room: str, since: Position | None, limit: int) -> Any:
        self.reads += since is not None
        return await super().history(room, since, limit)


def shouting_hub(broker: MemoryBroker) -> Hub:
    """``room_hub`` with ``shout``: an event to ``news`` for everyone but the caller."""
    hub = room_hub(broker)

    @hub.on("shout")
    async def shout(peer: Peer, text: str) -> None:
        await hub.to("news").emit("said", text, exclude=peer)

    return hub


async def test_an_excluded_event_is_a_skip_for_its_sender_even_without_history() -> None:
    """The sender's ``skip`` moves its position: no re-join, no history read, and no false
    gap with ``history_size=0`` (where a re-join could not recover)."""
    broker = Recoveries(history_size=0)
    hub = shouting_hub(broker)
    async with serve(hub) as served, connect(served.ws("/ws")) as client:
        log = Log(client)
        offsets = Inbox()
        client.on("said", lambda data, info: offsets.put(info.offset))
        await client.join("news")
        for n in range(3):
            await client.call("shout", f"mine {n}")
            await hub.to("news").emit("said", f"theirs {n}")
            assert await offsets.get() == 2 * n + 2
        await settle(client)
        assert log.seen == [("said", f"theirs {n}") for n in range(3)]
        assert broker.reads == 0


async def test_a_reconnection_replays_the_old_peers_exclusions_as_skips(node: Any) -> None:
    """An event that excluded the lost connection's peer is a ``skip`` in the re-join's
    replay (the client names that peer in ``last_peer``): not delivered, not a gap."""
    hub = shouting_hub(MemoryBroker())
    server: Node = await node(hub)
    async with Client(server.url, reconnect=FAST) as client:
        log = Log(client)
        reconnected = Inbox()
        client.on("reconnect", reconnected.put)
        await client.join("news")
        assert client.welcome is not None
        old = client.welcome.peer
        await server.stop()
        await hub.to("news").emit("said", "to the others", exclude=old)
        await hub.to("news").emit("said", "to all")
        await server.start()
        assert (await reconnected.get()).recovered == {"news": True}
        await settle(client)
        assert log.seen == [("said", "to all")]


async def test_events_sent_before_the_welcome_are_handled_after_it() -> None:
    """A server that emits before ``welcome`` is still a wirehub server: nothing is lost."""

    async def early(ws: Any) -> None:
        await ws.send('{"type":"event","event":"said","data":"early"}')
        await ws.send('{"type":"presence","room":"news","joined":{"id":"x","info":{}}}')
        await ws.send(wire.encode(wire.Welcome(1, "p", None, {}, {})).decode())
        await ws.wait_closed()

    async with websockets.asyncio.server.serve(early, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = Client(f"ws://127.0.0.1:{port}", reconnect=False)
        seen: list[Any] = []
        client.on("connect", lambda: seen.append("connect"))
        client.on("said", seen.append)
        client.on("presence", lambda change: seen.append(change.room))
        await asyncio.wait_for(client.connect(), UNIT)
        await client.close()
    assert seen == ["connect", "early", "news"]


async def test_an_emit_in_the_connect_handler_reaches_the_client() -> None:
    """``await peer.emit(...)`` in ``connect`` (the Flask-SocketIO habit) works with the client."""
    hub = Hub()

    @hub.on("connect")
    async def hello(peer: Peer) -> None:
        await peer.emit("said", "hello")

    async with serve(hub) as served:
        client = Client(served.ws("/ws"))
        inbox = Inbox()
        client.on("said", inbox.put)
        async with client:
            assert await inbox.get() == "hello"
