"""``MemoryBroker``: one process, no services; the default."""

from __future__ import annotations

import collections
import dataclasses
import secrets
from typing import Any

from wirehub.brokers.base import BrokerListener, History, Publication
from wirehub.protocol.messages import Position

__all__ = ["MemoryBroker"]


class _Stream:
    """A room's position and its last publications."""

    __slots__ = ("epoch", "kept", "offset")

    def __init__(self, size: int) -> None:
        self.epoch = secrets.token_urlsafe(6)
        self.offset = 0
        self.kept: collections.deque[Publication] = collections.deque(maxlen=size)


class MemoryBroker:
    """Delivers synchronously to the one local node and keeps room history in memory.

    Room publications are delivered only while the room is subscribed (like
    every broker: the shared test suite checks it).

    ``history_size`` publications are kept per room, for at most ``max_streams``
    rooms (the least recently published are forgotten first; their clients get
    ``recovered=False`` and a new epoch).
    """

    def __init__(self, *, history_size: int = 100, max_streams: int = 10_000) -> None:
        self.history_size = history_size
        self.max_streams = max_streams
        self._streams: collections.OrderedDict[str, _Stream] = collections.OrderedDict()
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
            stream.offset += 1
            position = Position(stream.epoch, stream.offset)
            publication = dataclasses.replace(publication, position=position)
            if self.history_size:
                stream.kept.append(publication)
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
        stream = self._stream(room)
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
        return {"broker": "memory", "ok": True, "streams": len(self._streams)}

    def _stream(self, room: str) -> _Stream:
        stream = self._streams.get(room)
        if stream is None:
            stream = self._streams[room] = _Stream(self.history_size)
            if len(self._streams) > self.max_streams:
                self._streams.popitem(last=False)
        else:
            self._streams.move_to_end(room)
        return stream
