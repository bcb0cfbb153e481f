"""Property test: a client that never reads, sending every kind of message, costs a bounded
buffer, and the other clients are served meanwhile.

Hypothesis draws how many of each message type (emits answered by acks,
errors and ``bad_message``, joins replaying history, leaves, application and
WebSocket pings, ``auth``, binary emits, a handler sending events with
``peer.emit``) a client sends, in what order and how big, over a socket
whose receive buffer is 4 KiB and which it never reads. Whatever it sends,
the server's unsent bytes for it stay within ``Limits.max_buffered`` plus
one message plus the pongs of one read, it either stops being read or is
closed as a slow consumer (4008) or has been answered in full, and a
bystander's ping is answered the whole time.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import BINARY, PING, TEXT, UNIT, frame, serve
from tests.hub.wire import WireClient
from tests.server.test_bounds import narrow, until
from wirehub import Hub, Limits, Peer
from wirehub.server.connection import Connection

LIMITS = Limits(write_buffer_high=32 * 1024, write_buffer_low=8192, max_buffered=128 * 1024)
BIGGEST = 16 * 1024 + 64  # the largest single message a test client makes the server send
READ = 256 * 1024  # the most one read of the socket holds (uvloop and asyncio)
BOUND = LIMITS.max_buffered + BIGGEST + READ  # a read of pings answered by pongs


def text(message: dict[str, Any]) -> bytes:
    return frame(TEXT, json.dumps(message).encode())


def binary(event: str, payload: bytes) -> bytes:
    header = json.dumps({"type": "emit", "event": event, "id": 1}).encode()
    return frame(BINARY, struct.pack("!I", len(header)) + header + payload)


MESSAGES = {
    "echo": lambda size: text({"type": "emit", "event": "echo", "id": 1, "data": "e" * size}),
    "unknown": lambda size: text({"type": "emit", "event": "nope", "id": 2}),
    "garbage": lambda size: frame(TEXT, b'{"type": "emit", "id": 3, "event": '),
    "join": lambda size: text({"type": "join", "room": "news", "history": 50, "id": 4}),
    "leave": lambda size: text({"type": "leave", "room": "news", "id": 5}),
    "ping": lambda size: text({"type": "ping", "id": 6}),
    "ws-ping": lambda size: frame(PING, bytes(min(size, 125))),
    "auth": lambda size: text({"type": "auth", "token": "t", "id": 7}),
    "binary": lambda size: binary("bin", bytes(size)),
    "flood": lambda size: text({"type": "emit", "event": "flood", "id": 8}),
}

plans = st.permutations(sorted(MESSAGES)).flatmap(
    lambda kinds: st.tuples(
        *(
            st.tuples(st.just(kind), st.integers(1, 300), st.sampled_from([8, 1000, 16000]))
            for kind in kinds
        )
    )
)


def hostile_hub() -> Hub:
    hub = Hub(limits=LIMITS)

    @hub.on("echo")
    def echo(peer: Peer, data: Any) -> Any:
        return data

    @hub.on("bin")
    def bin_(peer: Peer, data: bytes) -> bytes:
        return data

    @hub.on("flood")
    async def flood(peer: Peer) -> None:
        for _ in range(20):
            await peer.emit("f", "f" * 1024)

    return hub


def settled(connection: Connection, s: Any, sent: int, hub: Hub) -> bool:
    """The server is done with this client for now: closing it, not reading it, or every
    message of it handled."""
    if connection.closing or connection not in s.server.connections:
        return True
    peers = list(hub.node.peers.values())
    idle = not peers or not any(p._tasks for p in peers)  # type: ignore[attr-defined]
    return connection._read_stopped or (hub.stats["messages_in"] >= sent and idle)


def outcome(connection: Connection, s: Any) -> str:
    if connection.closing or connection not in s.server.connections:
        return "closed (slow consumer)"
    return "not read any more" if connection._read_stopped else "answered in full"


async def check(plan: tuple[tuple[str, int, int], ...]) -> None:
    hub = hostile_hub()
    for n in range(50):
        await hub.to("news").emit("story", "s" * 1000 + str(n))
    async with (
        serve(hub) as s,
        await WireClient.open(s.ws("/ws")) as bystander,
        narrow(s, "/ws") as (_, writer, connection),
    ):
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, connection.buffered)
                await asyncio.sleep(0.001)

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            sent = 0
            for kind, count, size in plan:
                writer.write(MESSAGES[kind](size) * count)
                sent += 0 if kind == "ws-ping" else count
            await until(lambda: settled(connection, s, sent, hub), 10 * UNIT)
            await until(lambda: not hub.node.tasks, 10 * UNIT)  # joins and floods in flight
            event(outcome(connection, s))
            answer = await bystander.request({"type": "ping"})
            assert answer["type"] == "ack", answer
        finally:
            watcher.cancel()
        assert max(peak, connection.buffered) <= BOUND, (peak, plan)
        assert hub.stats["slow_consumers"] <= 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans)
def test_a_client_that_never_reads_costs_a_bounded_buffer(
    plan: tuple[tuple[str, int, int], ...],
) -> None:
    """Every message type, any mix and order, never read: bounded, and others are served."""
    asyncio.run(check(plan))
