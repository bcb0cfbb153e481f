"""``Stream``: one room's stream as this node delivers it — the heart of the guarantee.

For each room with local members, the node keeps the position of the last
room event it delivered (``Stream.position``). A publication that follows
it — same epoch, next offset — is delivered at once. Anything else is
sorted out *before* any later event of the room is delivered:

- an offset already delivered is dropped (a live copy that a fill beat);
- a hole — an offset jump, or a new epoch — is filled from the broker's
  history; when history no longer has it, the room's members are sent a
  ``gap`` notice (docs/PROTOCOL.md §7) and delivery goes on after it;
- ``check()`` — called after the broker re-established its subscriptions,
  and periodically — compares the broker's position with ours and fills
  the difference the same way, so events published while this node was
  not listening are never silently skipped, even in a room that goes quiet.

So for each room event and each member: delivered once, in position order,
or covered by a gap notice that arrives before any later event of the room.

The idea is centrifuge's (the Go library behind Centrifugo): it keeps a
``StreamPosition`` per channel per node, checks every publication's offset
against it, and periodically compares it with the broker's to catch what
a lost PUB/SUB message would otherwise hide.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Protocol

from wirehub.brokers.base import History, Publication
from wirehub.protocol.messages import Position

__all__ = ["MAX_FILL", "HistoryReader", "Outlet", "Stream"]

logger = logging.getLogger("wirehub.hub")

MAX_FILL = 10_000
"""The most publications one fill asks the broker for (it keeps fewer anyway)."""


class HistoryReader(Protocol):
    """Where missed publications are read from (a ``Broker``)."""

    async def history(self, room: str, since: Position | None, limit: int) -> History: ...


class Outlet(Protocol):
    """Where a stream sends what it decided to deliver (the room's members)."""

    def deliver(self, publication: Publication) -> None:
        """A publication, in position order (or one without a position)."""

    def gap(self, position: Position, reason: str) -> None:
        """Events up to and including ``position`` may have been missed."""


class Stream:
    """The delivery order of one room on this node.

    Created when the room gets its first local member; ``start(position)``
    gives it the room's position once the broker confirmed the
    subscription. ``receive`` takes every publication of the room from the
    broker, in the broker's order. Fills read the broker's history: on a
    failure they retry ``attempts`` times (after ``retry`` seconds, doubling),
    then give up with a gap notice. ``stats`` counts ``filled``, ``gaps``
    and ``duplicates``.
    """

    __slots__ = (
        "_fill",
        "_pending",
        "_recheck",
        "attempts",
        "closed",
        "outlet",
        "position",
        "reader",
        "retry",
        "room",
        "stats",
    )

    def __init__(
        self,
        room: str,
        reader: HistoryReader,
        outlet: Outlet,
        *,
        stats: dict[str, int],
        attempts: int = 4,
        retry: float = 0.2,
    ) -> None:
        self.room = room
        self.reader = reader
        self.outlet = outlet
        self.stats = stats
        self.attempts = attempts
        self.retry = retry
        self.position: Position | None = None  # the last delivered; None before start()
        self.closed = False
        self._pending: collections.deque[Publication] = collections.deque()
        self._fill: asyncio.Task[None] | None = None
        self._recheck = False  # a check was asked for while a fill ran

    def start(self, position: Position) -> None:
        """The subscription is confirmed and the room is at ``position``: deliver from there."""
        self.position = position
        self._drain()

    def receive(self, publication: Publication) -> None:
        """A publication of the room from the broker; delivered now, or after a fill."""
        position = publication.position
        current = self.position
        if self._fill is None and not self._pending and current is not None:
            if position is None:
                self.outlet.deliver(publication)
                return
            if position.offset == current.offset + 1 and position.epoch == current.epoch:
                self.position = position
                self.outlet.deliver(publication)
                return
        self._pending.append(publication)
        if current is not None:
            self._drain()

    def check(self) -> None:
        """Compare with the broker's position and fill what this node missed."""
        if self.closed or self.position is None:
            return
        if self._fill is not None:
            self._recheck = True  # the running fill may have read before the loss
            return
        self._start_fill(None)

    def close(self) -> None:
        """The room has no local member any more: stop (a running fill is cancelled)."""
        self.closed = True
        self._pending.clear()
        if self._fill is not None:
            self._fill.cancel()
            self._fill = None

    @property
    def busy(self) -> bool:
        """Whether publications wait for a fill (or for ``start``)."""
        return self._fill is not None or bool(self._pending)

    # -- internals ---------------------------------------------------------------

    def _drain(self) -> None:
        """Deliver pending publications while they follow; start a fill at a hole."""
        pending = self._pending
        while pending and self._fill is None and not self.closed:
            publication = pending[0]
            position = publication.position
            current = self.position
            assert current is not None
            if position is not None and position.epoch == current.epoch:
                if position.offset <= current.offset:
                    pending.popleft()
                    self.stats["duplicates"] += 1
                    continue
                if position.offset != current.offset + 1:
                    self._start_fill(position)
                    return
            elif position is not None:
                self._start_fill(position)
                return
            pending.popleft()
            if position is not None:
                self.position = position
            self.outlet.deliver(publication)
        if self._recheck and self._fill is None and not self.closed:
            self._recheck = False
            self._start_fill(None)

    def _start_fill(self, target: Position | None) -> None:
        self._fill = asyncio.get_running_loop().create_task(self._run_fill(target))

    async def _run_fill(self, target: Position | None) -> None:
        """Read what follows our position; deliver it, or send a gap notice."""
        since = self.position
        assert since is not None
        try:
            kept = await self._read(since)
            fresh = None
            if kept is not None and not kept.recovered and kept.position.epoch != since.epoch:
                # The room's stream was reset: what the new epoch kept can still be replayed.
                fresh = await self._read(Position(kept.position.epoch, 0))
        except asyncio.CancelledError:
            return
        finally:
            self._fill = None
        if self.closed:
            return
        self._settle(since, target, kept, fresh)
        self._drain()

    async def _read(self, since: Position) -> History | None:
        """The broker's history after ``since``, or None when it cannot be read."""
        delay = self.retry
        for attempt in range(self.attempts):
            try:
                return await self.reader.history(self.room, since, MAX_FILL)
            except Exception as exc:
                if attempt == 0:
                    logger.warning("room %r: cannot read history to fill a gap: %s", self.room, exc)
            await asyncio.sleep(delay)
            delay *= 2
        return None

    def _settle(
        self,
        since: Position,
        target: Position | None,
        kept: History | None,
        fresh: History | None,
    ) -> None:
        if kept is not None and kept.recovered:
            self._replay(kept)
            return
        if fresh is not None and fresh.recovered and self._follows_reset(target, fresh):
            self._gap(Position(fresh.position.epoch, 0), "epoch")
            self._replay(fresh)
            return
        if target is not None:
            reason = "unavailable" if kept is None else "evicted"
            if kept is not None and kept.position.epoch != since.epoch:
                reason = "epoch"
            self._gap(Position(target.epoch, target.offset - 1), reason)
        elif kept is not None:
            reason = "evicted" if kept.position.epoch == since.epoch else "epoch"
            self._gap(kept.position, reason)
        # Else a check that could not read the broker: nothing is known to be
        # missing, and the next check (periodic, or after resubscribing) tries again.

    @staticmethod
    def _follows_reset(target: Position | None, fresh: History) -> bool:
        """Whether the new epoch's history reaches the publication that revealed it."""
        if target is None:
            return True
        return target.epoch == fresh.position.epoch and target.offset <= fresh.position.offset + 1

    def _replay(self, kept: History) -> None:
        for publication in kept.publications:
            position = publication.position
            current = self.position
            assert position is not None and current is not None
            if position.epoch == current.epoch and position.offset == current.offset + 1:
                self.position = position
                self.stats["filled"] += 1
                self.outlet.deliver(publication)

    def _gap(self, position: Position, reason: str) -> None:
        self.stats["gaps"] += 1
        logger.warning(
            "room %r: events up to %s:%d cannot be recovered (%s); members are told",
            self.room,
            position.epoch,
            position.offset,
            reason,
        )
        self.position = position
        self.outlet.gap(position, reason)
