"""Per-room stream positions for recovery and de-duplication (no I/O).

The client remembers, per room, the last ``(epoch, offset)`` it delivered
(docs/PROTOCOL.md, "Recovery"). While a join is in flight it holds the
room's events back, because a replay may interleave with live events and
repeat one of them; when the ack arrives, the held events are delivered in
offset order with duplicates dropped.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from wirehub.protocol.messages import Position

__all__ = ["Streams"]

T = TypeVar("T")


class Streams(Generic[T]):
    """Positions and held-back events of the rooms a client hears from.

    ``T`` is whatever the caller delivers (here: an event and its data);
    every method returns the items to deliver now, in order.
    """

    def __init__(self) -> None:
        self._positions: dict[str, Position] = {}
        self._held: dict[str, list[tuple[Position | None, T]]] = {}

    def since(self, room: str) -> Position | None:
        """The last position delivered in ``room`` (what to recover from), if any."""
        return self._positions.get(room)

    def hold(self, room: str) -> None:
        """A join of ``room`` is in flight: keep its events until ``joined``/``release``."""
        self._held.setdefault(room, [])

    def receive(self, room: str, position: Position | None, item: T) -> list[T]:
        """An event arrived in ``room``; return it unless it is held or a duplicate."""
        held = self._held.get(room)
        if held is not None:
            held.append((position, item))
            return []
        return [item] if self._advance(room, position) else []

    def joined(self, room: str, position: Position) -> list[T]:
        """The join of ``room`` was acknowledged at ``position`` (the room's latest).

        Returns the held events in offset order without duplicates; the
        remembered position becomes at least ``position``.
        """
        ready = self.release(room)
        current = self._positions.get(room)
        if current is None or current.epoch != position.epoch or current.offset < position.offset:
            self._positions[room] = position
        return ready

    def release(self, room: str) -> list[T]:
        """Stop holding ``room`` (its join failed): its events in offset order, deduplicated."""
        held = self._held.pop(room, [])
        held.sort(key=lambda entry: -1 if entry[0] is None else entry[0].offset)
        return [item for position, item in held if self._advance(room, position)]

    def release_all(self) -> list[T]:
        """The connection dropped: deliver everything held, room by room."""
        return [item for room in list(self._held) for item in self.release(room)]

    def forget(self, room: str) -> None:
        """The client left ``room``: its position no longer matters."""
        self._positions.pop(room, None)
        self._held.pop(room, None)

    def _advance(self, room: str, position: Position | None) -> bool:
        """Record ``position``; False when it was already delivered (same epoch, not newer)."""
        if position is None:
            return True
        current = self._positions.get(room)
        if (
            current is not None
            and current.epoch == position.epoch
            and position.offset <= current.offset
        ):
            return False
        self._positions[room] = position
        return True
