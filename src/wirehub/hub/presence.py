"""Cluster-wide presence: ``Hub(presence=True)`` across every node sharing a broker.

Each join and leave of a local peer is recorded in a ``PresenceStore``
(brokers/presence.py) before its ``presence`` notice is published, so the
join ack's ``members``, ``await hub.members(room)`` and ``await
hub.room_names()`` answer for every node. With ``RedisBroker`` the store is
``RedisPresence`` on the same Redis and prefix (``broker.presence_store``);
with the in-memory broker, a ``MemoryPresence``. ``Hub(presence=store)``
picks one.

Every ``ttl / 3`` seconds the node heartbeats: it proves it lives and renews
its rooms' keys. A node that dies without leaving (``kill -9``, a lost
machine) drops out of ``members`` ``ttl`` seconds after its last heartbeat,
and the first heartbeat of another node after that sends a ``left`` notice
for each of its members: so within ``ttl + ttl / 3`` (20 s with the default
``ttl`` of 15 s).

This node's rooms are the truth; the store is a copy Redis may lose (a
restart without persistence, FLUSHALL, an evicted key) or that may miss a
write (Redis unreachable for a moment), and the node may have been taken for
dead while it lived (its event loop blocked past ``ttl``). Whenever a join
finds the store did not know this node, a heartbeat finds the node's entries
lost, or a write failed, the node makes its entries in the store its local
memberships again (``PresenceStore.sync``): before that join's ack, or at
that heartbeat, so within one heartbeat interval of Redis coming back.

Presence is best effort, like its notices (docs/events.md): when the store
cannot be reached, joins and leaves still happen, the failure is logged,
and ``members`` answers with this node's members only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Mapping
from typing import Any, Protocol

from wirehub.brokers.base import Broker, Publication
from wirehub.brokers.memory import MemoryBroker
from wirehub.brokers.presence import MemoryPresence, PeerInfo, PresenceStore
from wirehub.exceptions import Unavailable
from wirehub.hub.fanout import Member
from wirehub.protocol import messages as wire

__all__ = ["ClusterPresence"]

logger = logging.getLogger("wirehub.presence")


class Holder(Protocol):
    """Whoever holds the current broker (a ``Node``)."""

    @property
    def broker(self) -> Broker: ...


class Members(Protocol):
    members: set[Member]


class RoomTable(Protocol):
    """This node's rooms (a ``Rooms``): ``by_name`` maps each room to its local members."""

    @property
    def by_name(self) -> Mapping[str, Members]: ...


class ClusterPresence:
    """The presence of one node, kept in a store every node shares.

    ``store``: None picks the broker's when the hub starts (``_store_for``).
    ``start`` and ``stop`` are the hub's startup and shutdown hooks.
    """

    def __init__(
        self, holder: Holder, rooms: RoomTable, store: PresenceStore | None = None
    ) -> None:
        self.holder = holder
        self.rooms = rooms
        self.store = store
        self.node = ""  # set at start: after a fork, each worker is a node of its own
        self._running = False
        self._heartbeats: asyncio.Task[None] | None = None
        self._syncing = asyncio.Lock()
        self._stale = False  # a write failed: the store may lack a join or keep a leave

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Pick the store (if none was given), connect it, record this node as alive."""
        if self.store is None:
            self.store = _store_for(self.holder.broker)
        self.node = secrets.token_urlsafe(6)
        await self.store.start()
        self._running = True
        await self._beat()
        self._heartbeats = asyncio.get_running_loop().create_task(self._beat_forever())

    async def stop(self) -> None:
        """Stop the heartbeats, take this node out of the store, close it.

        The peers' own leaves are announced as they disconnect; if the store
        cannot be reached, the other nodes reap this one after ``ttl``.
        """
        self._running = False
        heartbeats, self._heartbeats = self._heartbeats, None
        if heartbeats is not None:
            heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeats
        if self.store is not None:
            try:
                await self.store.drop(self.node)
            except Exception as exc:
                logger.warning("presence: could not take this node out: %r", exc)
            await self.store.close()

    async def _beat_forever(self) -> None:
        assert self.store is not None
        while True:
            await asyncio.sleep(self.store.ttl / 3)
            await self._beat()

    # -- what the rooms call ----------------------------------------------------------

    async def record(self, room: str, change: str, member: Member) -> None:
        """Store a ``"joined"`` or ``"left"`` of a local member (before its notice)."""
        if self._running and not await self._write(room, change, member):
            await self._sync("a join found this node unknown")

    async def _write(self, room: str, change: str, member: Member) -> bool:
        """Write one change; False when the store did not know this node (it lost its entries)."""
        assert self.store is not None
        try:
            if change == "joined":
                peer = PeerInfo(member.id, member.info, self.node)
                return await self.store.add(self.node, room, peer)
            await self.store.remove(self.node, room, member.id)
        except Exception as exc:
            self._stale = True  # the next heartbeat syncs
            logger.warning("room %r: presence of %s not recorded: %r", room, member.id, exc)
        return True

    async def members(self, room: str) -> list[dict[str, Any]]:
        """``[{"id", "info"}, ...]`` of every node (this node's only if the store fails)."""
        if self._running:
            assert self.store is not None
            try:
                return [peer.public() for peer in await self.store.members(room)]
            except Exception as exc:
                logger.warning("room %r: cluster presence unavailable: %r", room, exc)
        local = self.rooms.by_name.get(room)
        return [{"id": m.id, "info": m.info} for m in (local.members if local else ())]

    async def room_sizes(self) -> dict[str, int]:
        """Every room with members on any node, with how many."""
        if self._running:
            assert self.store is not None
            try:
                return await self.store.rooms()
            except Exception as exc:
                logger.warning("cluster presence unavailable: %r", exc)
        return {name: len(room.members) for name, room in self.rooms.by_name.items()}

    # -- heartbeats -----------------------------------------------------------------------

    async def _beat(self) -> None:
        assert self.store is not None
        rooms = [name for name, room in self.rooms.by_name.items() if room.members]
        try:
            beat = await self.store.heartbeat(self.node, rooms)
        except Exception as exc:
            logger.warning("presence heartbeat failed: %r", exc)
            return
        if beat.lost or self._stale:
            await self._sync("the store lost this node's entries" if beat.lost else "")
        for room, peer in beat.departed:
            logger.info("peer %s of a dead node left room %r", peer.id, room, extra={"room": room})
            await announce(self.holder.broker, room, "left", peer.public())

    async def _sync(self, why: str) -> None:
        """Make this node's entries in the store its local memberships again (``why``: logged)."""
        assert self.store is not None
        async with self._syncing:
            self._stale = False
            before = self._memberships()
            if why and before:
                logger.warning("presence: %s: recording its %d memberships again", why, len(before))
            entries = [(room, PeerInfo(m.id, m.info, self.node)) for room, m in before]
            try:
                await self.store.sync(self.node, entries)
            except Exception as exc:
                self._stale = True
                logger.warning("presence: could not record this node's members again: %r", exc)
                return
            # A join or leave since ``before`` may have reached the store ahead of the sync,
            # which undid it: write it again, now that the sync is done.
            after = self._memberships()
            for room, member in after - before:
                await self._write(room, "joined", member)
            for room, member in before - after:
                await self._write(room, "left", member)

    def _memberships(self) -> set[tuple[str, Member]]:
        return {(name, m) for name, room in self.rooms.by_name.items() for m in room.members}


async def announce(broker: Broker, room: str, change: str, who: dict[str, Any]) -> None:
    """Publish a ``presence`` notice: ``who`` (``{"id", "info"}``) ``joined`` or ``left`` room."""
    body = b'"%s":%s}' % (change.encode(), wire.encode_json(who))
    publication = Publication(body, room=room, exclude=who["id"], presence=True)
    try:
        await broker.publish(publication)
    except Unavailable as exc:  # presence is best effort (docs/events.md)
        logger.warning("room %r: presence not announced: %s", room, exc.message)


def _store_for(broker: Broker) -> PresenceStore:
    """The broker's own presence store (``RedisBroker.presence_store``), else one in memory."""
    make = getattr(broker, "presence_store", None)
    if make is not None:
        store: PresenceStore = make()
        return store
    if not isinstance(broker, MemoryBroker):
        logger.warning(
            "%s has no presence store: presence covers this process only",
            type(broker).__name__,
        )
    return MemoryPresence()
