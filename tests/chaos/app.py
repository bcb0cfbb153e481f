"""The app the chaos suite serves with ``wirehub serve tests/chaos/app.py:make_hub``.

Members join a room (by a ``join`` request, in the connect handler when
the URL says ``?join=ROOM``, or by the ``enter`` handler's server-side
join); one sequential publisher calls ``publish``, whose acknowledgement
carries the event's position (some publications
exclude one member, whose client gets a ``skip``); ``ballast`` fills one
peer's buffers with direct messages; ``whoami`` names the serving process.
The broker and its limits come from the environment (``WIREHUB_CHAOS_*``,
set by the tests): an app may read it, the library never does.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import msgspec

from wirehub import Hub, Limits, Peer, Request
from wirehub.brokers.base import Broker
from wirehub.brokers.memory import MemoryBroker


class Tick(msgspec.Struct):
    """One publication: its room, its sequence number, and the peer id it excludes."""

    room: str
    seq: int
    exclude: str | None = None


class Ballast(msgspec.Struct):
    """Direct messages to send one peer: ``count`` of ``size`` bytes (to fill its buffers)."""

    peer: str
    size: int
    count: int


def setting(name: str, default: str) -> str:
    return os.environ.get(f"WIREHUB_CHAOS_{name}", default)


def broker() -> Broker:
    """A RedisBroker when ``WIREHUB_CHAOS_REDIS`` is set (on a Redis Cluster when
    ``WIREHUB_CHAOS_CLUSTER`` is 1), else a MemoryBroker."""
    history = int(setting("HISTORY", "2000"))
    url = setting("REDIS", "")
    if not url:
        return MemoryBroker(history_size=history)
    from wirehub.brokers.redis import RedisBroker

    timeout = float(setting("TIMEOUT", "0.5"))
    return RedisBroker(
        url,
        prefix=setting("PREFIX", "chaos"),
        cluster=setting("CLUSTER", "0") == "1",
        history_size=history,
        timeout=timeout,
        keepalive=timeout / 2,  # a frozen Redis is noticed within a timeout
        reconnect=(timeout / 2, timeout),
    )


def make_hub() -> Hub:
    """The chaos app, configured from the environment."""
    limits = Limits(max_buffered=int(setting("MAX_BUFFERED", str(Limits().max_buffered))))
    policy: Any = setting("SLOW_CONSUMER", "close")
    hub = Hub(broker=broker(), limits=limits, slow_consumer=policy)

    @hub.on("connect")
    async def connect(peer: Peer, request: Request) -> None:
        room = request.query.get("join")
        if room:
            await peer.join(room)

    @hub.on("enter")
    async def enter(peer: Peer, room: str) -> None:
        await peer.join(room)  # told to the client (``joined``): re-joined after reconnections

    @hub.on("publish")
    async def publish(peer: Peer, tick: Tick) -> dict[str, Any] | None:
        position = await hub.to(tick.room).emit("tick", {"seq": tick.seq}, exclude=tick.exclude)
        return None if position is None else {"epoch": position.epoch, "offset": position.offset}

    @hub.on("ballast")
    async def ballast(peer: Peer, order: Ballast) -> bool:
        """Send the ballast; return whether the peer is now behind (the slow-consumer policy
        applies to what it is sent next)."""
        data = secrets.token_urlsafe(order.size * 3 // 4)  # deflate cannot shrink it much
        for _ in range(order.count):
            await hub.to_peer(order.peer).emit("ballast", data)
        target = hub.peers.get(order.peer)
        if target is None:
            return False
        transport = target.transport
        return transport.writing_paused and transport.buffered > hub.limits.max_buffered

    @hub.on("whoami")
    def whoami(peer: Peer) -> int:
        return os.getpid()

    return hub
