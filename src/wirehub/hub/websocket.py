"""Plain WebSocket endpoints: ``async for message in ws: await ws.send(message)``."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from wirehub.codes import CloseCode
from wirehub.exceptions import ConnectionClosed, Reject
from wirehub.http.messages import Request, Response
from wirehub.hub.transport import Transport
from wirehub.protocol.websocket import (
    COMPRESSION_THRESHOLD,
    Message,
    encode_deflated_frame,
    encode_frame,
)

__all__ = ["PlainEndpoint", "WebSocket", "WebSocketHandler", "broadcast"]

logger = logging.getLogger("wirehub.hub")

WebSocketHandler = Callable[["WebSocket"], Awaitable[None]]


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
        self.close_code: int | None = None
        self.close_reason = ""

    @property
    def request(self) -> Request:
        """The handshake request: ``path``, ``query``, ``headers``, ``client``."""
        return self._transport.request

    @property
    def subprotocol(self) -> str | None:
        """The negotiated subprotocol, or None."""
        return self._transport.subprotocol

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

    def connection_lost(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if not self._closed.done():
            self._closed.set_result(None)


def broadcast(connections: Iterable[WebSocket], message: Message) -> int:
    """Send ``message`` to every open connection; return how many it was sent to.

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
        if ws.close_code is not None:
            continue
        transport = ws._transport
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
