"""``MemoryBroker``: one process, no services; the default."""

from __future__ import annotations

import collections
import dataclasses
import secrets
import time
from typing import Any

from wirehub.brokers.base import BrokerListener, History, Publication
from wirehub.exceptions import ConfigError
from wirehub.protocol.messages import Position

__all__ = ["MemoryBroker"]

MiB = 1 << 20


def _size(publication: Publication) -> int:
    return len(publication.body) + len(publication.binary or b"")


class _Stream:
    """A room's position and its last publications."""

    __slots__ = ("epoch", "kept", "kept_bytes", "offset", "published")

    def __init__(self) -> None:
        self.epoch = secrets.token_urlsafe(6)  # 48 random bits: never reused
        self.offset = 0
        self.kept: collections.deque[Publication] = collections.deque()
        self.kept_bytes = 0
        self.published = time.monotonic()

    def drop_oldest(self) -> int:
        """Forget the oldest kept publication; return its size."""
        size = _size(self.kept.popleft())
        self.kept_bytes -= size
        return size


class MemoryBroker:
    """Delivers synchronously to the one local node and keeps room history in memory.

    Room publications are delivered only while the room is subscribed (like
    every broker: the shared test suite checks it).

    History is bounded per room — the last ``history_size`` publications,
    at most ``history_bytes`` bytes — and in total — ``max_history_bytes``,
    in at most ``max_streams`` rooms. A room with members (subscribed) keeps
    its epoch whatever happens: past the totals, the least recently
    published rooms without members are forgotten first (their clients get
    ``recovered: false`` and a new epoch), then the oldest publications of
    the others. A room without members is also forgotten ``history_ttl``
    seconds after its last publication. A joined room with nothing kept is
    the first to go past ``max_streams``, so joins of any number of names
    never push out another room's history.
    """

    def __init__(
        self,
        *,
        history_size: int = 100,
        history_bytes: int = 1 * MiB,
        history_ttl: float = 3600.0,
        max_history_bytes: int = 64 * MiB,
        max_streams: int = 10_000,
    ) -> None:
        if min(history_size, history_bytes, max_history_bytes, max_streams) < 0:
            raise ConfigError("history sizes and max_streams are 0 or more")
        if not history_ttl > 0:
            raise ConfigError("history_ttl is seconds above 0")
        self.history_size = history_size
        self.history_bytes = history_bytes
        self.history_ttl = history_ttl
        self.max_history_bytes = max_history_bytes
        self.max_streams = max_streams
        # Least recently published first. A room nobody joined and nobody published
        # to has no entry: asked for, it answers a new epoch each time.
        self._streams: collections.OrderedDict[str, _Stream] = collections.OrderedDict()
        self._kept_bytes = 0
        self._listener: BrokerListener | None = None
        self._rooms: collections.Counter[str] = collections.Counter()  # subscribe() calls

    async def start(self, listener: BrokerListener) -> None:
        self._listener = listener

    async def close(self) -> None:
        self._listener = None

    async def publish(self, publication: Publication) -> Position | None:
        position = None
        if publication.numbered and publication.room is not None:
            stream = self._stream(publication.room)
            self._streams.move_to_end(publication.room)
            stream.offset += 1
            stream.published = time.monotonic()
            position = Position(stream.epoch, stream.offset)
            publication = dataclasses.replace(publication, position=position)
            self._keep(stream, publication)
            self._bound()
        if self._listener is not None and (
            publication.room is None or publication.room in self._rooms
        ):
            self._listener.deliver(publication)
        return position

    async def subscribe(self, room: str) -> None:
        self._rooms[room] += 1

    async def unsubscribe(self, room: str) -> None:
        # Counted, so overlapping calls from the hub leave the right answer.
        self._rooms[room] -= 1
        if self._rooms[room] <= 0:
            del self._rooms[room]

    async def history(self, room: str, since: Position | None, limit: int) -> History:
        stream = self._streams.get(room)
        if stream is not None and self._expired(room, stream):
            stream = None
        if stream is None:
            if room not in self._rooms:
                # Not kept, not joined: a new epoch every time (nothing is stored).
                fresh = Position(secrets.token_urlsafe(6), 0)
                return History(fresh, [], recovered=since is None)
            stream = self._stream(room)
            self._bound()  # joined: an empty stream, the first to go past max_streams
        position = Position(stream.epoch, stream.offset)
        if since is None:
            kept = list(stream.kept)[-limit:] if limit > 0 else []
            return History(position, kept, recovered=True)
        if since.epoch != stream.epoch or since.offset > stream.offset:
            return History(position, [], recovered=False)
        missed = stream.offset - since.offset
        if missed == 0:
            return History(position, [], recovered=True)
        if missed > len(stream.kept) or missed > limit:
            return History(position, [], recovered=False)
        return History(position, list(stream.kept)[-missed:], recovered=True)

    def health(self) -> dict[str, Any]:
        return {
            "broker": "memory",
            "ok": True,
            "streams": len(self._streams),
            "history_bytes": self._kept_bytes,
        }

    # -- bounds ----------------------------------------------------------------------

    def _stream(self, room: str) -> _Stream:
        stream = self._streams.get(room)
        if stream is None or self._expired(room, stream):
            stream = self._streams[room] = _Stream()
        return stream

    def _keep(self, stream: _Stream, publication: Publication) -> None:
        size = _size(publication)
        if not self.history_size or size > self.history_bytes:
            # Not kept: what came before cannot be followed by it in a recovery.
            self._kept_bytes -= stream.kept_bytes
            stream.kept.clear()
            stream.kept_bytes = 0
            return
        stream.kept.append(publication)
        stream.kept_bytes += size
        self._kept_bytes += size
        while len(stream.kept) > self.history_size or stream.kept_bytes > self.history_bytes:
            self._kept_bytes -= stream.drop_oldest()

    def _bound(self) -> None:
        """Forget expired rooms; bring the totals back under the limits."""
        streams, now = self._streams, time.monotonic()
        for room, stream in list(streams.items()):  # least recently published first
            if now - stream.published < self.history_ttl:
                break
            if room not in self._rooms:
                self._kept_bytes -= streams.pop(room).kept_bytes
        while len(streams) > self.max_streams:
            # Rooms without members go, those with nothing kept first (joins of
            # any number of names never push out another room's history).
            idle = [room for room in streams if room not in self._rooms]
            empty = next((room for room in idle if not streams[room].kept), None)
            if empty is None and not idle:
                break  # rooms with members only: the count gives way to them
            self._kept_bytes -= streams.pop(empty if empty is not None else idle[0]).kept_bytes
        while self._kept_bytes > self.max_history_bytes:
            # The least recently published room without members goes first...
            idle_room = next((room for room in streams if room not in self._rooms), None)
            if idle_room is not None:
                self._kept_bytes -= streams.pop(idle_room).kept_bytes
                continue
            # ...then the oldest publications of rooms with members (their epochs stay).
            kept = next((s for s in streams.values() if s.kept), None)
            if kept is None:
                return
            self._kept_bytes -= kept.drop_oldest()

    def _expired(self, room: str, stream: _Stream) -> bool:
        """Forget a room without members published last more than ``history_ttl`` ago."""
        if room in self._rooms or time.monotonic() - stream.published < self.history_ttl:
            return False
        self._kept_bytes -= stream.kept_bytes
        del self._streams[room]
        return True
