"""Plain WebSocket endpoints: ``async for message in ws: await ws.send(message)``."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

from wirehub.codes import CloseCode
from wirehub.exceptions import ConfigError, ConnectionClosed, Reject
from wirehub.http.messages import Request, Response
from wirehub.hub.transport import Pinging, Transport
from wirehub.protocol.websocket import (
    COMPRESSION_THRESHOLD,
    Message,
    encode_deflated_frame,
    encode_frame,
    ping_payload,
    ping_sent_at,
)

__all__ = ["PlainEndpoint", "WebSocket", "WebSocketHandler", "broadcast"]

logger = logging.getLogger("wirehub.hub")

WebSocketHandler = Callable[["WebSocket"], Awaitable[None]]

PONG_HORIZON = 3600.0  # seconds: a pong claiming an older ping is not one of ours


class WebSocket:
    """One client on a plain endpoint, handed to the handler.

    Receiving is buffered up to ``max_queue`` messages; past that the server
    stops reading from the socket until the handler catches up, so a fast
    sender cannot grow memory. ``send`` waits while the client is not reading
    fast enough (write buffer above its high-water mark).
    """

    def __init__(self, transport: Transport, *, max_queue: int, max_buffered: int) -> None:
        self._transport = transport
        self._max_buffered = max_buffered
        self._queue: deque[Message] = deque()
        self._max_queue = max_queue
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pings: list[tuple[float, asyncio.Future[float]]] | None = None  # ping() in flight
        self.close_code: int | None = None
        self.close_reason = ""
        self.latency = 0.0
        """Seconds: the last round trip of a ping (``ping()``, or the server's
        keepalive ping every ``Timeouts.ping_interval``); 0.0 until one is answered,
        and always under an ASGI server (its pongs do not reach the application)."""

    @property
    def request(self) -> Request:
        """The handshake request: ``path``, ``query``, ``headers``, ``client``."""
        return self._transport.request

    @property
    def subprotocol(self) -> str | None:
        """The negotiated subprotocol, or None."""
        return self._transport.subprotocol

    @property
    def path_params(self) -> Mapping[str, str]:
        """The values of the route's ``{name}`` parameters: ``/room/{name}`` → ``{"name": …}``."""
        return self._transport.request.path_params

    @property
    def remote_address(self) -> tuple[str, int] | None:
        """The client's ``(host, port)`` as the socket sees it (a proxy's, behind one).

        Behind a trusted proxy, ``request.client_ip`` is the client's own address.
        """
        return self._transport.request.client

    @functools.cached_property
    def id(self) -> uuid.UUID:
        """A unique id for this connection (random, for logs and your own tables)."""
        return uuid.uuid4()

    @property
    def user(self) -> Any:
        """The identity the hub's ``authenticate`` hook gave this connection (None without one)."""
        return self._transport.request.user

    @property
    def closed(self) -> bool:
        return self._closed.done()

    async def recv(self) -> Message:
        """The next message (``str`` for text, ``bytes`` for binary).

        Raises ``ConnectionClosed`` once the connection is closed and every
        message received before the close has been returned.
        """
        while not self._queue:
            if self.close_code is not None:
                raise ConnectionClosed(self.close_code, self.close_reason)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message = self._queue.popleft()
        if self._reading_paused and len(self._queue) <= self._max_queue // 2:
            self._reading_paused = False
            self._transport.resume_reading()
        return message

    async def __aiter__(self) -> AsyncIterator[Message]:
        """Yield messages until the connection closes, then stop cleanly."""
        while True:
            try:
                yield await self.recv()
            except ConnectionClosed:
                return

    async def send(self, message: Message) -> None:
        """Send a text (``str``) or binary (``bytes``) message.

        Waits while the client is behind. Raises ``ConnectionClosed`` if the
        connection is closed.
        """
        if not isinstance(message, str | bytes):
            if isinstance(message, bytearray | memoryview):
                message = bytes(message)
            else:
                raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")
        if self.close_code is not None:
            raise ConnectionClosed(self.close_code, self.close_reason)
        self._transport.send(message)
        if self._transport.writing_paused:
            await self._transport.drain()

    async def ping(self) -> float:
        """Send a ping and wait for the client's pong; return the round trip in seconds.

        Browsers and every RFC 6455 client answer pings by themselves. Raises
        ``ConnectionClosed`` if the connection closes first; wrap it in
        ``asyncio.timeout()`` to bound the wait. Also updates ``latency``.
        Raises ``ConfigError`` under an ASGI server: ASGI has no ping message
        (the ASGI server pings by itself, e.g. uvicorn's ``--ws-ping-interval``).
        """
        if self.close_code is not None:
            raise ConnectionClosed(self.close_code, self.close_reason)
        if not isinstance(self._transport, Pinging):
            raise ConfigError(
                "ws.ping() needs wirehub's own server: under an ASGI server the "
                "application cannot ping (ASGI has no ping message); the ASGI server "
                "keeps connections alive itself (uvicorn: --ws-ping-interval)"
            )
        sent = time.monotonic()  # not loop.time(): uvloop's ticks in milliseconds
        pong: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._pings = (self._pings or []) + [(sent, pong)]
        self._transport.send_ping(ping_payload(sent))
        return await pong

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close the connection and wait until it is closed."""
        self._transport.close(code, reason)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    # -- called by the server (Session) ------------------------------------

    def message_received(self, message: Message) -> None:
        self._queue.append(message)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if not self._reading_paused and len(self._queue) >= self._max_queue:
            self._reading_paused = True
            self._transport.pause_reading()

    def pong_received(self, payload: bytes) -> None:
        """A pong: it answers its ping and every earlier one (RFC 6455 §5.5.3)."""
        sent = ping_sent_at(payload)
        now = time.monotonic()
        if sent is None or not 0 <= now - sent <= PONG_HORIZON:
            return  # an unsolicited pong, or not one of our pings
        self.latency = now - sent
        pings, self._pings = self._pings or [], None
        for when, pong in pings:
            if when > sent:  # sent after the ping this pong answers
                self._pings = (self._pings or []) + [(when, pong)]
            elif not pong.done():
                pong.set_result(now - when)

    def writing_resumed(self) -> None:
        """Nothing to do: ``send`` waits on ``drain``."""

    def connection_lost(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        pings, self._pings = self._pings or [], None
        for _, pong in pings:
            if not pong.done():
                pong.set_exception(ConnectionClosed(code, reason))
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if not self._closed.done():
            self._closed.set_result(None)


def broadcast(connections: Iterable[WebSocket], message: Message) -> int:
    """Send ``message`` to every open connection (not closing); return how many it was
    sent to.

    The frame is built once and written to each connection (uncompressed,
    which every client accepts). It never waits: a connection with more than
    ``Limits.max_buffered`` unsent bytes is a slow consumer and is closed with
    4008 instead of growing its buffer (``SLOW_CONSUMER`` in ``wirehub.codes``).
    """
    text = isinstance(message, str)
    payload = message.encode() if isinstance(message, str) else bytes(message)
    frame = deflated = encode_frame(payload, text)
    if len(payload) >= COMPRESSION_THRESHOLD:
        deflated = encode_deflated_frame(payload, text)
    sent = 0
    for ws in connections:
        transport = ws._transport
        if ws.close_code is not None or transport.closing:  # a closing one takes no more
            continue
        if transport.writing_paused and transport.buffered > ws._max_buffered:
            logger.warning("broadcast: a client is not reading; closing it with 4008")
            transport.close(CloseCode.SLOW_CONSUMER, "slow consumer: not reading fast enough")
            continue
        transport.send_frame(deflated if transport.shares_deflate else frame)
        sent += 1
    return sent


class PlainEndpoint:
    """A route whose handler gets the raw ``WebSocket``; one task per connection."""

    def __init__(
        self,
        path: str,
        handler: WebSocketHandler,
        *,
        subprotocols: list[str] | None,
        max_queue: int,
        max_buffered: int,
        admit: Callable[[Request], Response | Awaitable[Response | None] | None] | None = None,
    ) -> None:
        self._admit = admit
        self.max_buffered = max_buffered
        self.path = path
        self.handler = handler
        self.subprotocols = subprotocols
        self.max_queue = max_queue
        self.tasks: set[asyncio.Task[None]] = set()

    def admit(self, request: Request) -> Response | Awaitable[Response | None] | None:
        """The hub's authentication, unless the route was registered with ``auth=False``."""
        return None if self._admit is None else self._admit(request)

    def open(self, transport: Transport) -> WebSocket:
        ws = WebSocket(transport, max_queue=self.max_queue, max_buffered=self.max_buffered)
        task = asyncio.get_running_loop().create_task(self._run(ws, transport))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return ws

    async def _run(self, ws: WebSocket, transport: Transport) -> None:
        try:
            await self.handler(ws)
        except ConnectionClosed:
            pass  # the client left while the handler was sending or receiving
        except Reject as exc:
            logger.info("handler for %s refused a client: %s", self.path, exc.reason)
            transport.close(exc.code, exc.reason)
            return
        except Exception:
            logger.exception("handler for %s failed; closing that connection with 1011", self.path)
            transport.close(CloseCode.INTERNAL_ERROR, "internal error")
            return
        transport.close(CloseCode.NORMAL, "")
