"""Rooms: named groups of local peers that an emit can target.

``Rooms`` is this process's membership table (who is in which room, both
ways) and its link to the broker: the first local member subscribes the
room, the last one to leave unsubscribes it. A ``Peer`` is given the node's
``Rooms`` and calls it; this module never sees a ``Peer``, only a ``Member``.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable
from typing import Any, Protocol

from wirehub.brokers.base import Broker, History, Publication
from wirehub.codes import ErrorCode
from wirehub.config import Limits
from wirehub.exceptions import EventError
from wirehub.hub.fanout import Fanout, Member, log_context
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
    """The peers of this process in one room. ``members`` is live; do not mutate it."""

    __slots__ = ("members", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: set[Member] = set()

    def __len__(self) -> int:
        return len(self.members)

    def __repr__(self) -> str:
        return f"Room({self.name!r}, {len(self.members)} members)"


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
        self._of: dict[Member, set[str]] = {}  # each member's rooms
        self._joining: dict[Member, set[str]] = {}  # rooms its joins are still deciding

    def of(self, member: Member) -> frozenset[str]:
        """The rooms ``member`` is in."""
        return frozenset(self._of.get(member, ()))

    def get(self, name: str) -> Room:
        """The local members of ``name`` (an empty room if nobody is in it)."""
        return self.by_name.get(name) or Room(name)

    # -- joining and leaving ---------------------------------------------------

    async def join(self, member: Member, name: str) -> None:
        """Add ``member`` to room ``name`` (no authorization: the server decides)."""
        if not member.connected:
            return
        joined = self._of.setdefault(member, set())
        if name in joined:
            return
        room = self.by_name.get(name)
        first = room is None
        if room is None:
            room = self.by_name[name] = Room(name)
        room.members.add(member)
        joined.add(name)
        if first:
            await self._holder.broker.subscribe(name)
        if self.presence:
            await self._announce(name, "joined", member)

    async def leave(self, member: Member, name: str) -> None:
        """Take ``member`` out of room ``name`` (nothing if it is not in it)."""
        joined = self._of.get(member)
        if joined is None or name not in joined:
            return
        joined.discard(name)
        if self._forget(member, name):
            await self._holder.broker.unsubscribe(name)
        if self.presence:
            await self._announce(name, "left", member)

    async def client_join(
        self, member: Member, name: str, since: wire.Position | None, history: int
    ) -> dict[str, Any]:
        """A ``join`` request: check, authorize, join, replay; return the ack's data.

        Raises ``EventError`` (``invalid_data``, ``limit_exceeded``, ``forbidden``).
        """
        problem = check_room_name(name)
        if problem is not None:
            raise EventError(ErrorCode.INVALID_DATA, problem, {"path": "$.room", "error": problem})
        joined = self._of.get(member, set())
        if name not in joined:
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
                if not await self._authorized(member, name):
                    self.stats["forbidden"] += 1
                    raise EventError(ErrorCode.FORBIDDEN, "not allowed to join this room")
                await self.join(member, name)
            finally:
                joining.discard(name)
                if not joining:
                    self._joining.pop(member, None)
        limit = MAX_HISTORY_REPLAY if since is not None else min(history, MAX_HISTORY_REPLAY)
        kept = await self._holder.broker.history(name, since, limit)
        self._replay(member, name, kept)
        answer: dict[str, Any] = {"epoch": kept.position.epoch, "offset": kept.position.offset}
        if since is not None:
            answer["recovered"] = kept.recovered
        if self.presence:
            answer["members"] = [{"id": m.id, "info": m.info} for m in self.get(name).members]
        return answer

    async def positions(self, member: Member) -> dict[str, wire.Position]:
        """The latest position of each room ``member`` is in (for its welcome)."""
        broker = self._holder.broker
        return {
            name: (await broker.history(name, None, 0)).position
            for name in sorted(self._of.get(member, ()))
        }

    def gone(self, member: Member) -> tuple[list[str], list[str]]:
        """``member`` disconnected: drop it from every room at once.

        Returns its rooms and those that became empty; ``after_gone`` then
        unsubscribes and announces (it waits on the broker).
        """
        rooms = sorted(self._of.pop(member, ()))
        return rooms, [name for name in rooms if self._forget(member, name)]

    async def after_gone(self, member: Member, rooms: list[str], emptied: list[str]) -> None:
        for name in emptied:
            await self._holder.broker.unsubscribe(name)
        if self.presence:
            for name in rooms:
                await self._announce(name, "left", member)

    # -- delivery ----------------------------------------------------------------

    def deliver(self, publication: Publication) -> None:
        """Send a room publication to the room's local members."""
        assert publication.room is not None
        room = self.by_name.get(publication.room)
        if room is None:
            return
        if publication.presence:
            payload = b'{"type":"presence","room":%s,%s' % (
                wire.encode_json(publication.room),
                publication.body,
            )
            text = True
        else:
            payload, text = wire.event_message(
                publication.body, publication.binary, publication.room, publication.position
            )
        self.fanout.send(
            room.members, payload, text, publication.exclude, volatile=publication.volatile
        )

    # -- helpers -------------------------------------------------------------------

    def _forget(self, member: Member, name: str) -> bool:
        """Remove ``member`` from room ``name``; True when the room became empty."""
        room = self.by_name.get(name)
        if room is None:
            return False
        room.members.discard(member)
        if room.members:
            return False
        del self.by_name[name]
        return True

    async def _announce(self, room: str, change: str, member: Member) -> None:
        who = wire.encode_json({"id": member.id, "info": member.info})
        body = b'"%s":%s}' % (change.encode(), who)
        publication = Publication(body, room=room, exclude=member.id, presence=True)
        await self._holder.broker.publish(publication)

    def _replay(self, member: Member, room: str, kept: History) -> None:
        for publication in kept.publications:
            if publication.exclude == member.id:
                continue  # its sender did not get it live either (its client expects that)
            payload, text = wire.event_message(
                publication.body, publication.binary, room, publication.position
            )
            member.send(payload, text)

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
