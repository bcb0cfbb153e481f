"""``slow_consumer="drop"``: what is dropped for a client that is behind is announced.

Room events dropped for it are followed by a ``gap`` notice at the last
dropped position once it takes messages again, before any later event of the
room (also when no later event comes); its own acks are never dropped.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from tests.chaos.proxy import Proxy
from tests.conftest import TEXT, UNIT, frame, read_frame, read_response, serve, upgrade_request
from tests.frameworks.hosts import uvicorn
from tests.hub.fallback_wire import PING, PollClient, decode, records
from tests.hub.test_slow_consumers import _limits
from tests.server.test_bounds import narrow
from wirehub import Hub, Timeouts, connect
from wirehub.client import Client, EventInfo, Gap
from wirehub.hub.peer import Peer

KiB = 1024
SIZE = 4 * KiB
COUNT = 300  # events published while the client does not read: far past max_buffered


class Flooding(Hub):
    """A hub dropping for slow consumers (64 KiB) whose members are in room ``feed``;
    ``flood`` publishes ``count`` events there (``until_dropped``: and on until some
    were dropped, then ``count`` more), sets ``flooded`` and returns the last offset."""

    def __init__(self, **timeouts: float) -> None:
        super().__init__(
            compression=False,
            limits=_limits(64 * KiB),
            timeouts=Timeouts(close=UNIT / 2, **timeouts),
            slow_consumer="drop",
        )
        self.flooded = asyncio.Event()
        self.on("connect")(self.enter)
        self.on("flood")(self.flood)
        self.on("flooded")(self.wait_flooded)

    async def enter(self, peer: Peer) -> None:
        await peer.join("feed")

    async def flood(self, peer: Peer, order: dict[str, Any]) -> int:
        offset = await self.burst(int(order["count"]))
        if order.get("until_dropped"):
            while not self.stats["dropped"]:
                offset = await self.burst(16)
            offset = await self.burst(int(order["count"]))
        self.flooded.set()
        return offset

    async def wait_flooded(self, peer: Peer) -> bool:
        await self.flooded.wait()
        return True

    async def burst(self, count: int) -> int:
        """Publish ``count`` events, letting the transport write (and pause) every 16."""
        offset = -1
        for n in range(count):
            position = await self.to("feed").emit("tick", {"n": n, "pad": "x" * SIZE})
            assert position is not None
            offset = position.offset
            if n % 16 == 15:
                await asyncio.sleep(0)
        return offset


async def test_dropped_events_are_announced_before_later_ones_and_acks_arrive() -> None:
    """A client that stops reading while 300 events are published gets, once it reads again,
    every event it is sent in order, a gap at the last dropped position (the tail, with
    no event after it), its call's ack; the next event follows the gap."""
    hub = Flooding()
    async with serve(hub) as s, narrow(s, "/ws") as (reader, writer, _):
        receive = receiver(reader)
        welcome = await receive()
        offset = int(welcome["rooms"]["feed"]["offset"])
        request = {"type": "emit", "event": "flood", "data": {"count": COUNT}, "id": 1}
        writer.write(frame(TEXT, json.dumps(request).encode()))  # then no reading until flooded
        await asyncio.wait_for(hub.flooded.wait(), 5 * UNIT)
        assert hub.stats["dropped"] > 0
        await read_to_the_end(receive, offset, None)
        await hub.to("feed").emit("tick", {"n": "after"})
        message = await receive()
        assert message["type"] == "event" and message["data"] == {"n": "after"}


UNDER_UVICORN = Flooding()
"""``uvicorn tests.hub.test_dropping:UNDER_UVICORN``: the hub as the whole ASGI application."""


async def test_under_uvicorn_the_asgi_transport_tells_too() -> None:
    """Under uvicorn (the ASGI transport), a client that stops reading while 300 events are
    published also gets the events it is sent in order, then a gap at the dropped tail."""
    async with uvicorn("tests.hub.test_dropping:UNDER_UVICORN") as host:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # not reading shows soon
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", host.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            writer.write(upgrade_request("/ws"))
            assert (await read_response(reader, head_only=True)).status == 101
            receive = receiver(reader)
            offset = int((await receive())["rooms"]["feed"]["offset"])
            # More than the kernel's autotuned buffers hold (the listener's are not narrowed).
            request = {"type": "emit", "event": "flood", "data": {"count": 2000}, "id": 1}
            writer.write(frame(TEXT, json.dumps(request).encode()))  # then no reading for now
            async with connect(host.ws("/ws")) as other:
                assert await other.call("flooded", timeout=20 * UNIT)
            await read_to_the_end(receive, offset, None, 2000)
        finally:
            writer.close()


def receiver(reader: asyncio.StreamReader) -> Callable[[], Awaitable[dict[str, Any]]]:
    """Read the server's next message (a text frame, JSON) from ``reader``."""

    async def receive() -> dict[str, Any]:
        opcode, payload = await asyncio.wait_for(read_frame(reader), 5 * UNIT)
        assert opcode == TEXT, f"not a text frame: {opcode} {payload[:80]!r}"
        message: dict[str, Any] = json.loads(payload)
        return message

    return receive


async def read_to_the_end(
    receive: Callable[[], Awaitable[dict[str, Any]]],
    offset: int,
    last: int | None,
    published: int = COUNT,
) -> None:
    """Read room ``feed`` from ``offset`` until ``last`` (None: the ack of request 1 says
    it): each event must follow the position, each gap (reason ``slow_consumer``) move it
    on; the tail must have been dropped, and told."""
    gaps, events = [], 0
    while last is None or offset != last:
        message = await receive()
        if message["type"] == "event":
            assert message["offset"] == offset + 1, "an event past a hole no gap announced"
            offset, events = message["offset"], events + 1
        elif message["type"] == "gap":
            assert message["room"] == "feed" and message["reason"] == "slow_consumer"
            assert message["offset"] > offset
            offset = message["offset"]
            gaps.append(offset)
        else:
            assert message == {"type": "ack", "id": 1, "data": message["data"]}
            last = message["data"]
    assert gaps and gaps[-1] == last and events < published


async def test_a_fallback_session_that_stops_polling_is_told_too() -> None:
    """An HTTP fallback session that does not poll while 300 events are published: its
    polls then bring the events it was sent, in order, and a gap at the dropped tail."""
    hub = Flooding(poll=UNIT)
    async with serve(hub) as s, await PollClient.open(f"http://127.0.0.1:{s.port}/ws") as client:
        assert client._receiving is not None
        client._receiving.cancel()  # poll by hand, later
        last = await hub.flood(None, {"count": COUNT})  # type: ignore[arg-type]
        assert hub.stats["dropped"] > 0
        pending: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            async with asyncio.timeout(5 * UNIT):
                while not pending:
                    async with await client.poll(client.ack) as response:
                        for opcode, payload in records(await response.read()):
                            if opcode != PING:
                                client.ack += 1
                                pending.append(decode(opcode, payload))
            return pending.pop(0)

        await read_to_the_end(receive, client.welcome["rooms"]["feed"]["offset"], last)


async def test_the_python_client_reports_the_gap_and_gets_its_acks() -> None:
    """Behind a proxy that stops reading, the Python client's call that floods its room is
    answered, and once it reads again ``client.on("gap")`` reports the dropped tail before
    the room's next event."""
    hub = Flooding()
    log: list[EventInfo | Gap] = []
    told = asyncio.Event()
    async with serve(hub) as s:
        for listener in s.server._servers[0].sockets:  # small kernel buffers: drops come soon
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        with Proxy(s.port) as proxy:
            client = Client(f"ws://127.0.0.1:{proxy.port}/ws", call_timeout=10 * UNIT)
            client.on("tick", lambda data, info: (log.append(info), told.set()))
            client.on("gap", lambda gap: (log.append(gap), told.set()))
            async with client:
                assert client.welcome is not None
                start = client.welcome.rooms["feed"].offset
                proxy.pause()
                try:
                    call = asyncio.ensure_future(
                        client.call("flood", {"count": 50, "until_dropped": True})
                    )
                    await asyncio.wait_for(hub.flooded.wait(), 10 * UNIT)
                finally:
                    proxy.resume()
                last = await asyncio.wait_for(call, 5 * UNIT)
                # Drops may come in bouts: events still arrive after an early gap. Wait
                # until the position reached is the call's last offset, then check the tail.
                async with asyncio.timeout(5 * UNIT):
                    while continuous(log, start) != last:
                        told.clear()
                        await told.wait()
                assert isinstance(log[-1], Gap)  # the tail came as a gap, not as events
                gap = log[-1]
                await hub.to("feed").emit("tick", {"n": "after"})
                async with asyncio.timeout(5 * UNIT):
                    while log[-1] is gap:
                        await asyncio.sleep(0.01)
                after = log[-1]
                assert isinstance(after, EventInfo) and after.offset == last + 1


def continuous(log: list[EventInfo | Gap], start: int) -> int:
    """Check that each event follows the position by one and each gap starts at it and
    moves it on (drops may come in several bouts); return the position reached."""
    position = start
    for entry in log:
        if isinstance(entry, Gap):
            assert entry.room == "feed" and entry.last is not None and entry.position is not None
            assert entry.last.offset == position < entry.position.offset
            position = entry.position.offset
        else:
            assert entry.offset == position + 1, f"{entry.offset} after {position}, no gap"
            position = entry.offset
    return position
