"""``Session``: a client's protocol state, kept across its connections (no I/O).

It numbers requests and resolves them from ``ack``/``error`` messages,
tracks room positions (``recovery.Streams``) and calls the handlers. The
``Client`` feeds it the messages it reads and sends what it builds.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
from collections.abc import Callable
from typing import Any

from wirehub.client.events import LIFECYCLE, EventInfo, Gap, Handlers, PresenceChange
from wirehub.client.recovery import Streams
from wirehub.exceptions import CallError, ConnectionClosed, EventError
from wirehub.protocol import messages as wire

__all__ = ["DEFAULT", "Session", "State"]

logger = logging.getLogger("wirehub.client")

_Item = tuple[EventInfo, Any]  # an event ready for its handlers: (info, data)


class State(enum.Enum):
    """Where a client is: CONNECTING → OPEN ⇄ RECONNECTING → CLOSED."""

    CONNECTING = "connecting"
    OPEN = "open"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


class _Default(enum.Enum):
    TOKEN = 0


DEFAULT = _Default.TOKEN
"""Stands for "the client's ``call_timeout``" in ``timeout=`` arguments."""


class Session:
    """Requests awaiting answers, room positions and handlers of one client."""

    def __init__(self) -> None:
        self.handlers = Handlers()
        self.streams: Streams[_Item] = Streams()
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[Any], str | None]] = {}
        self.on_refresh: Callable[[float], None] | None = None
        """Called with ``expires_in`` when the server asks for a new token (``refresh``)."""
        self.on_call: Callable[[int, EventInfo, Any], None] | None = None
        """Called with the id, the ``EventInfo`` and the data of a call from the server."""
        self.on_joined: Callable[[str, wire.Position], None] | None = None
        """Called with the room and position of a server-side join (``joined``)."""
        self.on_left: Callable[[str], None] | None = None
        """Called with the room of a server-side leave (``left``)."""

    # -- requests --------------------------------------------------------------

    def expect(
        self, join: str | None = None, cause: str | None = None
    ) -> tuple[int, asyncio.Future[Any]]:
        """A new request id and the future its answer resolves.

        ``join`` names the room when the request is a join: the room's events
        are held until the answer (see ``Streams.hold``); ``cause`` says why
        it is re-joined (``"recovery"`` after a reconnection).
        """
        id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[id] = (future, join)
        if join is not None:
            self.streams.hold(join, cause)
        return id, future

    def forget(self, id: int) -> None:
        """The caller stopped waiting for request ``id`` (answered, timed out, not sent)."""
        entry = self._pending.pop(id, None)
        if entry is not None and entry[1] is not None:
            self.deliver(self.streams.release(entry[1]))

    def lost(self, why: ConnectionClosed) -> None:
        """The connection closed: every pending request fails with ``why``."""
        pending, self._pending = self._pending, {}
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(ConnectionClosed(why.code, why.reason))
        self.deliver(self.streams.lost())

    # -- receiving -------------------------------------------------------------

    def receive(self, raw: str | bytes) -> None:
        """Handle one message from the server; a malformed one is logged and ignored."""
        try:
            message, payload = wire.decode_server(raw)
        except wire.DecodeError as exc:
            logger.warning("ignoring a message the protocol does not allow: %s", exc)
            return
        if type(message) is wire.Event:
            self._event(message, payload)
        elif type(message) is wire.Ack:
            self._answer(message.id, payload if payload is not None else message.data, None)
        elif type(message) is wire.Error:
            if message.id is None:  # not an answer: e.g. a message the server could not parse
                error = EventError(message.code, message.message, message.details)
                self.handlers.call("error", error)
            else:
                error = CallError(message.code, message.message, message.details)
                self._answer(message.id, None, error)
        elif type(message) is wire.Presence:
            change = PresenceChange(message.room, message.joined, message.left)
            self.handlers.call("presence", change)
        elif type(message) is wire.Gap:
            position = wire.Position(message.epoch, message.offset)
            self.deliver(self.streams.notice(message.room, position, message.reason))
        elif type(message) is wire.Skip:
            position = wire.Position(message.epoch, message.offset)
            self.deliver(self.streams.skip(message.room, position))
        elif type(message) is wire.Joined:
            if self.on_joined is not None:
                self.on_joined(message.room, wire.Position(message.epoch, message.offset))
        elif type(message) is wire.Left:
            if self.on_left is not None:
                self.on_left(message.room)
        elif type(message) is wire.Refresh:
            if self.on_refresh is not None:
                self.on_refresh(message.expires_in)
        else:
            logger.warning("ignoring an unexpected %s message", type(message).__name__.lower())

    def deliver(self, items: list[_Item | Gap]) -> None:
        """Call the handlers of each event (and the ``gap`` callbacks), in order."""
        for item in items:
            if isinstance(item, Gap):
                logger.info(
                    "gap in room %r (%s): %s → %s", item.room, item.reason, item.last, item.position
                )
                self.handlers.call("gap", item)
                continue
            info, data = item
            if info.event in LIFECYCLE:
                logger.warning("server event %r has a reserved name; not delivered", info.event)
                continue
            self.handlers.call(info.event, data, info)

    def _answer(self, id: int, data: Any, error: CallError | None) -> None:
        entry = self._pending.pop(id, None)
        if entry is None:
            return  # the caller gave up (timeout): a late answer is dropped
        future, room = entry
        if room is not None:
            if error is None and isinstance(data, dict):
                position = wire.Position(str(data.get("epoch")), int(data.get("offset", 0)))
                recovered = data.get("recovered")
                self.deliver(self.streams.joined(room, position, recovered))
            else:
                self.deliver(self.streams.release(room))
        if future.done():
            return
        if error is None:
            future.set_result(data)
        else:
            future.set_exception(error)

    def _event(self, message: wire.Event, payload: bytes | None) -> None:
        info = EventInfo(message.event, message.room, message.epoch, message.offset)
        item = (info, payload if payload is not None else message.data)
        if message.id is not None:
            if self.on_call is not None:
                self.on_call(message.id, *item)
            return
        if message.room is None:
            self.deliver([item])
            return
        position = None
        if message.epoch is not None and message.offset is not None:
            position = wire.Position(message.epoch, message.offset)
        self.deliver(self.streams.receive(message.room, position, item))
