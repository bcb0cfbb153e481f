"""``Peer``: one client connected to the event endpoint, as the server sees it.

A Peer is also the ``Session`` the server feeds: it decodes each message and
dispatches it without a task, unless the handler is a coroutine.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import inspect
import logging
import re
import secrets
from collections.abc import Callable
from typing import Any

from wirehub.codes import CloseCode, ErrorCode
from wirehub.exceptions import ConfigError, ConnectionClosed, EventError, Reject, Unavailable
from wirehub.http.messages import Request
from wirehub.hub.calls import Calls
from wirehub.hub.credentials import Credentials
from wirehub.hub.eager import EAGER, run_eagerly, started_soon
from wirehub.hub.fanout import log_context
from wirehub.hub.handlers import HandlerSpec
from wirehub.hub.node import DisconnectReason, Node
from wirehub.hub.transport import Transport
from wirehub.protocol import messages as wire
from wirehub.protocol.websocket import Message, close_reason

__all__ = ["DisconnectReason", "Peer", "explain_attribute_error"]

logger = logging.getLogger("wirehub.hub")

_Kept = tuple[bytes, bool, str | None, wire.Position | None]  # (payload, text, room, position)


class Peer:
    """A connected client of the event endpoint.

    ``id`` is unique and unguessable; ``state`` is a dict for the application;
    ``info`` is what presence shows other members (e.g. ``{"name": "ada"}``);
    ``user`` is the authenticated identity, if any. ``welcomed`` turns True
    when the client got its ``welcome``. A Peer is made by the event endpoint
    with its hub's ``Node``.
    """

    __slots__ = (
        "_backlog",
        "_calls",
        "_closed",
        "_credentials",
        "_early",
        "_early_bytes",
        "_limiter",
        "_pending",
        "_reading_paused",
        "_starts",
        "_tasks",
        "_unstarted",
        "id",
        "info",
        "node",
        "state",
        "transport",
        "user",
        "welcomed",
    )

    def __init__(self, node: Node, transport: Transport) -> None:
        self.node = node
        self.transport = transport
        self.id = secrets.token_urlsafe(12)
        self.state: dict[str, Any] = {}
        self.info: dict[str, Any] = {}
        self.user: Any = transport.request.user
        self.welcomed = False  # accepted by the connect handler: messages are dispatched
        self._early: list[_Kept] = []  # sent before the welcome: kept for after
        self._early_bytes = 0
        self._starts: dict[str, wire.Position] = {}  # rooms joined before the welcome
        self._backlog: collections.deque[Message] = collections.deque()  # not dispatched yet
        self._pending = 0  # handlers and joins still running
        self._reading_paused = False
        self._unstarted = 0  # 3.11: handlings of earlier messages waiting for the loop
        self._closed = False
        self._tasks = node.tasks  # the node's: shutdown waits for them
        self._credentials: Credentials | None = None  # with token authentication
        self._calls: Calls | None = None  # made at the first ``call``
        self._limiter = node.limiter()  # None unless per-peer rate limits are set

    def __repr__(self) -> str:
        return f"<Peer {self.id}>"

    @property
    def request(self) -> Request:
        """The handshake request: path, query, headers, client address."""
        return self.transport.request

    @property
    def rooms(self) -> frozenset[str]:
        return self.node.rooms.of(self)

    @property
    def connected(self) -> bool:
        return not self._closed

    def log_context(self, **fields: str) -> dict[str, str | None]:
        """This peer's id and client address for a log record's ``extra`` (with ``fields``).

        ``logger.info("...", extra=peer.log_context(room=room))``: the JSON
        log format (``wirehub serve --log-format json``) writes them as fields.
        """
        return log_context(self, **fields)

    # -- the application's API -----------------------------------------------

    async def emit(self, event: str, data: Any = None) -> None:
        """Send an event to this peer only."""
        body, binary = wire.event_body(event, data)
        self.send(*wire.event_message(body, binary))

    async def call(self, event: str, data: Any = None, *, timeout: float | None = 10.0) -> Any:
        """Send ``event`` to this peer's client and return its answer: the return value
        of the client's handler of ``event`` (bytes for a binary answer).

        Raises ``CallError`` when the client answers with an error (its
        handler raised one; ``unknown_event`` when it has no handler,
        ``internal_error`` when the handler failed), ``CallTimeout`` after
        ``timeout`` seconds (None: no limit), ``ConnectionClosed`` when the
        connection closes first, ``TypeError`` for data JSON cannot carry,
        and ``ConfigError`` before the client's welcome (in the ``connect``
        handler: the client could not answer before it returns).
        """
        if not self.welcomed:
            raise ConfigError(f"peer.call({event!r}) before the client's welcome")
        if self._closed:
            raise ConnectionClosed(CloseCode.ABNORMAL, "the connection is closed")
        self._calls = self._calls or Calls()
        return await self._calls.call(self.send, event, data, timeout)

    async def join(self, room: str) -> None:
        """Add this peer to ``room``; the server decides, so no authorization runs.

        Every event of the room published after it returns reaches the peer
        (before the welcome: right after it). The client is told, so it
        re-joins the room after a reconnection: in the welcome's ``rooms``,
        or after the welcome with a ``joined`` message (PROTOCOL.md §3).
        Raises ``wirehub.exceptions.Unavailable`` when the broker cannot
        subscribe the room now.
        """
        await self.node.rooms.join(self, room, started=self._joined)

    async def leave(self, room: str) -> None:
        """Take this peer out of ``room`` (nothing happens if it is not in it).

        The client is told with a ``left`` message after the room's last
        event it gets, so it does not re-join the room after a reconnection.
        """
        self._starts.pop(room, None)
        await self.node.rooms.leave(self, room, ended=self._left)

    def _joined(self, room: str, position: wire.Position) -> None:
        """A server-side join made this peer a member at ``position`` (before any event)."""
        if self.welcomed:
            joined = wire.Joined(room, position.epoch, position.offset)
            self.send(wire.encode(joined), True, vital=True)
        else:
            self._starts.setdefault(room, position)  # announced in the welcome

    def _left(self, room: str) -> None:
        if self.welcomed:
            self.send(wire.encode(wire.Left(room)), True, vital=True)

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close the connection; ``disconnect`` handlers run once it is closed.

        Nothing the client sends from now on is handled. A ``reason`` over 123
        bytes of UTF-8 is cut; a ``code`` no close frame may carry (1005,
        1006, 1015, outside 1000-4999) raises ``ConfigError``.
        """
        self.transport.close(code, close_reason(code, reason))

    # -- sending -------------------------------------------------------------

    def send(
        self,
        payload: bytes,
        text: bool,
        room: str | None = None,
        position: wire.Position | None = None,
        *,
        vital: bool = False,
    ) -> None:
        """Send one protocol message to this peer (compressed if negotiated).

        Every message to one peer comes here (acks, errors, replays,
        ``emit``, calls): past ``Limits.max_buffered`` unsent bytes, the
        slow-consumer policy applies, as for a broadcast (4008, or dropped:
        a message of ``room``'s stream at ``position`` is then announced by a
        ``gap`` notice, a ``vital`` one is sent anyway; ``Fanout.behind``).
        Before the welcome it is kept, and sent right after it: nothing
        reaches a client before its welcome.
        """
        self.node.stats["messages_out"] += 1
        if not self.welcomed:
            self._keep(payload, text, room, position)
            return
        transport = self.transport
        if transport.writing_paused and self.node.fanout.behind(
            self, transport, room, position, vital=vital
        ):
            return
        if text:
            transport.send_text(payload)
        else:
            transport.send(payload)

    def _keep(
        self, payload: bytes, text: bool, room: str | None, position: wire.Position | None
    ) -> None:
        """Keep a message until the welcome; a peer that piles up too much is a slow consumer."""
        if self._closed:
            return
        self._early_bytes += len(payload)
        if self._early_bytes > self.node.limits.max_buffered:
            self._early.clear()
            self.node.stats["slow_consumers"] += 1
            self.transport.close(CloseCode.SLOW_CONSUMER, "too much to send before the welcome")
            return
        self._early.append((payload, text, room, position))

    def _reply(self, message: wire.Ack | wire.Error | wire.Welcome) -> None:
        self.send(wire.encode(message), True, vital=True)

    def _ack(self, request_id: int | None, data: Any) -> None:
        if request_id is None or self._closed:
            return
        if isinstance(data, bytes | bytearray | memoryview):
            header = wire.encode_json(
                {"type": "ack", "id": request_id}
            )  # no "data": the payload is
            self.send(wire.pack_binary(header, bytes(data)), False, vital=True)
            return
        try:
            payload = wire.encode(wire.Ack(request_id, data))
        except (TypeError, ValueError) as exc:
            logger.error(
                "cannot encode the answer to request %s as JSON: %s",
                request_id,
                exc,
                extra=self.log_context(),
            )
            self._error(request_id, ErrorCode.INTERNAL_ERROR, "internal error")
            return
        self.send(payload, True, vital=True)

    def _error(
        self,
        request_id: int | None,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        if self._closed:
            return
        self.node.stats["errors"] += 1
        try:
            payload = wire.encode(wire.Error(str(code), message, request_id, details))
        except (TypeError, ValueError) as exc:  # an EventError's details JSON cannot carry
            logger.error("cannot encode the error %s as JSON: %s", code, exc)
            payload = wire.encode(wire.Error(str(code), message, request_id))
        self.send(payload, True, vital=True)

    # -- Session: called by the server -----------------------------------------

    def start(self) -> None:
        """The handshake completed: authenticate (token auth), run the connect handler, welcome."""
        auth = self.node.token_auth
        if auth is not None:
            self._credentials = Credentials(
                self,
                auth,
                timeout=self.node.timeouts.auth,
                stats=self.node.stats,
                begin=self._begin,
            )
            if self.user is None:  # no token in the handshake: the first message brings it
                self._credentials.wait_first()
                return
            self._credentials.schedule()
        self._begin()

    def _begin(self) -> None:
        handler = self.node.handlers.get("connect")
        if handler is None:
            self._accept()
        else:
            self._track(self._connect(handler))

    async def _connect(self, spec: HandlerSpec) -> None:
        try:
            result = spec.run(self, self.request)
            if inspect.isawaitable(result):  # a wrapped coroutine function too: never fail open
                result = await result
            if result is False:  # Flask-SocketIO's way of refusing
                raise Reject()
        except Exception as exc:
            refusal = exc if isinstance(exc, Reject) else _refusal(exc)
            if refusal is None:
                self._connect_failed(exc)
                return
            logger.info(
                "connect refused for %s: %s",
                self.request.client,
                refusal.reason,
                extra=self.log_context(),
            )
            self.transport.close(refusal.code, refusal.reason)
            return
        if self._closed:
            return
        # Rooms the handler joined are announced with the positions they were
        # joined at (what followed was kept for after the welcome), so the
        # client can recover them after a reconnect like rooms it joined itself.
        joined = self.rooms
        self._accept({name: p for name, p in self._starts.items() if name in joined})

    def _connect_failed(self, exc: Exception) -> None:
        if isinstance(exc, Unavailable):
            logger.warning("connect handler: %s; closing with 1013", exc.message)
            self.transport.close(CloseCode.TRY_AGAIN_LATER, "try again later")
            return
        explain_attribute_error(exc)
        logger.error(
            "connect handler failed; closing with 1011", exc_info=exc, extra=self.log_context()
        )
        self.transport.close(CloseCode.INTERNAL_ERROR, "internal error")

    def _accept(self, rooms: dict[str, wire.Position] | None = None) -> None:
        self.node.welcomed(self)
        limits = self.node.limits
        closed = None  # how the connection this client had before ended, if it may not know
        request = self.request  # its query is parsed only when it names a lost peer
        last = request.query.get("last_peer") if "last_peer=" in request.query_string else None
        cut = self.node.fanout.cut_of(last or "")
        if cut is not None:
            closed = {"code": cut[0], "reason": cut[1]}
        self.welcomed = True  # the welcome goes first, then what was kept for after it
        self._reply(
            wire.Welcome(
                wire.PROTOCOL_VERSION,
                self.id,
                self.node.timeouts.ping_interval,
                {
                    "max_message_size": limits.max_message_size,
                    "max_rooms": limits.max_rooms_per_peer,
                    "max_pending": limits.max_pending_calls,
                },
                rooms or {},
                closed,
            )
        )
        early, self._early = self._early, []
        self._starts = {}
        for payload, text, room, position in early:
            self.send(payload, text, room, position)
        self._drain_backlog()

    def _drain_backlog(self) -> None:
        if not self.welcomed:
            return
        limit = self.node.limits.max_pending_calls
        while self._backlog and not (self._closed or self.transport.closing):
            if limit is not None and self._pending >= limit:
                return
            self._dispatch(self._backlog.popleft())
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()

    def message_received(self, message: Message) -> None:
        if self.transport.closing:
            return  # the server (or the client) is closing: nothing more is handled
        if not self.welcomed or self._backlog or self._reading_paused:
            # Before the welcome, or while too many handlers are pending: keep
            # the order, and (past the limit) stop reading the socket. (Paused
            # too: the rest of a read that crossed the limit waits its turn.)
            if self._credentials is not None and self._credentials.waiting:
                self._credentials.first(message)
                return
            self._backlog.append(message)
            if len(self._backlog) >= self.node.limits.max_queued_messages:
                self._pause()  # e.g. a flood while the connect handler waits
            return
        self._dispatch(message)

    def _dispatch(self, message: Message) -> None:
        self.node.stats["messages_in"] += 1
        if self._limiter is not None and self._throttled(message):
            return
        try:
            request, payload = wire.decode_client(message)
        except wire.DecodeError as exc:
            logger.info("bad message from peer %s: %s", self.id, exc, extra=self.log_context())
            details = {"path": "$", "error": str(exc)} if exc.code == "invalid_data" else None
            self._in_turn(self._error, exc.id, exc.code, f"invalid message: {exc}", details)
            return
        if type(request) is wire.Emit:
            self._on_emit(request, payload)
        elif type(request) is wire.Join:
            self._track(self._on_join(request))
        elif type(request) is wire.Leave:
            self._track(self._on_leave(request))
        elif type(request) is wire.Auth:
            self._in_turn(self._on_auth, request)
        elif type(request) is wire.Ack or type(request) is wire.Error:
            self._in_turn(self._on_answer, request, payload)
        else:
            self._in_turn(self._ack, request.id, None)  # ping

    def _in_turn(self, handle: Callable[..., None], *args: Any) -> None:
        """Handle a message at once, or on 3.11 in its turn.

        There a task's first step runs on the loop's next iteration, so while
        tasks made for earlier messages have not started, ``handle`` is queued
        behind them (the loop runs ready callbacks in the order they were
        queued). Tasks themselves are made at once: a burst of async handlers
        starts in one iteration, and what they send is written in one batch
        per receiver (DESIGN.md, performance rule 4).
        """
        if not self._unstarted:
            handle(*args)
            return
        self._unstarted += 1
        started_soon(functools.partial(self._turn, handle, args))

    def _turn(self, handle: Callable[..., None], args: tuple[Any, ...]) -> None:
        self._unstarted -= 1
        if not (self._closed or self.transport.closing):
            handle(*args)

    def _on_answer(self, answer: wire.Ack | wire.Error, payload: bytes | None) -> None:
        if not (self._calls and self._calls.answered(answer, payload)):
            logger.debug("peer %s answered no call (id %s)", self.id, answer.id)

    def writing_resumed(self) -> None:
        """Its client takes messages again: announce what was dropped for it (``drop``)."""
        self.node.fanout.announce(self)

    def connection_lost(self, code: int, reason: str) -> None:
        if code != CloseCode.ABNORMAL:  # the client answered the close frame: it knows why
            self.node.fanout.cuts.pop(self.id, None)
        self.node.fanout.forget(self)
        self._closed = True
        self._backlog.clear()
        if self._calls is not None:
            self._calls.closed(code, reason)
        if self._credentials is not None:
            self._credentials.cancel()
        self.node.gone(self, DisconnectReason(code, reason))

    # -- dispatch --------------------------------------------------------------

    def _on_emit(self, request: wire.Emit, payload: bytes | None) -> None:
        spec = self.node.handlers.get(request.event)
        if spec is None or request.event in ("connect", "disconnect"):
            message = f"no handler for {request.event!r}"
            self._in_turn(self._error, request.id, ErrorCode.UNKNOWN_EVENT, message)
            return
        if self._limiter is not None:
            wait = self._limiter.event(request.event)
            if wait:
                self._in_turn(self._rate_limited, request.id, wait)
                return
        try:
            data = spec.decode(request.data, payload)
        except Exception as exc:
            self._in_turn(self._answer, request, None, exc)
            return
        if self.node.authorize_emit is not None:
            checked = self._checked_emit(spec, request, data)
            self._track(checked, lambda value, error: self._answer(request, value, error))
        elif spec.is_async:
            self._run(spec, request, data)  # a task: its first step keeps its turn
        else:
            self._in_turn(self._run, spec, request, data)

    def _run(self, spec: HandlerSpec, request: wire.Emit, data: Any) -> None:
        """Call an emit's handler; answer now, or when what it returned is done."""
        try:
            result = spec.run(self, data)
        except Exception as exc:
            self._answer(request, None, exc)
            return
        if inspect.isawaitable(result):
            self._track(result, lambda value, error: self._answer(request, value, error))
        else:
            self._answer(request, result, None)

    def _answer(self, request: wire.Emit, value: Any, error: BaseException | None) -> None:
        """Acknowledge an emit with the handler's value, or turn its error into a reply."""
        if error is None:
            self._ack(request.id, value)
        elif isinstance(error, EventError):
            self._error(request.id, error.code, error.message, error.details)
        elif isinstance(error, Exception):
            explain_attribute_error(error)
            logger.error(
                "handler for event %r failed",
                request.event,
                exc_info=error,
                extra=self.log_context(event=request.event),
            )
            self._error(request.id, ErrorCode.INTERNAL_ERROR, "internal error")

    def _track(self, coro: Any, done: Any = None) -> None:
        """Run ``coro`` eagerly; while it waits, count it against the pending limit."""
        task = run_eagerly(coro, done or _ignore)
        if task is None:
            return
        self._pending += 1
        limit = self.node.limits.max_pending_calls
        if limit is not None and self._pending >= limit:
            self._pause()
        self._tasks.add(task)
        task.add_done_callback(self._untrack)
        if not EAGER:  # its first step comes later: later messages take their turn after it
            self._unstarted += 1
            started_soon(self._started)

    def _started(self) -> None:
        self._unstarted -= 1

    def _untrack(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._pending -= 1
        if self._backlog or self._reading_paused:
            self._drain_backlog()

    async def _on_join(self, request: wire.Join) -> None:
        try:
            answer = await self.node.rooms.client_join(
                self, request.room, request.since, request.history
            )
        except EventError as exc:
            self._error(request.id, exc.code, exc.message, exc.details)
        except Exception:
            logger.exception(
                "join of %r failed", request.room, extra=self.log_context(room=request.room)
            )
            self._error(request.id, ErrorCode.INTERNAL_ERROR, "internal error")
        else:
            self._ack(request.id, answer)

    async def _on_leave(self, request: wire.Leave) -> None:
        try:
            await self.node.rooms.leave(self, request.room)
        except Exception:
            logger.exception(
                "leave of %r failed", request.room, extra=self.log_context(room=request.room)
            )
            self._error(request.id, ErrorCode.INTERNAL_ERROR, "internal error")
        else:
            self._ack(request.id, None)

    def _pause(self) -> None:
        if not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    # -- security: emit authorization, token refresh, rate limits ---------------

    async def _checked_emit(self, spec: HandlerSpec, request: wire.Emit, data: Any) -> Any:
        if not await self.node.emit_allowed(self, request.event, data):
            raise EventError(ErrorCode.FORBIDDEN, "not allowed to emit this event")
        if self._closed or self.transport.closing:
            return None  # closed while the hook decided: the handler does not run
        result = spec.run(self, data)
        return await result if inspect.isawaitable(result) else result

    def _on_auth(self, request: wire.Auth) -> None:
        if self._credentials is None:
            message = "this server takes no tokens in messages"
            self._error(request.id, ErrorCode.BAD_MESSAGE, message)
        else:
            self._credentials.refreshed(request)

    def _throttled(self, message: Message) -> bool:
        """Count ``message`` against the peer's limits; True when it is refused."""
        assert self._limiter is not None
        if self._limiter.closing:
            # Closing for abuse: the rest is not even answered, and the socket is
            # not read any more (the close timeout cuts it): no CPU for a flooder.
            self.transport.pause_reading()
            return True
        wait = self._limiter.message(message)
        if not wait:
            return False
        try:
            request_id = wire.decode_client(message)[0].id
        except wire.DecodeError as exc:
            request_id = exc.id
        self._rate_limited(request_id, wait)
        return True

    def _rate_limited(self, request_id: int | None, wait: float) -> None:
        assert self._limiter is not None
        self.node.stats["rate_limited"] += 1
        details = {"retry_after": round(wait, 3)}
        self._error(request_id, ErrorCode.RATE_LIMITED, "rate limit exceeded", details)
        if self._limiter.strike():
            self.node.stats["rate_limit_closes"] += 1
            logger.warning(
                "peer %s keeps exceeding its rate limits; closing with 4029",
                self.id,
                extra=self.log_context(),
            )
            self.transport.close(CloseCode.RATE_LIMITED, "rate limit exceeded repeatedly")
            self.transport.pause_reading()


def _refusal(exc: Exception) -> Reject | None:
    """The ``Reject`` a connect handler meant by raising ``exc``, if it meant one.

    Flask-SocketIO refuses with ``raise ConnectionRefusedError("reason")``
    (python-socketio's class, or the built-in one once its import is gone):
    a final close with that reason, like ``Reject(reason=...)``. A built-in
    one carrying an errno is the OS refusing a connection the handler made
    (a database down): a failure, not a refusal.
    """
    if type(exc).__name__ != "ConnectionRefusedError" or getattr(exc, "errno", None) is not None:
        return None
    return Reject(reason=str(exc.args[0])) if exc.args and exc.args[0] else Reject()


def _ignore(value: Any, error: BaseException | None) -> None:
    if isinstance(error, Exception):
        logger.error("request failed", exc_info=error)


_NO_ATTRIBUTE = re.compile(r"^'Peer' object has no attribute '(\w+)'")


def explain_attribute_error(error: BaseException) -> None:
    """Add a note to ``peer.username = ...``'s AttributeError saying where such data goes.

    A Peer has fixed attributes (``__slots__``: tens of thousands may be
    connected at once), so per-connection data lives in ``peer.state``.
    """
    match = _NO_ATTRIBUTE.match(str(error)) if isinstance(error, AttributeError) else None
    if match is not None:
        name = match.group(1)
        error.add_note(
            f"a Peer takes no attributes of your own: keep per-connection data in "
            f"peer.state, a dict (peer.state[{name!r}] = ...); peer.info is what "
            "presence shows other members"
        )
