"""``PresenceStore``: who is in which room, on every node of a hub.

A hub with ``presence=True`` records each join and leave of its peers in a
presence store, so the join ack's ``members``, ``await hub.members(room)``
and ``await hub.room_names()`` answer for the whole cluster, not one
process. ``MemoryPresence`` serves one process (the default, and a test
double several in-process nodes can share); ``RedisPresence``
(``redis_presence.py``) serves every node sharing a Redis.

Each node proves it is alive with ``heartbeat`` (every ``ttl / 3`` seconds,
from the hub). A node that stops — killed with ``kill -9``, cut off — is
dropped from ``members`` once ``ttl`` seconds passed since its last
heartbeat; the next heartbeat of any other node then removes its entries
and returns them, to that one caller, which announces the leaves. So a dead
node's members leave within ``ttl`` (from ``members``) and their leave
notices go out within ``ttl`` plus one heartbeat interval.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

__all__ = ["Heartbeat", "MemoryPresence", "PeerInfo", "PresenceStore"]

DEFAULT_TTL = 15.0


@dataclasses.dataclass(frozen=True, slots=True)
class PeerInfo:
    """A peer as presence shows it: its id, its ``info``, and the node it is connected to."""

    id: str
    info: dict[str, Any]
    node: str

    def public(self) -> dict[str, Any]:
        """What clients see (docs/PROTOCOL.md, presence): ``{"id", "info"}``."""
        return {"id": self.id, "info": self.info}


@dataclasses.dataclass(frozen=True, slots=True)
class Heartbeat:
    """What a heartbeat learned.

    ``departed``: ``(room, peer)`` entries of dead nodes this heartbeat
    removed — this caller alone got them, and announces their leaves.
    ``lost``: the store lost this very node's entries, or some of them: it
    had been taken for dead (it missed its heartbeats, e.g. its event loop
    was blocked), or Redis restarted empty, was flushed or evicted keys. The
    node must ``sync`` its peers again.
    """

    departed: list[tuple[str, PeerInfo]]
    lost: bool = False


class PresenceStore(Protocol):
    """Room membership of every node, with node liveness by heartbeats.

    Guarantees every implementation keeps (tests/brokers/test_presence_contract.py):

    - ``add`` and ``remove`` are idempotent; ``members(room)`` lists every peer
      added and not removed whose node's last heartbeat (or ``add``) is less
      than ``ttl`` seconds old; ``rooms()`` counts them per room.
    - A dead node's entries are returned by exactly one later ``heartbeat``
      of another node (``Heartbeat.departed``), then are gone.
    - A node whose entries were removed while it lived (reaped, or the store
      lost them) finds out from its next ``heartbeat`` (``Heartbeat.lost``),
      or from its next ``add``, which returns False (the store did not know
      the node); ``sync`` then records them all again.
    - What a store keeps is bounded by the peers and rooms of live nodes, and
      (in Redis) expires ``ttl`` after the last heartbeat of the last node.
    """

    ttl: float

    async def start(self) -> None:
        """Connect (a no-op in memory)."""

    async def close(self) -> None:
        """Release connections."""

    async def add(self, node: str, room: str, peer: PeerInfo) -> bool:
        """``peer`` (connected to ``node``) is in ``room``.

        Returns False when the store did not know ``node`` (new, reaped, or
        its entries lost): the node's other entries may be missing.
        """

    async def sync(self, node: str, entries: Collection[tuple[str, PeerInfo]]) -> None:
        """Make ``node``'s entries exactly ``entries`` (``(room, peer)``), in one step."""

    async def remove(self, node: str, room: str, peer_id: str) -> None:
        """The peer left ``room``."""

    async def members(self, room: str) -> list[PeerInfo]:
        """The members of ``room`` on every live node."""

    async def rooms(self) -> dict[str, int]:
        """Every room with members, with how many (a dead node's count until it is reaped)."""

    async def heartbeat(self, node: str, rooms: Collection[str]) -> Heartbeat:
        """``node`` is alive and has members in ``rooms``; reap dead nodes."""

    async def drop(self, node: str) -> None:
        """Forget ``node`` and all it holds: it stops cleanly (and announces its own leaves)."""


class MemoryPresence:
    """A presence store in this process; share one between in-process nodes.

    ``clock`` (seconds, monotonic) is injectable for tests.
    """

    def __init__(self, *, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self._clock = clock
        self._rooms: dict[str, dict[str, PeerInfo]] = {}
        self._deadlines: dict[str, float] = {}  # node -> when it is taken for dead
        self._held: collections.defaultdict[str, set[tuple[str, str]]] = collections.defaultdict(
            set
        )

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def add(self, node: str, room: str, peer: PeerInfo) -> bool:
        known = node in self._deadlines
        self._deadlines[node] = self._clock() + self.ttl
        self._rooms.setdefault(room, {})[peer.id] = peer
        self._held[node].add((room, peer.id))
        return known

    async def sync(self, node: str, entries: Collection[tuple[str, PeerInfo]]) -> None:
        wanted = {(room, peer.id) for room, peer in entries}
        for room, peer_id in self._held[node] - wanted:
            await self.remove(node, room, peer_id)
        for room, peer in entries:
            await self.add(node, room, peer)

    async def remove(self, node: str, room: str, peer_id: str) -> None:
        self._drop(room, peer_id)
        self._held[node].discard((room, peer_id))

    async def members(self, room: str) -> list[PeerInfo]:
        now = self._clock()
        present = self._rooms.get(room, {}).values()
        return [peer for peer in present if self._deadlines.get(peer.node, 0.0) > now]

    async def rooms(self) -> dict[str, int]:
        return {room: len(peers) for room, peers in self._rooms.items()}

    async def heartbeat(self, node: str, rooms: Collection[str]) -> Heartbeat:
        now = self._clock()
        lost = node not in self._deadlines
        self._deadlines[node] = now + self.ttl
        departed = []
        for dead in [n for n, deadline in self._deadlines.items() if deadline <= now]:
            del self._deadlines[dead]
            for room, peer_id in self._held.pop(dead, ()):
                peer = self._drop(room, peer_id)
                if peer is not None:
                    departed.append((room, peer))
        return Heartbeat(departed, lost)

    async def drop(self, node: str) -> None:
        self._deadlines.pop(node, None)
        for room, peer_id in self._held.pop(node, ()):
            self._drop(room, peer_id)

    def _drop(self, room: str, peer_id: str) -> PeerInfo | None:
        peers = self._rooms.get(room)
        if peers is None:
            return None
        peer = peers.pop(peer_id, None)
        if not peers:
            del self._rooms[room]
        return peer
