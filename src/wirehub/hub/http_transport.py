"""``HttpTransport``: one HTTP fallback session, the hub's ``Transport`` over requests.

The peer of a fallback session is an ordinary ``Peer``: it sends through
this transport and is fed the messages of the session's POSTs, exactly as a
WebSocket connection would feed it (docs/PROTOCOL.md §14). What differs is
underneath: the records sent to the client wait in an ``Outbox`` until a
receive request takes them — a long-poll gets what is there (or waits for
the first record, at most ``Timeouts.poll``), a stream gets every record as
it comes — and stay there until a later request acknowledges them.

At most one receive request is served at a time: a new one ends the one
before (the client gave up on it). With no request in flight for
``Timeouts.session`` the session expires (its client is gone) and its peer
is disconnected with 1006. A closed session keeps its records for as long,
so the client's next request still gets the close record.

The session lives on the node that opened it; requests reaching another node
are carried here through the broker (``hub/relay.py``) and answer through a
``Receiver`` that publishes back instead of writing to a socket.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from wirehub.http.messages import Request
from wirehub.hub.node import Node
from wirehub.hub.transport import Session
from wirehub.protocol.fallback import PING_RECORD, Outbox, close_record
from wirehub.protocol.websocket import Message, encode_frame

__all__ = ["HttpTransport", "Receiver", "Sessions"]

logger = logging.getLogger("wirehub.hub")

LONG_POLLING = "long-polling"
STREAMING = "streaming"


class Receiver(Protocol):
    """Where the records for one receive request go (a response, here or on another node)."""

    stream: bool
    """Keep writing until ``end`` (a stream), or end after the first write (a long-poll)."""

    def write(self, chunk: bytes) -> None:
        """Records for the client (whole records, in order)."""

    def end(self) -> None:
        """No more records for this request; called once, after the last ``write``."""


class Sessions(Protocol):
    """What a session needs of the registry that holds it (``Fallback``)."""

    node: Node

    def closed(self, transport: HttpTransport) -> None:
        """``transport`` closed: its peer is gone (it still answers requests for a while)."""

    def forget(self, transport: HttpTransport) -> None:
        """``transport`` is over: requests for it are answered 410 from now on."""


class HttpTransport:
    """The hub's ``Transport`` for one HTTP fallback session (``kind`` says which style)."""

    shares_deflate = False  # records are never compressed
    subprotocol = None

    def __init__(self, sessions: Sessions, request: Request, sid: str, key: str) -> None:
        self.sessions = sessions
        self.timeouts = sessions.node.timeouts
        self.loop = asyncio.get_running_loop()
        self.sid = sid
        self.key = key
        self.kind = LONG_POLLING
        self.session: Session | None = None  # the Peer, once opened
        self.outbox = Outbox()
        self.writing_paused = False
        self.closed: tuple[int, str] | None = None  # (code, reason) once closing
        self.received = 0  # client messages processed: the next POST's seq
        self._request = request
        self._receiver: Receiver | None = None
        self._flushing = False  # a flush is scheduled for the end of this tick
        self._reading_paused = False
        self._resumed: asyncio.Future[None] | None = None
        self._drained: list[asyncio.Future[None]] = []
        limits = sessions.node.limits
        self._high_water = limits.write_buffer_high
        self._low_water = limits.write_buffer_low
        self._poll_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._idle()

    def __repr__(self) -> str:
        return f"<HttpTransport {self.sid} {self.kind}>"

    # -- Transport (what the Peer sees) ----------------------------------------------

    @property
    def request(self) -> Request:
        return self._request

    @property
    def buffered(self) -> int:
        """Bytes the client has not acknowledged (sent or not)."""
        return self.outbox.size

    def send(self, message: Message) -> None:
        if isinstance(message, str):
            self.send_frame(encode_frame(message.encode(), True))
        else:
            self.send_frame(encode_frame(message, False))

    def send_text(self, payload: bytes) -> None:
        self.send_frame(encode_frame(payload, True))

    def send_frame(self, frame: bytes) -> None:
        if self.closed is not None:
            return
        self.outbox.append(frame)
        if self.outbox.size >= self._high_water:
            self.writing_paused = True
        self._flush_soon()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send the close record and disconnect the peer; the records stay for a while."""
        if self.closed is not None:
            return
        self.outbox.append(close_record(code, reason))
        self.closed = (code, reason)
        self._flush_soon()
        self._wake()
        self.loop.call_soon(self._lost, code, reason)
        if self._receiver is None:
            self._idle()

    @property
    def closing(self) -> bool:
        return self.closed is not None

    @property
    def receiving(self) -> bool:
        """A receive request (long-poll or stream) is waiting here for records."""
        return self._receiver is not None

    async def drain(self) -> None:
        if not self.writing_paused or self.closed is not None:
            return
        waiter = self.loop.create_future()
        self._drained.append(waiter)
        await waiter

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        self._reading_paused = False
        self._wake()

    # -- requests (what the Fallback routes call) ------------------------------------

    def receive(self, ack: int, receiver: Receiver) -> None:
        """A receive request acknowledging ``ack`` records; ``ValueError`` if ``ack`` is bad."""
        self.outbox.rewind(ack)  # may raise: the request is refused, the session unchanged
        self._end_receiver()
        self._cancel_idle()
        self._acknowledged()
        self.kind = STREAMING if receiver.stream else LONG_POLLING
        self._receiver = receiver
        if receiver.stream:
            receiver.write(PING_RECORD)
        self._flush()
        if self._receiver is receiver:
            self._poll_timer = self.loop.call_later(self.timeouts.poll, self._poll_done)

    def abandon(self, receiver: Receiver) -> None:
        """The response of ``receiver`` is cut (its client went away): stop writing to it."""
        if self._receiver is receiver:
            self._receiver = None  # it cannot be written to: no end() either
            self._cancel_poll()
            self._idle()

    def deliver(self, seq: int, messages: list[Message]) -> asyncio.Future[None] | None:
        """Feed the messages of a POST numbered from ``seq`` to the peer, in order.

        Messages already processed (a retried POST) are skipped. Returns a
        future to await before answering the POST while the peer takes no
        more (flow control: ``pause_reading``), else None. ``ValueError`` when
        ``seq`` is past what was received: a POST went missing.
        """
        if seq > self.received:
            raise ValueError(f"seq {seq} is past the {self.received} messages received")
        self._touch()
        for message in messages[self.received - seq :]:
            if self.closed is not None or self.session is None:
                return None
            self.received += 1
            self.session.message_received(message)
        if not self._reading_paused or self.closed is not None:
            return None
        if self._resumed is None:
            self._resumed = self.loop.create_future()
        return self._resumed

    def expire(self) -> None:
        """The client is gone (no request for ``Timeouts.session``): forget the session."""
        if self.closed is None:
            logger.info("fallback session %s expired: no request in %ss", self.sid, self._idle_for)
            self.close(1006, "session expired")
        self._end_receiver()
        self._cancel_idle()
        self.sessions.forget(self)

    # -- internals ---------------------------------------------------------------------

    @property
    def _idle_for(self) -> float:
        return self.timeouts.session

    def _flush_soon(self) -> None:
        # Records sent in one tick go out in one response (DESIGN.md, rule 4).
        if self._receiver is not None and not self._flushing:
            self._flushing = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        receiver = self._receiver
        if receiver is None:
            return
        chunk = self.outbox.take()
        if chunk:
            receiver.write(chunk)
            # A long-poll ends with its first records; a stream once the client
            # holds enough unacknowledged bytes that it should say what it has.
            if not receiver.stream or self.outbox.size >= self._low_water:
                self._end_receiver()
        if self.closed is not None and not self.outbox.pending:
            self._end_receiver()

    def _poll_done(self) -> None:
        self._poll_timer = None
        self._end_receiver()

    def _end_receiver(self) -> None:
        receiver, self._receiver = self._receiver, None
        self._cancel_poll()
        if receiver is not None:
            receiver.end()
            self._idle()

    def _cancel_poll(self) -> None:
        if self._poll_timer is not None:
            self._poll_timer.cancel()
            self._poll_timer = None

    def _acknowledged(self) -> None:
        if self.writing_paused and self.outbox.size < self._low_water:
            self._drain_done()
            if self.session is not None and self.closed is None:
                self.session.writing_resumed()

    def _drain_done(self) -> None:
        self.writing_paused = False
        waiters, self._drained = self._drained, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _wake(self) -> None:
        """Release a POST held by flow control; on close, anything waiting at all."""
        resumed, self._resumed = self._resumed, None
        if resumed is not None and not resumed.done():
            resumed.set_result(None)
        if self.closed is not None:
            self._drain_done()

    def _lost(self, code: int, reason: str) -> None:
        session, self.session = self.session, None
        self.sessions.closed(self)
        if session is not None:
            session.connection_lost(code, reason)

    def _touch(self) -> None:
        """A request arrived: the client is there."""
        if self._receiver is None:
            self._idle()

    def _idle(self) -> None:
        self._cancel_idle()
        self._idle_timer = self.loop.call_later(self._idle_for, self.expire)

    def _cancel_idle(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
