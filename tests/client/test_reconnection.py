"""Reconnection end to end: server restarts on the same port, recovery, final close codes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.client.conftest import FAST, Inbox, Node
from tests.conftest import TICK, UNIT
from wirehub import ConnectionClosed, Hub, MemoryBroker, Reject
from wirehub.client import Client, Reconnect, Reconnected, State
from wirehub.codes import with_retry_after
from wirehub.hub.peer import Peer


class CountingHub(Hub):
    """A Hub that counts connections, can refuse them, and has a ``kick`` event."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.connections = 0
        self.refuse_with: int | None = None
        self.release = asyncio.Event()

        @self.on("connect")
        def on_connect(peer: Peer) -> None:
            self.connections += 1
            if self.refuse_with is not None:
                raise Reject(code=self.refuse_with, reason="refused")

        @self.on("kick")
        async def kick(peer: Peer, code: int) -> None:
            await peer.close(code, "kicked")

        @self.on("slow")
        async def slow(peer: Peer) -> None:
            await self.release.wait()


def reconnecting(node: Node, **options: Any) -> Client:
    options.setdefault("reconnect", FAST)
    return Client(node.url, **options)


async def restart(node: Node, code: int | None = None) -> None:
    await node.stop(code)
    await node.start()


async def test_reconnects_after_a_restart_and_rejoins_rooms(node: Any) -> None:
    """After the server restarts on its port, the client reconnects, re-joins and hears the room."""
    hub = CountingHub()
    server: Node = await node(hub)
    async with reconnecting(server) as client:
        said, disconnected, reconnected = Inbox(), Inbox(), Inbox()
        client.on("said", said.put)
        client.on("disconnect", disconnected.put)
        client.on("reconnect", reconnected.put)
        await client.join("lobby")
        first_id = client.id
        await restart(server)
        assert (await disconnected.get()).code == 1001
        done: Reconnected = await reconnected.get()
        assert done.recovered == {"lobby": True} and done.gaps == []
        assert client.connected and client.id != first_id
        assert client.rooms == {"lobby"}
        await hub.to("lobby").emit("said", "welcome back")
        assert await said.get() == "welcome back"
        assert hub.connections == 2


async def test_events_missed_while_disconnected_are_recovered(node: Any) -> None:
    """Room events published while the client was away are replayed, in order, once."""
    hub = CountingHub()
    server: Node = await node(hub)
    async with reconnecting(server) as client:
        got: list[Any] = []
        client.on("said", got.append)
        reconnected = Inbox()
        client.on("reconnect", reconnected.put)
        await client.join("news")
        await hub.to("news").emit("said", 1)
        await client.ping()  # the event is delivered before the ping's answer
        await server.stop()
        for n in (2, 3, 4):
            await hub.to("news").emit("said", n)  # kept in the room's history
        await server.start()
        assert (await reconnected.get()).recovered == {"news": True}
        await hub.to("news").emit("said", 5)
        await client.ping()
        assert got == [1, 2, 3, 4, 5]


async def test_a_gap_is_reported_when_history_is_gone(node: Any) -> None:
    """When the missed events are no longer kept, ``reconnect`` reports recovered False."""
    hub = CountingHub(broker=MemoryBroker(history_size=2))
    server: Node = await node(hub)
    async with reconnecting(server) as client:
        got: list[Any] = []
        client.on("said", got.append)
        reconnected = Inbox()
        client.on("reconnect", reconnected.put)
        await client.join("news")
        await server.stop()
        for n in range(5):
            await hub.to("news").emit("said", n)
        await server.start()
        done = await reconnected.get()
        assert done.recovered == {"news": False} and done.gaps == ["news"]
        assert got == []
        await hub.to("news").emit("said", "live")
        await client.ping()
        assert got == ["live"]


async def test_a_new_hub_means_a_new_epoch_and_a_gap(node: Any) -> None:
    """A restarted in-memory hub lost the history: the rejoin says recovered False."""
    server: Node = await node(CountingHub())
    async with reconnecting(server) as client:
        reconnected = Inbox()
        client.on("reconnect", reconnected.put)
        epoch = (await client.join("news"))["epoch"]
        await server.stop()
        await server.start(CountingHub())
        assert (await reconnected.get()).recovered == {"news": False}
        assert (await client.join("news"))["epoch"] != epoch


@pytest.mark.parametrize("code", [1008, 4001, 4003, 1000])
async def test_no_reconnect_after_a_final_close_code(node: Any, code: int) -> None:
    """Closed by the server with a code that forbids it, the client stops for good."""
    hub = CountingHub()
    server: Node = await node(hub)
    client = reconnecting(server)
    await client.connect()
    await client.emit("kick", code)
    why = await asyncio.wait_for(client.wait_closed(), UNIT)
    assert (why.code, why.reason) == (code, "kicked")
    assert client.state is State.CLOSED
    assert hub.connections == 1
    with pytest.raises(ConnectionClosed):
        await client.emit("kick", code)


@pytest.mark.parametrize("code", [1011, 1012, 4008])
async def test_reconnect_after_a_retryable_close_code(node: Any, code: int) -> None:
    """Closed with a code that allows it, the client comes back."""
    hub = CountingHub()
    server: Node = await node(hub)
    async with reconnecting(server) as client:
        reconnected = Inbox()
        client.on("reconnect", reconnected.put)
        await client.emit("kick", code)
        assert (await reconnected.get()).attempts >= 1
        assert client.connected and hub.connections == 2


async def test_a_refusal_while_reconnecting_is_final(node: Any) -> None:
    """If the restarted server refuses the client with 4001, the client gives up."""
    hub = CountingHub()
    server: Node = await node(hub)
    client = reconnecting(server)
    await client.connect()
    hub.refuse_with = 4001
    await restart(server)
    why = await asyncio.wait_for(client.wait_closed(), UNIT)
    assert (why.code, why.reason) == (4001, "refused")
    assert hub.connections == 2


async def test_gives_up_after_max_attempts(node: Any) -> None:
    """With max_attempts, a server that stays down makes the client stop."""
    server: Node = await node(CountingHub())
    policy = Reconnect(initial_delay=0.001, max_delay=0.001, max_attempts=3)
    client = reconnecting(server, reconnect=policy)
    await client.connect()
    await server.stop()
    why = await asyncio.wait_for(client.wait_closed(), UNIT)
    assert why.code == 1006  # the last attempt: no server at all
    assert client.state is State.CLOSED


async def test_reconnect_false_never_reconnects(node: Any) -> None:
    """With reconnect=False, a lost connection is the end of the client."""
    hub = CountingHub()
    server: Node = await node(hub)
    client = reconnecting(server, reconnect=False)
    await client.connect()
    await restart(server)
    assert (await asyncio.wait_for(client.wait_closed(), UNIT)).code == 1001
    assert hub.connections == 1


async def test_pending_calls_fail_when_the_connection_drops(node: Any) -> None:
    """A call awaiting its answer raises ConnectionClosed when the connection closes."""
    hub = CountingHub()
    server: Node = await node(hub)
    async with reconnecting(server) as client:
        call = asyncio.ensure_future(client.call("slow"))
        await client.ping()  # the slow request is in
        try:
            await server.stop()
            with pytest.raises(ConnectionClosed) as raised:
                await asyncio.wait_for(call, UNIT)
            assert raised.value.code == 1001
        finally:
            hub.release.set()


async def test_close_while_reconnecting_stops_the_attempts(node: Any) -> None:
    """``close()`` during the backoff ends the client at once."""
    server: Node = await node(CountingHub())
    client = reconnecting(server, reconnect=Reconnect(initial_delay=60, max_delay=60))
    await client.connect()
    disconnected = Inbox()
    client.on("disconnect", disconnected.put)
    await server.stop()
    await disconnected.get()
    assert client.state is State.RECONNECTING
    await asyncio.wait_for(client.close(), UNIT)
    assert not client.connected
    assert (await client.wait_closed()).code == 1000


async def test_rooms_joined_by_the_connect_handler_are_recovered(node: Any) -> None:
    """Rooms the connect handler joins come in the welcome and are recovered after a restart."""
    hub = Hub()

    @hub.on("connect")
    async def on_connect(peer: Peer) -> None:
        await peer.join("news")

    server: Node = await node(hub)
    await hub.to("news").emit("said", "before anyone")
    async with reconnecting(server) as client:
        got: list[Any] = []
        client.on("said", got.append)
        reconnected = Inbox()
        client.on("reconnect", reconnected.put)
        assert client.welcome is not None
        assert client.welcome.rooms["news"].offset == 1
        assert client.rooms == {"news"}
        await server.stop()
        for n in range(3):
            await hub.to("news").emit("said", n)
        await server.start()
        done: Reconnected = await reconnected.get()
        assert done.recovered == {"news": True}
        assert got == [0, 1, 2]  # not the event from before the client came


async def test_first_attempt_waits_the_delay_the_close_asks(node: Any) -> None:
    """A close whose reason has retry_after is followed by an attempt after it, not the backoff."""
    hub = Hub()

    @hub.on("restart")
    async def restart_me(peer: Peer) -> None:
        await peer.close(1012, with_retry_after("server restarting", TICK))

    server: Node = await node(hub)
    patient = Reconnect(initial_delay=60 * UNIT, max_delay=60 * UNIT, jitter=0)
    async with reconnecting(server, reconnect=patient) as client:
        disconnected, reconnected = Inbox(), Inbox()
        client.on("disconnect", disconnected.put)
        client.on("reconnect", reconnected.put)
        await client.emit("restart")
        assert (await disconnected.get()).code == 1012
        done: Reconnected = await reconnected.get()  # within UNIT: not after 60 UNIT
        assert done.attempts == 1
