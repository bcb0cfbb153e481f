"""The ``Broker`` interface: how emits travel between peers and nodes.

The hub never delivers a room or global emit itself: it publishes to the
broker, and the broker calls every node's ``BrokerListener.deliver`` (with the
in-memory broker, the one node, synchronously). So a Redis broker drops in
without touching the hub.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from wirehub.protocol.messages import Position

__all__ = ["Broker", "BrokerListener", "History", "Publication"]


@dataclasses.dataclass(frozen=True, slots=True)
class Publication:
    """One emit, encoded once by the publishing node (see ``event_body``).

    Exactly one of ``room`` / ``peer`` is set, or neither for "every peer".
    ``exclude`` is a peer id that must not receive it (the sender).
    ``position`` is set by the broker for room publications.
    """

    body: bytes
    binary: bytes | None = None
    room: str | None = None
    peer: str | None = None
    exclude: str | None = None
    position: Position | None = None
    presence: bool = False  # a presence notice: ``body`` ends a ``presence`` message
    volatile: bool = False  # a room event that is not numbered, kept or recovered

    @property
    def numbered(self) -> bool:
        """Whether the broker gives it a position and keeps it (room events only)."""
        return self.room is not None and not self.presence and not self.volatile


@dataclasses.dataclass(frozen=True, slots=True)
class History:
    """The answer to a recovery request.

    ``recovered`` is False when the events after ``since`` are no longer all
    kept (evicted, or another epoch): the client must then refetch its state
    instead of trusting it. ``position`` is the room's latest position.
    """

    position: Position
    publications: list[Publication]
    recovered: bool


class BrokerListener(Protocol):
    def deliver(self, publication: Publication) -> None:
        """Deliver to this node's local peers. Called in publication order per room."""

    def resubscribed(self) -> None:
        """The broker lost its subscriptions and has them again: publications made
        meanwhile were not delivered, so the listener compares positions with
        ``history`` (every node's ``Stream.check``)."""


class Broker(Protocol):
    """Moves publications to every node.

    Guarantees every implementation keeps (checked by one shared test suite):

    - Per-room order: publications to one room reach every node in the order
      of their offsets; offsets count up by one within an epoch.
    - Live delivery is at most once. What a node misses (a disconnected
      client, a broker outage) is recoverable from history while it is kept;
      when it is not, ``history`` says ``recovered=False`` — never a silent gap.
      A broker that lost its subscriptions calls ``listener.resubscribed()``
      once it has them again.
    - Nothing half-succeeds silently: ``publish`` returns only once the
      publication is on its way to every node (with its position, for a
      numbered one), else raises ``wirehub.exceptions.Unavailable``; it never
      delivers a numbered publication without a position. ``subscribe`` returns
      once the room's publications will be delivered, else raises
      ``Unavailable`` (counted all the same: the broker subscribes when it
      can; ``unsubscribe`` gives it back); ``history`` raises ``Unavailable``
      rather than answer for a room it cannot read.
    - An epoch is never reused: a room's stream that was lost (evicted,
      expired, restarted without persistence) starts a new epoch, so offsets
      never repeat within one.
    - Presence and volatile publications carry no position and are not kept
      (``Publication.numbered`` says which ones do).
    - A publication is delivered to a node only if it subscribed to the room
      (room publications) — global and direct ones reach every node.
    - ``subscribe``/``unsubscribe`` calls are counted per room: the room is
      subscribed while there were more subscribes than unsubscribes, so calls
      that overlap (a leave finishing after the next join) end right.

    The hub may call these methods outside any asyncio Task (it steps event
    handlers eagerly, see hub/eager.py): an implementation that needs one
    (for ``asyncio.timeout``, or a client library that does) creates it.
    """

    async def start(self, listener: BrokerListener) -> None:
        """Connect and start delivering to ``listener``."""

    async def close(self) -> None:
        """Stop delivering and release every connection."""

    async def publish(self, publication: Publication) -> Position | None:
        """Send to every node; return the position assigned to a numbered publication.

        Raises ``Unavailable`` when it cannot (or cannot tell whether it did)."""

    async def subscribe(self, room: str) -> None:
        """This node has members in ``room`` now; returns once it is subscribed.

        Raises ``Unavailable`` when the subscription cannot be confirmed now
        (the call still counts: ``unsubscribe`` gives it back)."""

    async def unsubscribe(self, room: str) -> None:
        """This node has no members in ``room`` any more."""

    async def history(self, room: str, since: Position | None, limit: int) -> History:
        """At most ``limit`` kept publications of ``room``: those after ``since``,
        or the latest ones when ``since`` is None. ``limit=0`` asks only for the
        position."""

    def health(self) -> dict[str, Any]:
        """State for ``/healthz``: at least ``{"broker": name, "ok": bool}``."""
