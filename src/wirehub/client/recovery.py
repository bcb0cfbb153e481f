"""Per-room stream positions: order, de-duplication and gap detection (no I/O).

The client remembers, per room, the last ``(epoch, offset)`` it processed
(docs/PROTOCOL.md §7). Within an epoch offsets run on by one, so each room
event is one of: the next one (delivered), an old one (a duplicate, dropped),
or past a hole — a skipped offset or another epoch. A hole makes the client
hold the room's events and re-join with ``since`` (``recover``); the answer
fills the hole, or the client reports a ``Gap`` before any later event.

While a join is in flight the room's events are held too, because a replay
may interleave with live events and repeat some; the ack releases them in
offset order. A server ``gap`` notice moves the position forward after
reporting the gap. A ``skip`` marker (an event sent with ``exclude`` naming
this client) is checked like an event and delivers nothing. Every method
returns what to hand to the application now, in order: the caller's items
and ``Gap`` reports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Generic, TypeVar

from wirehub.client.events import Gap
from wirehub.protocol.messages import Position

__all__ = ["Streams"]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    """A held room event; with ``item`` None, a ``skip`` marker, or a server gap notice
    (``notice``: its reason). Events and markers take their offset; notices do not."""

    position: Position
    item: T | None
    notice: str | None = None


@dataclasses.dataclass(slots=True)
class _Hold(Generic[T]):
    entries: list[_Entry[T]]
    cause: str | None  # why the room is re-joined: "recovery", "jump"; None: the user's join


class Streams(Generic[T]):
    """Positions and held-back events of the rooms a client hears from.

    ``recover(room)`` is called when a hole needs a re-join with ``since``
    (the room is held from then on, until ``joined`` or ``release``); when
    it is None, holes are reported as gaps at once.
    """

    def __init__(self, recover: Callable[[str], None] | None = None) -> None:
        self.recover = recover
        self._positions: dict[str, Position] = {}
        self._held: dict[str, _Hold[T]] = {}

    def since(self, room: str) -> Position | None:
        """The last position processed in ``room`` (what to recover from), if any."""
        return self._positions.get(room)

    def hold(self, room: str, cause: str | None = None) -> None:
        """A join of ``room`` is in flight: keep its events until ``joined``/``release``."""
        held = self._held.setdefault(room, _Hold([], cause))
        held.cause = held.cause or cause

    def start(self, room: str, position: Position) -> None:
        """The server put this client in ``room`` at ``position`` (``welcome.rooms``, a
        ``joined`` message). A position already known is kept: its events follow it,
        and a join in flight is answered by its ack."""
        self._positions.setdefault(room, position)

    def restart(self, room: str) -> None:
        """Forget the position (a join with ``history`` replays events seen before)."""
        self._positions.pop(room, None)

    def receive(self, room: str, position: Position | None, item: T) -> list[T | Gap]:
        """An event arrived in ``room``: return it, nothing (held, duplicate), or a gap first."""
        if position is None:  # volatile: not part of the stream
            return [item]
        return self._arrive(room, _Entry(position, item))

    def notice(self, room: str, position: Position, reason: str) -> list[T | Gap]:
        """A server ``gap`` notice: events up to ``position`` may be missing."""
        return self._arrive(room, _Entry(position, None, reason))

    def skip(self, room: str, position: Position) -> list[T | Gap]:
        """A ``skip`` marker: the event at ``position`` excluded this client. Checked as
        an event (old, next or past a hole); nothing of it reaches the application."""
        return self._arrive(room, _Entry(position, None))

    def joined(self, room: str, position: Position, recovered: bool | None = None) -> list[T | Gap]:
        """The join of ``room`` was acknowledged at ``position`` (the room's latest).

        ``recovered`` is the ack's: True when every event after ``since`` was
        replayed (before the ack, so they are held now), False when not,
        None for a join without ``since``. The held events come out in
        offset order without duplicates, after a ``Gap`` if some are missing.
        """
        held = self._held.pop(room, None)
        entries, cause = (held.entries, held.cause) if held else ([], None)
        last = self._positions.get(room)
        if last is not None and last.epoch == position.epoch and position.offset < last.offset:
            # The answer of an earlier of two overlapping re-joins (the reconnection's,
            # and one a hole asked for): the stream is past it already, never back.
            position = last
        out: list[T | Gap]
        if last is None:  # a first join: what came up to the ack, in order; no promise
            out = _up_to(room, entries, None, position)
        elif recovered:  # replayed up to the ack, as the server promises
            out = _up_to(room, entries, last, position)
        elif recovered is None and cause is None:
            # A join of a room already joined on this connection: nothing was
            # missed, the stream goes on from ``last`` (the ack may be ahead of it).
            out, position = [], last
        else:
            out = self._rebase(room, entries, last, position, cause)
        self._positions[room] = position
        stale = last.epoch if last is not None and last.epoch != position.epoch else None
        rest = [e for e in entries if _before(position, e.position) and e.position.epoch != stale]
        return out + self._walk(room, _ordered(rest, position.epoch), recover=True)

    def release(self, room: str) -> list[T | Gap]:
        """Stop holding ``room`` (its join failed): held events in order, holes reported."""
        held = self._held.pop(room, None)
        if held is None:
            return []
        return self._walk(room, self._ordered_from(room, held.entries), recover=False)

    def lost(self) -> list[T | Gap]:
        """The connection dropped: deliver what follows on contiguously, drop the rest.

        What is dropped comes after a hole, so the re-join after the
        reconnection recovers it (or reports the gap).
        """
        out: list[T | Gap] = []
        for room, held in list(self._held.items()):
            del self._held[room]
            out += self._walk(room, self._ordered_from(room, held.entries), recover=None)
        return out

    def forget(self, room: str) -> None:
        """The client left ``room``: its position no longer matters."""
        self._positions.pop(room, None)
        self._held.pop(room, None)

    # -- the stream ------------------------------------------------------------

    def _arrive(self, room: str, entry: _Entry[T]) -> list[T | Gap]:
        held = self._held.get(room)
        if held is not None:
            held.entries.append(entry)
            return []
        return self._walk(room, [entry], recover=True)

    def _walk(self, room: str, entries: list[_Entry[T]], recover: bool | None) -> list[T | Gap]:
        """Process ``entries`` in order from the room's position.

        At a hole: ``recover`` True re-joins (the rest is held), False
        reports the gap and goes on, None drops the rest.
        """
        out: list[T | Gap] = []
        for index, entry in enumerate(entries):
            last = self._positions.get(room)
            step = self._step(room, entry)
            if step == "next":
                if entry.item is not None:
                    out.append(entry.item)
                elif entry.notice is not None:
                    out.append(Gap(room, "server", last, entry.position, entry.notice))
            elif step == "hole":
                assert last is not None
                reason = "epoch" if entry.position.epoch != last.epoch else "jump"
                if recover is None:
                    break
                if recover and self.recover is not None:
                    self._held[room] = _Hold(entries[index:], reason)
                    self.recover(room)
                    break
                before = Position(entry.position.epoch, entry.position.offset - 1)
                out.append(Gap(room, reason, last, before))
                out += [entry.item] if entry.item is not None else []
                self._positions[room] = entry.position
        return out

    def _step(self, room: str, entry: _Entry[T]) -> str:
        """Classify ``entry`` against the position and advance it: next, old or hole."""
        last = self._positions.get(room)
        at = entry.position
        if last is not None and not _before(last, at):
            return "old"
        if entry.notice is None and last is not None and not _follows(at, last):
            return "hole"
        self._positions[room] = at  # the next event or marker, a first one, or a notice ahead
        return "next"

    def _rebase(
        self,
        room: str,
        entries: list[_Entry[T]],
        last: Position,
        ack: Position,
        cause: str | None,
    ) -> list[T | Gap]:
        """The join's answer did not recover (or had no ``since``): the gap, then the events
        that lead up to the ack's position without a hole (the rest of the gap is dropped)."""
        offsets = {  # events and markers: both take their offset
            e.position.offset: e.item
            for e in entries
            if e.notice is None and e.position.epoch == ack.epoch
        }
        floor = last.offset if last.epoch == ack.epoch else 0
        start = ack.offset
        while start > floor and start in offsets:
            start -= 1
        continues = Position(ack.epoch, start)
        out: list[T | Gap] = []
        if continues != last:
            reason = "jump" if ack.epoch == last.epoch else "epoch"
            out.append(Gap(room, "recovery" if cause == "recovery" else reason, last, continues))
        out += [item for n in range(start + 1, ack.offset + 1) if (item := offsets[n]) is not None]
        return out

    def _ordered_from(self, room: str, entries: list[_Entry[T]]) -> list[_Entry[T]]:
        last = self._positions.get(room)
        return _ordered(entries, last.epoch if last else None)


def _up_to(
    room: str, entries: list[_Entry[T]], last: Position | None, ack: Position
) -> list[T | Gap]:
    """The events of the ack's epoch after ``last`` up to the ack's, in order, once.

    A server notice among them that is ahead of the events delivered so far is
    reported (rule 3): the replay trusted up to the ack may still have a hole the
    server announced. Before the first event of a first join (``last`` None) there
    is nothing to miss, so a notice there only sets where the events start.
    """
    out: list[T | Gap] = []
    floor = last.offset if last is not None and last.epoch == ack.epoch else 0
    for entry in _ordered(entries, ack.epoch):
        at = entry.position
        if at.epoch != ack.epoch or not floor < at.offset <= ack.offset:
            continue
        if entry.notice is None:
            out += [entry.item] if entry.item is not None else []  # a skip: nothing
        elif last is not None:
            out.append(Gap(room, "server", last, at, entry.notice))
        else:
            continue
        floor, last = at.offset, at
    return out


def _before(a: Position, b: Position) -> bool:
    """Whether ``b`` comes after ``a``: a greater offset, or another epoch (no order known)."""
    return a.epoch != b.epoch or b.offset > a.offset


def _follows(at: Position, last: Position) -> bool:
    return at.epoch == last.epoch and at.offset == last.offset + 1


def _ordered(entries: list[_Entry[T]], epoch: str | None) -> list[_Entry[T]]:
    """``epoch`` first, then other epochs in order of arrival; by offset, a notice last."""
    rank = {epoch: 0}
    for entry in entries:
        rank.setdefault(entry.position.epoch, len(rank))
    return sorted(
        entries, key=lambda e: (rank[e.position.epoch], e.position.offset, e.notice is not None)
    )
