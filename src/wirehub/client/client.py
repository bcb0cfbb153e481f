"""``Client``: the asyncio client of the wirehub event protocol (docs/PROTOCOL.md).

::

    async with wirehub.connect("ws://127.0.0.1:8000/ws") as client:
        client.on("chat", print)
        await client.join("lobby")
        reply = await client.call("chat", {"text": "hi"})

One task per connection reads messages and dispatches them; it also
supervises the connection: when it drops with a close code that allows it
(``wirehub.codes.should_reconnect``), it reconnects with backoff, re-joins
the rooms and recovers the events missed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import ssl as _ssl
import time
import urllib.parse
from collections.abc import Callable, Generator, Mapping
from functools import partial
from types import TracebackType
from typing import Any, TypeVar, overload

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed as _WsClosed

from wirehub.client import messages
from wirehub.client.connection import (
    TokenSource,
    Welcome,
    closed_from,
    fetch_token,
    open_connection,
    reopen,
)
from wirehub.client.events import LIFECYCLE, EventInfo, Gap, Handler, Reconnected
from wirehub.client.reconnect import Reconnect
from wirehub.client.session import DEFAULT, Session, State, _Default
from wirehub.codes import CloseCode, ErrorCode, should_reconnect
from wirehub.exceptions import CallError, CallTimeout, ConnectionClosed, EventError
from wirehub.protocol import messages as wire

__all__ = ["Client", "connect"]

logger = logging.getLogger("wirehub.client")

H = TypeVar("H", bound=Handler)


class Client:
    """A connection to a wirehub event endpoint that survives disconnections.

    Keyword-only options: ``token`` (sent as ``Authorization: Bearer``),
    ``get_token`` (instead of ``token``: a function, sync or async, returning
    a token; asked before every connection attempt, and again when the
    server asks for a fresh one before the current one expires, which the
    client then sends in an ``auth`` message, docs/PROTOCOL.md §13),
    ``headers`` (extra handshake headers), ``reconnect`` (True for the default
    ``Reconnect()`` policy, a ``Reconnect`` to tune it, False to never
    reconnect), ``recover`` (re-join rooms with their last position so missed
    events are replayed), ``call_timeout`` (default for ``call``/``join``/
    ``leave``; None waits forever), ``open_timeout`` (handshake plus welcome),
    ``ping_interval`` (WebSocket pings; None disables), ``max_size`` (largest
    message accepted from the server; None: no limit), ``ssl`` and ``proxy``
    (passed to ``websockets``; the environment is never read).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        get_token: TokenSource | None = None,
        headers: Mapping[str, str] | None = None,
        reconnect: bool | Reconnect = True,
        recover: bool = True,
        call_timeout: float | None = 10.0,
        open_timeout: float | None = 10.0,
        ping_interval: float | None = 20.0,
        max_size: int | None = None,
        ssl: _ssl.SSLContext | None = None,
        proxy: str | None = None,
    ) -> None:
        self.url = url
        self.policy: Reconnect | None = Reconnect() if reconnect is True else (reconnect or None)
        self.recover = recover
        self.call_timeout = call_timeout
        extra = dict(headers or {})
        if token is not None:
            extra["Authorization"] = f"Bearer {token}"
        self._open_options: dict[str, Any] = dict(
            headers=extra,
            open_timeout=open_timeout,
            ping_interval=ping_interval,
            max_size=max_size,
            ssl=ssl,
            proxy=proxy,
            get_token=get_token,
        )
        self.get_token = get_token
        self.state = State.CLOSED
        self.welcome: Welcome | None = None
        self._ws: ClientConnection | None = None
        self._session = Session()
        self._session.on_refresh = self._refresh_requested
        self._session.on_call = self._called
        self._session.on_joined = self._server_joined
        self._session.on_left = self._server_left
        if recover:
            self._session.streams.recover = self._refill
        self._rooms: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = asyncio.Event()
        self._why = ConnectionClosed(CloseCode.ABNORMAL, "not connected")

    # -- properties ------------------------------------------------------------

    @property
    def id(self) -> str | None:
        """The peer id the server gave this connection (a new one after each reconnect)."""
        return self.welcome.peer if self.welcome is not None else None

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this client is in: joined by it or by the server (``joined``), less
        those the server took it out of (``left``); re-joined after a reconnect."""
        return frozenset(self._rooms)

    @property
    def connected(self) -> bool:
        """Whether the connection is open and welcomed right now."""
        return self.state is State.OPEN

    # -- lifecycle -------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection and wait for the server's welcome.

        Raises ``HandshakeError`` (refused, unreachable, timed out, not a
        wirehub endpoint) or ``ConnectionClosed`` (the server's connect
        handler refused us after the upgrade). The first connection is not
        retried: reconnection only applies once a connection was welcomed.
        """
        if self.state is not State.CLOSED:
            raise RuntimeError(f"connect() on a client that is {self.state.value}")
        self._closing = False
        self._closed = asyncio.Event()  # SyncClient may reconnect on another loop
        self._rooms.clear()  # a new session: rooms of a previous one are not re-joined
        self.state = State.CONNECTING
        try:
            ws, welcome, early = await open_connection(self.url, **self._open_options)
        except BaseException:
            self.state = State.CLOSED
            self._closed.set()
            raise
        self._connection_made(ws, welcome, early)
        self._task = asyncio.get_running_loop().create_task(self._supervise(ws))

    async def close(self) -> None:
        """Close with 1000 and stop reconnecting; pending calls fail with ConnectionClosed.

        Returns once the ``disconnect`` callbacks ran. Closing twice is harmless.
        """
        self._closing = True
        task = self._task
        if task is None or task.done():
            return
        ws = self._ws
        if self.state is State.OPEN and ws is not None:
            await ws.close(CloseCode.NORMAL)  # the reader sees it, then the task ends
        else:
            task.cancel()  # interrupt the backoff or the attempt in progress
            self._why = ConnectionClosed(CloseCode.NORMAL, "closed by the client")
        await asyncio.wait({task})

    async def wait_closed(self) -> ConnectionClosed:
        """Wait until the client stopped for good (closed, refused, or gave up); return why."""
        await self._closed.wait()
        return self._why

    def __await__(self) -> Generator[Any, None, Client]:
        """``await client`` connects it (unless it is already) and returns it."""
        return self.__aenter__().__await__()

    async def __aenter__(self) -> Client:
        """Connect (unless connected already); see ``connect``."""
        if self.state is State.CLOSED:
            await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close; see ``close``."""
        await self.close()

    # -- handlers --------------------------------------------------------------

    @overload
    def on(self, event: str) -> Callable[[H], H]: ...

    @overload
    def on(self, event: str, handler: H) -> H: ...

    def on(self, event: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Register a handler for a server event, or a lifecycle callback.

        Event handlers take ``()``, ``(data)`` or ``(data, info)``: with two
        parameters the second is always an ``EventInfo`` (the event's name,
        and for a room event its room, epoch and offset). Binary events bring
        ``bytes``. Lifecycle names (taking one argument, or none):
        ``"connect"`` (after every welcome: no argument), ``"disconnect"``
        (``ConnectionClosed``), ``"reconnect"`` (``Reconnected``, once rooms
        are re-joined), ``"gap"`` (``Gap``: events of a room may be missing;
        called before any later event of that room), ``"error"`` (an
        ``EventError`` the server sent outside any request), ``"presence"``
        (``PresenceChange``), ``"joined"`` and ``"left"`` (the room's name:
        the server put this client in a room, or took it out — ``rooms``
        has changed). Plain handlers run in order as messages arrive;
        coroutine handlers are started as tasks. Usable as a decorator.

        When the server calls this client (``await peer.call(event, data)``),
        the *first* handler of that event answers with its return value
        (awaited if it is a coroutine; bytes travel binary); raising
        ``EventError(code, message, details)`` answers with that error, any
        other exception with ``internal_error``.
        Raises ``TypeError`` for a handler that requires more arguments
        (or a keyword-only one without default).
        """
        if handler is not None:
            self._session.handlers.add(event, handler)
            return handler

        def register(func: H) -> H:
            self._session.handlers.add(event, func)
            return func

        return register

    def off(self, event: str, handler: Handler | None = None) -> None:
        """Unregister ``handler`` for ``event`` (every handler of it when None)."""
        self._session.handlers.remove(event, handler)

    # -- sending -------------------------------------------------------------

    async def emit(self, event: str, data: Any = None) -> None:
        """Send an event without waiting for an answer (bytes travel in a binary frame).

        Raises ``ConnectionClosed`` while disconnected (nothing is queued),
        ``TypeError`` for data JSON cannot carry, and ``EventError``
        (``limit_exceeded``) for a message larger than the server accepts.
        """
        await self._send(messages.emit_message(event, data, None))

    async def call(
        self, event: str, data: Any = None, *, timeout: float | _Default | None = DEFAULT
    ) -> Any:
        """Send an event and return the data of the server's ack (the handler's return value).

        Raises ``CallError`` with the error's code, message and details,
        ``CallTimeout`` when no answer comes within ``timeout`` seconds, and
        ``ConnectionClosed`` when the connection is (or gets) closed first.
        """
        return await self._request(event, partial(messages.emit_message, event, data), timeout)

    async def join(
        self, room: str, *, history: int = 0, timeout: float | _Default | None = DEFAULT
    ) -> dict[str, Any]:
        """Join ``room``; return the ack data (``epoch``, ``offset``, maybe ``members``).

        ``history=N`` replays the room's last N kept events before returning
        (even events already delivered: the room's position is forgotten).
        Joined rooms are re-joined after a reconnect. Raises like ``call``.
        """
        if history:
            self._session.streams.restart(room)
        ack = await self._join(room, None, history, timeout)
        self._rooms.add(room)
        return ack

    async def leave(self, room: str, *, timeout: float | _Default | None = DEFAULT) -> None:
        """Leave ``room`` and wait for the ack. Raises like ``call``.

        The room is forgotten at once: even if this raises, it is not
        re-joined after a reconnect.
        """
        self._rooms.discard(room)
        self._session.streams.forget(room)
        await self._request(f"leave {room!r}", partial(messages.leave_message, room), timeout)

    async def ping(self, *, timeout: float | _Default | None = DEFAULT) -> float:
        """Send an application ``ping``; return the round-trip time in seconds."""
        start = time.monotonic()
        await self._request("ping", messages.ping_message, timeout)
        return time.monotonic() - start

    async def _join(
        self,
        room: str,
        since: wire.Position | None,
        history: int,
        timeout: float | _Default | None,
        cause: str | None = None,
    ) -> dict[str, Any]:
        message = partial(messages.join_message, room, since, history)
        ack = await self._request(f"join {room!r}", message, timeout, join=room, cause=cause)
        if not isinstance(ack, dict):
            raise CallError(ErrorCode.BAD_MESSAGE, f"the ack of join {room!r} is not an object")
        if cause is not None and room not in self._rooms:
            # The server took us out (``left``) while this re-join was on its way, and
            # then the re-join put us back: leave again, the server's word stands.
            self._session.streams.forget(room)
            self._spawn(self._leave_quietly(room))
        return ack

    async def _leave_quietly(self, room: str) -> None:
        with contextlib.suppress(CallError, ConnectionClosed):
            await self._request(f"leave {room!r}", partial(messages.leave_message, room), DEFAULT)

    async def _request(
        self,
        what: str,
        build: Callable[[int], dict[str, Any] | bytes],
        timeout: float | _Default | None,
        *,
        join: str | None = None,
        cause: str | None = None,
    ) -> Any:
        seconds = self.call_timeout if isinstance(timeout, _Default) else timeout
        self._check_open()
        id, answer = self._session.expect(join, cause)
        try:
            await self._send(build(id))
            return await asyncio.wait_for(answer, seconds)
        except TimeoutError:
            raise CallTimeout(what, seconds or 0.0) from None
        finally:
            self._session.forget(id)
            if answer.done() and not answer.cancelled():
                answer.exception()  # failed by the lost connection while the send failed too

    def _check_open(self) -> ClientConnection:
        if self.state is not State.OPEN or self._ws is None:
            raise ConnectionClosed(self._why.code, self._why.reason)
        return self._ws

    async def _send(self, message: dict[str, Any] | bytes) -> None:
        ws = self._check_open()
        frame = messages.encode(message)
        limit = self.welcome.max_message_size if self.welcome else None
        if limit is not None and len(frame) > limit:
            raise EventError(
                ErrorCode.LIMIT_EXCEEDED,
                f"a message of {len(frame)} bytes exceeds the server's limit of {limit}",
            )
        try:
            await ws.send(frame, text=isinstance(message, dict))
        except _WsClosed as exc:
            raise closed_from(exc) from None

    # -- the connection's life -----------------------------------------------

    def _connection_made(
        self, ws: ClientConnection, welcome: Welcome, early: list[str | bytes]
    ) -> None:
        self._ws = ws
        self.welcome = welcome
        # Rooms the server's connect handler put us in: ours from now on,
        # re-joined with recovery like the rest. (On a reconnect the ones we
        # already track keep their older position, so recovery still replays.)
        new = [room for room, position in welcome.rooms.items() if self._track(room, position)]
        self.state = State.OPEN
        logger.info("connected to %s as %s", self.url, welcome.peer)
        self._session.handlers.call("connect")
        for room in new:
            self._session.handlers.call("joined", room)
        for message in early:
            self._session.receive(message)

    def _server_joined(self, room: str, position: wire.Position) -> None:
        """The server put this client in ``room`` (a ``joined`` message)."""
        if self._track(room, position):
            self._session.handlers.call("joined", room)

    def _track(self, room: str, position: wire.Position) -> bool:
        """Track ``room`` (re-joined after a reconnection) from ``position`` on, like a
        room this client joined itself; True when it is new to ``rooms``."""
        self._session.streams.start(room, position)
        new = room not in self._rooms
        self._rooms.add(room)
        return new

    def _server_left(self, room: str) -> None:
        """The server took this client out of ``room`` (a kick): forgotten, not re-joined."""
        self._session.streams.forget(room)
        if room in self._rooms:
            self._rooms.discard(room)
            self._session.handlers.call("left", room)

    def _connection_lost(self, why: ConnectionClosed) -> None:
        self._ws = None
        self._why = why
        self.state = State.RECONNECTING
        self._session.lost(why)
        logger.info("disconnected from %s: %s", self.url, why)
        self._session.handlers.call("disconnect", why)

    async def _supervise(self, ws: ClientConnection) -> None:
        try:
            while True:
                why = await self._read(ws)
                self._connection_lost(why)
                if self._closing or self.policy is None or not should_reconnect(why.code):
                    break
                # Naming the lost peer lets the server say how it closed it (PROTOCOL.md §2).
                url = (
                    _with_query(self.url, last_peer=self.welcome.peer) if self.welcome else self.url
                )
                why, reopened = await reopen(url, self.policy, self._open_options, why)
                if reopened is None:
                    self._why = why
                    break
                ws, welcome, early, attempts = reopened
                self._connection_made(ws, welcome, early)
                self._spawn(self._restore(attempts))
        finally:
            if self._ws is not None:  # cancelled from outside while open
                self._ws.transport.abort()
                self._connection_lost(ConnectionClosed(CloseCode.ABNORMAL, "client cancelled"))
            self.state = State.CLOSED
            self._session.handlers.cancel()
            self._closed.set()

    async def _read(self, ws: ClientConnection) -> ConnectionClosed:
        while True:
            try:
                message = await ws.recv()
            except _WsClosed as exc:
                return closed_from(exc)
            self._session.receive(message)

    async def _restore(self, attempts: int) -> None:
        rooms = sorted(self._rooms)
        results = await asyncio.gather(
            *(self._rejoin(room) for room in rooms), return_exceptions=True
        )
        if any(isinstance(r, ConnectionClosed) for r in results):
            return  # dropped again: the next reconnection restores the rooms
        recovered = {room: r is True for room, r in zip(rooms, results, strict=True)}
        closed = self.welcome.closed if self.welcome else None
        self._session.handlers.call("reconnect", Reconnected(attempts, recovered, closed))

    async def _rejoin(self, room: str) -> bool:
        streams = self._session.streams
        last = streams.since(room)
        since = last if self.recover else None
        try:
            ack = await self._join(room, since, 0, DEFAULT, "recovery")
        except CallError as exc:  # refused now (or timed out): no longer a member
            if room not in self._rooms:
                return False  # the server took us out meanwhile (``left``): nothing missed
            self._rooms.discard(room)
            streams.forget(room)
            gap = Gap(room, "recovery", last, None, f"could not re-join: {exc}")
            self._session.deliver([gap])
            self._session.handlers.call("error", exc)
            return False
        return since is not None and bool(ack.get("recovered"))

    def _refill(self, room: str) -> None:
        """Offsets of ``room`` were skipped (or its epoch changed): re-join with ``since``."""
        logger.info(
            "room %r skipped offsets after %s: re-joining", room, self._session.streams.since(room)
        )
        self._spawn(self._refilled(room))

    async def _refilled(self, room: str) -> None:
        try:
            await self._join(room, self._session.streams.since(room), 0, DEFAULT, "jump")
        except ConnectionClosed:
            pass  # the reconnection re-joins with recovery
        except CallError as exc:  # the held events went out, with the gap reported
            logger.warning("could not re-join %r to fill a gap: %s", room, exc)

    def _called(self, id: int, info: EventInfo, data: Any) -> None:
        """The server calls this client: the first handler of the event answers (§4)."""
        handler = None if info.event in LIFECYCLE else self._session.handlers.first(info.event)
        value, error = None, None
        try:
            if handler is None:
                raise EventError(ErrorCode.UNKNOWN_EVENT, f"no client handler for {info.event!r}")
            value = handler(data, info)  # the plain part runs now, in message order
        except Exception as exc:
            error = exc
        self._spawn(self._answer_call(self._ws, id, info.event, value, error))

    async def _answer_call(
        self, ws: ClientConnection | None, id: int, event: str, value: Any, error: Exception | None
    ) -> None:
        if error is None and inspect.isawaitable(value):
            try:
                value = await value
            except Exception as exc:
                error = exc
        if error is not None and not isinstance(error, EventError):
            logger.error("the handler of the server's call %r failed", event, exc_info=error)
        if ws is not self._ws:
            return  # that connection is gone, and the call with it
        with contextlib.suppress(ConnectionClosed):
            try:
                await self._send(messages.answer_message(id, value, error))
            except (TypeError, EventError) as exc:  # not JSON, or more than the server takes
                logger.error("cannot answer the server's call %r: %s", event, exc)
                await self._send(messages.answer_message(id, None, exc))

    def _refresh_requested(self, expires_in: float) -> None:
        """The server wants a new token within ``expires_in`` seconds (§13)."""
        if self.get_token is None:
            logger.warning("the server asks for a fresh token, but no get_token was given")
            return
        self._spawn(self._send_token(self.get_token))

    async def _send_token(self, get_token: TokenSource) -> None:
        try:
            token = await fetch_token(get_token)
            await self._request("auth", partial(messages.auth_message, token), DEFAULT)
        except ConnectionClosed:
            pass  # the reconnection asks get_token again
        except Exception as exc:
            logger.warning("could not refresh the token: %r", exc)
            if isinstance(exc, EventError):
                self._session.handlers.call("error", exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._session.handlers.tasks.add(task)
        task.add_done_callback(self._session.handlers.tasks.discard)


def _with_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k not in params] + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def connect(url: str, **options: Any) -> Client:
    """A ``Client`` to ``url``: ``async with connect(url) as client:`` connects, then closes.

    Also ``client = await connect(url)`` (then ``await client.close()``).
    ``options`` are ``Client``'s keyword arguments.
    """
    return Client(url, **options)
