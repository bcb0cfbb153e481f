"""``Node``: one process of a hub — what every ``Peer`` of it is given.

The ``Hub`` is what the application configures; the ``Node`` is the part of
it that connected peers use: the settings, the handlers and hooks, the
welcomed peers, the rooms (``Rooms``), publishing through the broker, and
delivering what the broker hands back (it is the broker's listener). It
never sees a ``Peer`` class, only ``Member``s, so ``peer.py`` sits above it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple

from wirehub.brokers.base import Broker, Publication
from wirehub.config import Limits, Timeouts
from wirehub.hub.fanout import Fanout, Member, log_context
from wirehub.hub.handlers import HandlerSpec
from wirehub.hub.room import Rooms
from wirehub.protocol import messages as wire
from wirehub.security.auth import TokenAuth
from wirehub.security.ratelimit import PeerLimiter, RateLimits

__all__ = ["CHECK_INTERVAL", "DisconnectReason", "EmitAuthorizer", "Node"]

logger = logging.getLogger("wirehub.hub")

CHECK_INTERVAL = 10.0
"""Seconds between two comparisons of every room's position with the broker's."""

EmitAuthorizer = Callable[[Any, str, Any], Any]  # (peer, event, data) -> bool or Awaitable


class DisconnectReason(NamedTuple):
    """Why a peer left: the WebSocket close code and reason (1006: connection lost)."""

    code: int
    reason: str


class Node:
    """The per-process state of a hub, shared by its peers.

    ``handlers`` maps event names to their ``HandlerSpec``; ``peers`` holds
    the welcomed members by id; ``rooms`` is the membership table.
    ``authorize_emit`` and ``token_auth`` are the hooks the hub registered.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        limits: Limits,
        timeouts: Timeouts,
        stats: dict[str, int],
        presence: bool,
        compression: bool,
        slow_consumer: Literal["close", "drop"],
        rate_limits: RateLimits,
    ) -> None:
        self.broker = broker
        self.limits = limits
        self.timeouts = timeouts
        self.stats = stats
        self.rate_limits = rate_limits
        self.handlers: dict[str, HandlerSpec] = {}
        self.authorize_emit: EmitAuthorizer | None = None
        self.token_auth: TokenAuth | None = None
        self.peers: dict[str, Member] = {}
        self.fanout = Fanout(
            limits=limits, stats=stats, compression=compression, slow_consumer=slow_consumer
        )
        self.rooms = Rooms(self, self.fanout, limits=limits, presence=presence, stats=stats)
        self.channels: dict[str, Callable[[Publication], None]] = {}
        """Internal broker channels: rooms no client can join (a control character in
        the name) whose publications go to a callback, not to peers (hub/relay.py)."""
        self.tasks: set[asyncio.Task[Any]] = set()
        """User code running for peers: handlers, joins, ``disconnect`` handlers (the
        server's shutdown lets them finish within its deadline)."""
        self.check_interval: float | None = CHECK_INTERVAL
        self._checks: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the broker (this node is its listener) and start the position checks."""
        await self.broker.start(self)
        if self.check_interval is not None:
            self._checks = asyncio.get_running_loop().create_task(self._check_positions())

    async def stop(self) -> None:
        """Stop the position checks and close the broker."""
        checks, self._checks = self._checks, None
        if checks is not None:
            checks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checks
        await self.broker.close()

    async def _check_positions(self) -> None:
        # A publication this node did not hear is otherwise found only when a
        # later one arrives; a room that went quiet would keep the hole.
        assert self.check_interval is not None
        while True:
            await asyncio.sleep(self.check_interval)
            self.rooms.check()

    # -- what a peer asks -----------------------------------------------------------

    def limiter(self) -> PeerLimiter | None:
        """A fresh per-peer rate limiter, or None when per-peer limits are off."""
        return PeerLimiter(self.rate_limits) if self.rate_limits.per_peer else None

    async def emit_allowed(self, member: Member, event: str, data: Any) -> bool:
        """Run the ``authorize_emit`` hook (an exception refuses, and is logged)."""
        assert self.authorize_emit is not None
        try:
            allowed = self.authorize_emit(member, event, data)
            if inspect.isawaitable(allowed):
                allowed = await allowed
        except Exception:
            logger.exception(
                "authorize_emit failed for event %r; refusing",
                event,
                extra=log_context(member, event=event),
            )
            allowed = False
        if not allowed:
            self.stats["forbidden"] += 1
        return bool(allowed)

    def welcomed(self, member: Member) -> None:
        """``member`` got its welcome: global and direct emits reach it from now on."""
        self.peers[member.id] = member

    def gone(self, member: Member, reason: DisconnectReason) -> None:
        """``member``'s connection closed: leave its rooms, announce, run ``disconnect``."""
        welcomed = self.peers.pop(member.id, None) is not None
        rooms, emptied = self.rooms.gone(member)
        handler = welcomed and "disconnect" in self.handlers
        if not (emptied or (self.rooms.presence and rooms) or handler):
            return  # nothing to wait for: no task (a handshake storm closes thousands)
        task = asyncio.get_running_loop().create_task(
            self._after_gone(member, reason, rooms, emptied, welcomed)
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _after_gone(
        self,
        member: Member,
        reason: DisconnectReason,
        rooms: list[str],
        emptied: list[str],
        welcomed: bool,
    ) -> None:
        await self.rooms.after_gone(member, rooms, emptied)
        spec = self.handlers.get("disconnect")
        if spec is None or not welcomed:
            return
        try:
            result = spec.run(member, reason)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("disconnect handler failed", extra=log_context(member))

    # -- the broker ----------------------------------------------------------------------

    async def publish(self, publication: Publication) -> wire.Position | None:
        """Send ``publication`` to every node; its position, for a numbered room event."""
        return await self.broker.publish(publication)

    # -- the broker's listener ---------------------------------------------------------

    def resubscribed(self) -> None:
        """The broker subscribed again after losing its link: catch up every room."""
        self.rooms.check()

    def deliver(self, publication: Publication) -> None:
        """Deliver a publication to this node's peers (``BrokerListener``)."""
        if publication.room is not None:
            channel = self.channels.get(publication.room)
            if channel is None:
                self.rooms.receive(publication)
            else:
                channel(publication)
            return
        receivers: Iterable[Member]
        if publication.peer is not None:
            member = self.peers.get(publication.peer)
            if member is None:
                return
            receivers = (member,)
        else:
            receivers = self.peers.values()
        payload, text = wire.event_message(publication.body, publication.binary)
        self.fanout.send(receivers, payload, text, publication.exclude)
