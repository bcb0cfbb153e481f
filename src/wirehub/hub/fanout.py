"""``Fanout``: one message to many members — one encode, one frame, many writes.

A ``Member`` is what delivery needs of a connected client (``Peer`` is the
one implementation); the slow-consumer policy (``Hub(slow_consumer=...)``)
is applied here, on every write of a broadcast.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterable
from typing import Any, Literal, Protocol

from wirehub.codes import CloseCode
from wirehub.config import Limits
from wirehub.hub.transport import Transport
from wirehub.protocol.messages import Gap, Position, encode, skip_message
from wirehub.protocol.websocket import (
    COMPRESSION_THRESHOLD,
    encode_deflated_frame,
    encode_frame,
)

__all__ = ["Fanout", "Held", "Member", "log_context"]

Held = tuple[Position | None, bytes, bool]
"""A message kept for a member while its join replays history: (position, payload, is_text)."""

logger = logging.getLogger("wirehub.hub")

CUTS_KEPT = 10_000
"""Slow consumers remembered at most (the oldest are forgotten first)."""

CUT_MEMORY = 600.0
"""Seconds a slow consumer's close is remembered for the client's reconnection."""

DROPPED = "slow_consumer"
"""The reason of the ``gap`` notices announcing room events dropped for a slow consumer."""


class Member(Protocol):
    """A connected client as rooms and delivery see it (``Peer`` implements it)."""

    id: str
    info: dict[str, Any]
    state: dict[str, Any]
    transport: Transport

    @property
    def connected(self) -> bool: ...

    @property
    def welcomed(self) -> bool:
        """True once the client got its ``welcome``: only then may anything else reach it."""

    def send(
        self,
        payload: bytes,
        text: bool,
        room: str | None = None,
        position: Position | None = None,
    ) -> None:
        """Send one protocol message to this client alone (kept until its welcome);
        ``room`` and ``position`` for a message of a room's stream (an event, a
        ``skip``, a ``gap``): if it is dropped, a ``gap`` notice says so later."""


def log_context(member: Member, **fields: str) -> dict[str, str | None]:
    """``member``'s id and client address for a log record's ``extra`` (with ``fields``).

    The JSON log format (``wirehub serve --log-format json``) writes them as fields.
    """
    return {"peer": member.id, "client": member.transport.request.client_ip, **fields}


class Fanout:
    """Writes one message to many members, applying the slow-consumer policy.

    ``slow_consumer``: ``"close"`` a member whose unsent bytes pass
    ``limits.max_buffered`` (4008), or ``"drop"`` what it cannot take.
    ``compression``: big messages are also deflated, once, for every member
    that takes shared deflate frames.
    """

    def __init__(
        self,
        *,
        limits: Limits,
        stats: dict[str, int],
        compression: bool,
        slow_consumer: Literal["close", "drop"],
    ) -> None:
        self.limits = limits
        self.stats = stats
        self.compression = compression
        self.slow_consumer = slow_consumer
        self.cuts: collections.OrderedDict[str, tuple[int, str, float]] = collections.OrderedDict()
        """Peers closed as slow consumers whose clients may not have read the close frame:
        peer id -> (code, reason, when). A client still stalled when the server gives up
        on its close reads the backlog, then only EOF; its reconnection names its last peer
        id and its welcome says why (``closed``, PROTOCOL.md §2)."""
        self.drops: dict[Member, dict[str, Position]] = {}
        """Under ``"drop"``: for each member that is behind, the last position of each
        room whose message was dropped for it (one entry per room: bounded by its
        rooms). ``announce`` turns them into ``gap`` notices, before anything newer."""

    def send(
        self,
        receivers: Iterable[Member],
        payload: bytes,
        text: bool,
        exclude: str | None,
        holds: dict[Member, list[Held]] | None = None,
        position: Position | None = None,
        *,
        volatile: bool = False,
        room: str | None = None,
    ) -> None:
        """Send ``payload`` to every receiver but ``exclude`` (a member id).

        A member not welcomed yet keeps it until its welcome (``Member.send``);
        a member in ``holds`` (a join replaying history) gets it appended
        there, with the stream ``position`` it brings the room to. A
        ``volatile`` message skips a receiver that is behind (its unsent
        bytes above ``limits.write_buffer_high``): a newer one will follow, so
        queueing it would only delay that one (a game's snapshot, a cursor).
        When the message is ``room``'s event at ``position``, ``exclude`` gets
        a ``skip`` marker in its place, by the same path (PROTOCOL.md §7): its
        client's position moves on without a hole.
        """
        frame = encode_frame(payload, text)
        deflated = frame
        if self.compression and len(payload) >= COMPRESSION_THRESHOLD:
            deflated = encode_deflated_frame(payload, text)
        sent = 0
        for member in receivers:  # the hot loop: attribute reads and one call per receiver
            transport = member.transport
            if member.id == exclude:
                if room is not None and position is not None:  # built once: ids are unique
                    marker = skip_message(room, position)
                    self.send((member,), marker, True, None, holds, position, room=room)
                continue
            if holds and member in holds:  # its replay sends it in order (or drops it then)
                holds[member].append((position, payload, text))
            elif transport.writing_paused and (
                volatile or self.behind(member, transport, room, position)
            ):
                continue
            elif not member.welcomed:  # joined by the connect handler: sent after the welcome
                member.send(payload, text, room, position)
            else:
                transport.send_frame(deflated if transport.shares_deflate else frame)
                sent += 1
        self.stats["deliveries"] += sent

    def behind(
        self,
        member: Member,
        transport: Transport,
        room: str | None = None,
        position: Position | None = None,
        *,
        vital: bool = False,
    ) -> bool:
        """Apply the slow-consumer policy; True when this message must be skipped.

        For every write to a member that is behind (``transport.writing_paused``):
        broadcasts, and each peer's own acks, errors, replays and events.
        Under ``"drop"``, a message of ``room``'s stream at ``position`` is
        remembered for a ``gap`` notice (``announce``); a ``vital`` message (a
        reply the client waits for — ack, error — or one its state depends on —
        ``refresh``, ``joined``, ``left``) is sent anyway, up to twice
        ``max_buffered``, past which the member is closed with 4008 as under
        ``"close"``. Replies cannot pile up: a member's socket is not read while
        it is behind, and ``max_pending_calls`` bounds its handlers running.
        """
        buffered = transport.buffered
        limit = self.limits.max_buffered
        if buffered <= limit:
            if member in self.drops:  # it is taking messages again: the gaps go first
                self.announce(member)
            return False
        if self.slow_consumer == "drop" and vital and buffered <= 2 * limit:
            return False
        self.stats["dropped"] += 1
        if self.slow_consumer == "drop" and not vital:
            if room is not None and position is not None:
                self._dropped(member, room, position)
            return True
        if member.connected and "slow" not in member.state:
            member.state["slow"] = True
            self.stats["slow_consumers"] += 1
            logger.warning(
                "peer %s is not reading (%d bytes unsent); closing it with 4008",
                member.id,
                buffered,
                extra=log_context(member),
            )
            reason = "slow consumer: not reading fast enough"
            transport.close(CloseCode.SLOW_CONSUMER, reason)
            self._remember(member.id, CloseCode.SLOW_CONSUMER, reason)
        return True

    def _dropped(self, member: Member, room: str, position: Position) -> None:
        rooms = self.drops.setdefault(member, {})
        rooms[room] = position
        if "dropping" not in member.state:  # once per peer: it may fall behind again and again
            member.state["dropping"] = True
            logger.warning(
                "peer %s is not reading; dropping room events for it while it is behind "
                "(gap notices tell its client)",
                member.id,
                extra=log_context(member),
            )

    def announce(self, member: Member, room: str | None = None) -> None:
        """Send ``member`` a ``gap`` notice for each room (or ``room`` only) whose
        messages were dropped for it, at the last dropped position (PROTOCOL.md §7).

        Called when its transport can take messages again (``Session.writing_resumed``),
        before anything newer reaches it while it is still behind, and by a join's
        replay for its room; the notices skip the policy (a few bytes each).
        """
        rooms = self.drops.get(member)
        if rooms is None:
            return
        names = list(rooms) if room is None else [room] if room in rooms else []
        for name in names:
            at = rooms.pop(name)
            member.transport.send_text(encode(Gap(name, at.epoch, at.offset, DROPPED)))
        if not rooms:
            del self.drops[member]

    def forget(self, member: Member, room: str | None = None) -> None:
        """``member`` left ``room`` (None: every room, it is gone): no notice is owed."""
        rooms = self.drops.get(member)
        if rooms is not None and room is not None:
            rooms.pop(room, None)
        if rooms is not None and (room is None or not rooms):
            del self.drops[member]

    def _remember(self, peer: str, code: int, reason: str) -> None:
        self.cuts[peer] = (code, reason, time.monotonic())
        while len(self.cuts) > CUTS_KEPT:
            self.cuts.popitem(last=False)

    def cut_of(self, peer: str) -> tuple[int, str] | None:
        """The close of ``peer`` as a slow consumer, told once: it is then forgotten."""
        entry = self.cuts.pop(peer, None)
        if entry is None or time.monotonic() - entry[2] > CUT_MEMORY:
            return None
        return entry[0], entry[1]
