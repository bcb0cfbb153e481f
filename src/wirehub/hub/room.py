"""Rooms: named groups of local peers that an emit can target.

``Rooms`` is this process's membership table (who is in which room, both
ways) and its link to the broker: the first local member subscribes the
room, the last one to leave unsubscribes it. Each ``Room`` owns the room's
``Stream`` (hub/stream.py), which decides what reaches the members and in
which order. A ``Peer`` is given the node's ``Rooms`` and calls it; this
module never sees a ``Peer``, only a ``Member``.

Joins (docs/PROTOCOL.md §7): every joiner waits for the room's subscription
(the first joiner's, if it is still in flight); a subscription that fails
fails the join with ``Unavailable``. A joiner's position is the stream's at
the moment it becomes a member, so everything after it reaches it. A join
that replays history holds the room's live messages for that member while
it reads, then sends the replay and what was held without repeating a
position, then its ack.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Callable
from typing import Any, Protocol

from wirehub.brokers.base import Broker, Publication
from wirehub.codes import ErrorCode
from wirehub.config import Limits
from wirehub.exceptions import EventError, Unavailable
from wirehub.hub.fanout import Fanout, Held, Member, log_context
from wirehub.hub.presence import ClusterPresence, announce
from wirehub.hub.stream import Stream
from wirehub.protocol import messages as wire

__all__ = ["MAX_HISTORY_REPLAY", "JoinAuthorizer", "Room", "Rooms", "check_room_name"]

logger = logging.getLogger("wirehub.hub")

MAX_HISTORY_REPLAY = 1000

JoinAuthorizer = Callable[[Any, str], Any]  # (peer, room) -> bool or Awaitable[bool]

_ROOM_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,200}")


def check_room_name(name: object) -> str | None:
    """Why ``name`` cannot be a room name, or None when it can."""
    if not isinstance(name, str):
        return "a room name is a string"
    if not _ROOM_NAME.fullmatch(name):
        return "a room name has 1 to 200 characters and no control characters"
    return None


class Room:
    """The peers of this process in one room. ``members`` is live; do not mutate it.

    Also the ``Outlet`` of the room's ``stream``: what the stream delivers
    goes to the members (or into ``holds``, for members whose join is
    replaying history).
    """

    __slots__ = ("fanout", "holds", "joining", "members", "name", "ready", "stream")

    def __init__(self, name: str, fanout: Fanout | None = None) -> None:
        self.name = name
        self.members: set[Member] = set()
        self.fanout = fanout
        self.holds: dict[Member, list[Held]] = {}
        self.joining = 0  # joiners waiting for the subscription
        self.stream: Stream | None = None
        self.ready: asyncio.Future[None] | None = None  # the subscription, once confirmed

    def __len__(self) -> int:
        return len(self.members)

    def __repr__(self) -> str:
        return f"Room({self.name!r}, {len(self.members)} members)"

    def deliver(self, publication: Publication) -> None:
        """Send a publication of this room to its members (``Outlet``)."""
        assert self.fanout is not None
        if publication.presence:
            payload = b'{"type":"presence","room":%s,%s' % (
                wire.encode_json(self.name),
                publication.body,
            )
            text = True
        else:
            payload, text = wire.event_message(
                publication.body, publication.binary, self.name, publication.position
            )
        self.fanout.send(
            self.members,
            payload,
            text,
            publication.exclude,
            self.holds,
            publication.position,
            volatile=publication.volatile,
            room=self.name,
        )

    def gap(self, position: wire.Position, reason: str) -> None:
        """Tell the members they may have missed events up to ``position`` (``Outlet``)."""
        assert self.fanout is not None
        payload = wire.encode(wire.Gap(self.name, position.epoch, position.offset, reason))
        self.fanout.send(self.members, payload, True, None, self.holds, position, room=self.name)


class BrokerHolder(Protocol):
    """Whoever holds the current broker (``hub.broker`` may be replaced before serving)."""

    @property
    def broker(self) -> Broker: ...


class Rooms:
    """This process's rooms: membership both ways, subscriptions, joins, presence.

    ``by_name`` maps each room with a local member to its ``Room`` (what
    ``hub.rooms`` shows). ``presence`` announces joins and leaves to the
    room; ``authorize`` decides the joins clients ask for.
    """

    def __init__(
        self,
        holder: BrokerHolder,
        fanout: Fanout,
        *,
        limits: Limits,
        presence: bool,
        stats: dict[str, int],
    ) -> None:
        self._holder = holder
        self.fanout = fanout
        self.limits = limits
        self.presence = presence
        self.stats = stats
        self.authorize: JoinAuthorizer | None = None
        self.by_name: dict[str, Room] = {}
        self.cluster: ClusterPresence | None = None
        """With ``Hub(presence=...)``: presence of every node (``hub/presence.py``)."""
        self._of: dict[Member, set[str]] = {}  # each member's rooms (joined or joining)
        self._joining: dict[Member, set[str]] = {}  # rooms its joins are still deciding
        self._client_joins: dict[tuple[Member, str], asyncio.Future[None]] = {}

    def of(self, member: Member) -> frozenset[str]:
        """The rooms ``member`` is in."""
        return frozenset(n for n in self._of.get(member, ()) if member in self.get(n).members)

    def get(self, name: str) -> Room:
        """The local members of ``name`` (an empty room if nobody is in it)."""
        return self.by_name.get(name) or Room(name)

    # -- the broker's side -----------------------------------------------------------

    def receive(self, publication: Publication) -> None:
        """A room publication from the broker: through the room's stream to its members."""
        assert publication.room is not None
        room = self.by_name.get(publication.room)
        if room is not None and room.stream is not None:
            room.stream.receive(publication)

    def check(self) -> None:
        """Compare every room's position with the broker's and fill what was missed.

        Called after the broker re-established its subscriptions (events
        published meanwhile were not heard) and periodically.
        """
        for room in list(self.by_name.values()):
            if room.stream is not None:
                room.stream.check()

    # -- joining and leaving ---------------------------------------------------

    async def join(
        self,
        member: Member,
        name: str,
        *,
        hold: bool = False,
        started: Callable[[str, wire.Position], None] | None = None,
    ) -> wire.Position | None:
        """Add ``member`` to room ``name`` (no authorization: the server decides).

        Returns the member's position in the room: every event after it
        reaches the member (None if it left or disconnected meanwhile).
        ``hold`` keeps what the room sends it in ``room.holds`` (a join that
        replays history). ``started(name, position)`` is called the moment
        this call makes it a member (not when it already was), before any
        event of the room can reach it: a server-side join tells the client
        there. Raises ``Unavailable`` when the broker cannot confirm the
        room's subscription.
        """
        if not member.connected:
            return None
        joined = self._of.setdefault(member, set())
        room = self.by_name.get(name)
        if room is not None and member in room.members:
            assert room.stream is not None
            if hold:
                room.holds[member] = []
            return room.stream.position
        joined.add(name)
        first = room is None
        if room is None:
            room = self.by_name[name] = Room(name, self.fanout)
            room.stream = Stream(name, self._holder.broker, room, stats=self.stats)
            room.ready = asyncio.get_running_loop().create_future()
        assert room.ready is not None and room.stream is not None
        room.joining += 1
        try:
            if first:  # subscribes in this task: no extra step when the broker need not wait
                await self._subscribe(room)
            else:
                await asyncio.shield(room.ready)
        except Exception as exc:
            self._abandon(member, room)
            raise Unavailable(f"cannot subscribe to room {name!r} now: {exc}") from None
        finally:
            room.joining -= 1
        if not member.connected or name not in self._of.get(member, ()):
            await self._left_while_joining(member, room)
            return None
        added = member not in room.members
        room.members.add(member)
        if hold:
            room.holds[member] = []
        position = room.stream.position
        if added and started is not None:
            assert position is not None
            started(name, position)
        if self.presence:
            await self._announce(name, "joined", member)
        return position

    async def leave(
        self, member: Member, name: str, *, ended: Callable[[str], None] | None = None
    ) -> None:
        """Take ``member`` out of room ``name`` (nothing if it is not in it).

        ``ended(name)`` is called the moment it stops being a member, after
        the last event of the room it gets and the ``gap`` notice for any of
        them dropped (``slow_consumer="drop"``): a server-side leave tells the
        client there. A join still deciding fails instead (it sees it left).
        """
        joined = self._of.get(member)
        if joined is None or name not in joined:
            return
        joined.discard(name)
        if not joined:
            del self._of[member]
        room = self.by_name.get(name)
        if room is None or member not in room.members:
            return  # still joining: the join sees it left
        if ended is not None:  # events dropped while it was a member are owed before ``left``
            self.fanout.announce(member, name)
        emptied = self._forget(member, name)
        if ended is not None:
            ended(name)
        if emptied:
            await self._holder.broker.unsubscribe(name)
        if self.presence:
            await self._announce(name, "left", member)

    async def client_join(
        self, member: Member, name: str, since: wire.Position | None, history: int
    ) -> dict[str, Any]:
        """A ``join`` request: check, authorize, join, replay; return the ack's data.

        Raises ``EventError`` (``invalid_data``, ``limit_exceeded``,
        ``forbidden``) and ``Unavailable`` (the broker cannot serve it now).
        """
        problem = check_room_name(name)
        if problem is not None:
            raise EventError(ErrorCode.INVALID_DATA, problem, {"path": "$.room", "error": problem})
        joined = self._of.get(member, set())
        new = name not in joined
        if new:
            # The room counts against the limit from the check on, across the
            # awaits below: joins sent together cannot all pass the check first.
            joining = self._joining.setdefault(member, set())
            limit = self.limits.max_rooms_per_peer
            if limit is not None and name not in joining and len(joined | joining) >= limit:
                if not joining:
                    del self._joining[member]
                raise EventError(
                    ErrorCode.LIMIT_EXCEEDED, f"a peer may be in at most {limit} rooms"
                )
            joining.add(name)
        try:
            if new and not await self._authorized(member, name):
                self.stats["forbidden"] += 1
                raise EventError(ErrorCode.FORBIDDEN, "not allowed to join this room")
            key = (member, name)
            while (earlier := self._client_joins.get(key)) is not None:
                await earlier  # one join of a room at a time per member: one replay, one hold
            done = self._client_joins[key] = asyncio.get_running_loop().create_future()
            try:
                return await self._client_join(member, name, since, history)
            finally:
                del self._client_joins[key]
                done.set_result(None)
        finally:
            if new:
                joining = self._joining.get(member, set())
                joining.discard(name)
                if not joining:
                    self._joining.pop(member, None)

    async def _client_join(
        self, member: Member, name: str, since: wire.Position | None, history: int
    ) -> dict[str, Any]:
        replay = since is not None or history > 0
        start = await self.join(member, name, hold=replay)
        room = self.by_name.get(name)
        if start is None or room is None or room.stream is None:
            raise Unavailable(f"left room {name!r} while joining it")
        recovered = True
        if replay:
            try:
                recovered = await self._replay(member, room, start, since, history)
            finally:
                room.holds.pop(member, None)
        position = room.stream.position
        assert position is not None
        answer: dict[str, Any] = {"epoch": position.epoch, "offset": position.offset}
        if since is not None:
            answer["recovered"] = recovered
        if self.presence:
            answer["members"] = (
                await self.cluster.members(name)
                if self.cluster is not None
                else [{"id": m.id, "info": m.info} for m in room.members]
            )
        return answer

    def gone(self, member: Member) -> tuple[list[str], list[str]]:
        """``member`` disconnected: drop it from every room at once.

        Returns its rooms and those that became empty; ``after_gone`` then
        unsubscribes and announces (it waits on the broker).
        """
        names = sorted(self._of.pop(member, ()))
        rooms = [n for n in names if n in self.by_name and member in self.by_name[n].members]
        return rooms, [name for name in rooms if self._forget(member, name)]

    async def after_gone(self, member: Member, rooms: list[str], emptied: list[str]) -> None:
        for name in emptied:
            await self._holder.broker.unsubscribe(name)
        if self.presence:
            for name in rooms:
                await self._announce(name, "left", member)

    # -- helpers -------------------------------------------------------------------

    async def _subscribe(self, room: Room) -> None:
        """Subscribe ``room`` and start its stream at the broker's position; tell the
        other joiners through ``room.ready``."""
        assert room.ready is not None and room.stream is not None
        broker = self._holder.broker
        try:
            try:
                await broker.subscribe(room.name)
                position = (await broker.history(room.name, None, 0)).position
            except BaseException:
                await broker.unsubscribe(room.name)
                raise
        except BaseException as exc:
            room.ready.set_exception(
                exc if isinstance(exc, Exception) else Unavailable("cancelled")
            )
            room.ready.exception()  # retrieved: the other joiners may be none
            raise
        room.stream.start(position)
        room.ready.set_result(None)

    def _abandon(self, member: Member, room: Room) -> None:
        """The subscription failed: forget the joiner, and the room once nobody waits."""
        joined = self._of.get(member)
        if joined is not None:
            joined.discard(room.name)
            if not joined:
                del self._of[member]
        if room.joining <= 1 and not room.members and self.by_name.get(room.name) is room:
            del self.by_name[room.name]
            assert room.stream is not None
            room.stream.close()

    async def _left_while_joining(self, member: Member, room: Room) -> None:
        if not room.members and not room.joining and self.by_name.get(room.name) is room:
            del self.by_name[room.name]
            assert room.stream is not None
            room.stream.close()
            await self._holder.broker.unsubscribe(room.name)

    async def _replay(
        self,
        member: Member,
        room: Room,
        start: wire.Position,
        since: wire.Position | None,
        history: int,
    ) -> bool:
        """Send a joiner the history it asked for, then what was held; True if recovered.

        Only history up to the stream's position is sent (what follows
        reaches the member live), and no position is sent twice.
        """
        limit = MAX_HISTORY_REPLAY if since is not None else min(history, MAX_HISTORY_REPLAY)
        try:
            kept = await self._holder.broker.history(room.name, since, limit)
        except Exception as exc:
            await self.leave(member, room.name)
            raise Unavailable(f"cannot read the history of room {room.name!r} now: {exc}") from None
        if member not in room.members:  # left (a kick) while history was read: no replay
            raise Unavailable(f"left room {room.name!r} while joining it")
        assert room.stream is not None
        now = room.stream.position
        assert now is not None
        held = room.holds.pop(member, [])
        if since is not None and not kept.recovered:
            return False  # the client refetches; its position is the ack's
        replay = [
            p
            for p in kept.publications
            if p.position is not None
            and p.position.epoch == now.epoch
            and p.position.offset <= now.offset
        ]
        recovered = True
        if replay:
            last = replay[-1].position
            after = next((i + 1 for i, h in enumerate(held) if h[0] == last), None)
            if after is not None:
                held = held[after:]
            elif last != start:
                replay, recovered = [], False  # not adjacent to what was held: never reorder
        # A reconnected client's old peer id (``last_peer``) is the same client: an event
        # that excluded it is a ``skip`` for it too, as it would have been live.
        excluded = {member.id, member.transport.request.query.get("last_peer")}
        for p in replay:
            at = p.position
            assert at is not None
            if p.exclude is not None and p.exclude in excluded:
                member.send(wire.skip_message(room.name, at), True, room.name, at)
            else:
                member.send(*wire.event_message(p.body, p.binary, room.name, at), room.name, at)
        for at, payload, text in held:
            member.send(payload, text, room.name, at)
        if since is not None and room.name in self.fanout.drops.get(member, ()):
            # Some of it was dropped (``slow_consumer="drop"``): the ack says so, as the
            # client trusts a recovered replay up to the ack's position.
            self.fanout.forget(member, room.name)
            return False
        return recovered or since is None

    def _forget(self, member: Member, name: str) -> bool:
        """Remove ``member`` from room ``name``; True when the room became empty."""
        room = self.by_name.get(name)
        if room is None:
            return False
        room.members.discard(member)
        room.holds.pop(member, None)
        self.fanout.forget(member, name)
        if room.members or room.joining:
            return False
        del self.by_name[name]
        assert room.stream is not None
        room.stream.close()
        return True

    async def _announce(self, room: str, change: str, member: Member) -> None:
        if self.cluster is not None:  # recorded for every node before it is announced
            await self.cluster.record(room, change, member)
        await announce(self._holder.broker, room, change, {"id": member.id, "info": member.info})

    async def _authorized(self, member: Member, room: str) -> bool:
        if self.authorize is None:
            return True
        try:
            allowed = self.authorize(member, room)
            if inspect.isawaitable(allowed):  # a Future too: never let a join through unawaited
                allowed = await allowed
        except Exception:
            logger.exception(
                "authorize_join failed for room %r; refusing",
                room,
                extra=log_context(member, room=room),
            )
            return False
        return bool(allowed)
