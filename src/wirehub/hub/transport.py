"""The interfaces between the hub and the server.

The server implements ``Transport`` for each upgraded connection and calls
the ``Session`` that an ``Endpoint`` opened for it. The hub only ever sees
these, never a socket, so it can be tested and reused without the server.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol, runtime_checkable

from wirehub.http.messages import Request, Response
from wirehub.protocol.websocket import Message

__all__ = ["Endpoint", "Pinging", "Session", "Transport"]


class Transport(Protocol):
    """One open connection of a client, as the hub sees it: a WebSocket, or an
    HTTP fallback session that behaves like one (``hub/http_transport.py``)."""

    kind: str
    """How the client is connected: ``"websocket"``, or an HTTP fallback's
    ``"long-polling"`` / ``"streaming"`` (metrics label connections by it)."""

    @property
    def request(self) -> Request:
        """The handshake request (path, query, headers, client address)."""

    @property
    def subprotocol(self) -> str | None: ...

    writing_paused: bool
    """True while unsent bytes are above the write-buffer high-water mark."""

    shares_deflate: bool
    """The client takes deflated broadcast frames (``encode_deflated_frame``)."""

    @property
    def buffered(self) -> int:
        """Bytes queued for this connection and not yet sent."""

    def send(self, message: Message) -> None:
        """Queue one message, compressed if the client negotiated deflate."""

    def send_text(self, payload: bytes) -> None:
        """Queue one text message given as UTF-8 bytes (encoded JSON)."""

    def send_frame(self, frame: bytes) -> None:
        """Queue a frame built once for many receivers (see ``encode_frame``)."""

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; the session hears ``connection_lost`` later.

        A reason longer than a close frame holds (123 bytes) is cut; a code
        no close frame may carry raises ``ConfigError`` (``close_reason``).
        """

    @property
    def closing(self) -> bool:
        """True once a close started, whichever side started it: from then on
        nothing the client sends is handled (the session is not given it)."""

    async def drain(self) -> None:
        """Wait until the write buffer is below its low-water mark (or closed)."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


@runtime_checkable
class Pinging(Protocol):
    """A transport that lets the application ping (the native server; ASGI has no pings).

    The session hears the pongs through an optional ``pong_received(payload)``.
    """

    def send_ping(self, payload: bytes) -> None:
        """Queue a ping frame carrying ``payload`` (RFC 6455 §5.5.2)."""


class Session(Protocol):
    """Receives what happens on one connection; created by ``Endpoint.open``."""

    def message_received(self, message: Message) -> None:
        """A complete message arrived. Must not raise; must not block."""

    def connection_lost(self, code: int, reason: str) -> None:
        """The connection is closed; called exactly once."""

    def writing_resumed(self) -> None:
        """The transport's unsent bytes fell below the low-water mark
        (``writing_paused`` just turned False): it takes messages again."""


class Endpoint(Protocol):
    """What a WebSocket route points at."""

    subprotocols: list[str] | None

    def admit(self, request: Request) -> Response | Awaitable[Response | None] | None:
        """Called before the upgrade, once the server's own checks passed (``Gate``).

        None lets the handshake go on; a ``Response`` refuses it (401, 403…).
        An awaitable (an async authentication hook) is awaited first, with
        the socket's reading paused. It may set ``request.user``.
        """

    def open(self, transport: Transport) -> Session:
        """A client completed the handshake on this route."""
