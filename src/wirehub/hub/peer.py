"""``Peer``: one client connected to the event endpoint, as the server sees it.

A Peer is also the ``Session`` the server feeds: it decodes each message and
dispatches it without a task, unless the handler is a coroutine.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING, Any, NamedTuple

from wirehub.codes import CloseCode, ErrorCode
from wirehub.exceptions import EventError, Reject
from wirehub.http.messages import Request
from wirehub.hub.handlers import HandlerSpec
from wirehub.hub.transport import Transport
from wirehub.protocol import messages as wire
from wirehub.protocol.websocket import Message

if TYPE_CHECKING:
    from wirehub.hub.hub import Hub

__all__ = ["DisconnectReason", "Peer"]

logger = logging.getLogger("wirehub.hub")


class DisconnectReason(NamedTuple):
    """Why a peer left: the WebSocket close code and reason (1006: connection lost)."""

    code: int
    reason: str


class Peer:
    """A connected client of the event endpoint.

    ``id`` is unique and unguessable; ``state`` is a dict for the application;
    ``info`` is what presence shows other members (e.g. ``{"name": "ada"}``);
    ``user`` is the authenticated identity, if any.
    """

    def __init__(self, hub: Hub, transport: Transport) -> None:
        self.hub = hub
        self.transport = transport
        self.id = secrets.token_urlsafe(12)
        self.state: dict[str, Any] = {}
        self.info: dict[str, Any] = {}
        self.user: Any = None
        self._rooms: set[str] = set()
        self._ready = False  # accepted by the connect handler: messages are dispatched
        self._early: list[Message] = []  # arrived before that; dispatched after
        self._pending = 0  # requests whose handlers are still running
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"<Peer {self.id}>"

    @property
    def request(self) -> Request:
        """The handshake request: path, query, headers, client address."""
        return self.transport.request

    @property
    def rooms(self) -> frozenset[str]:
        return frozenset(self._rooms)

    @property
    def connected(self) -> bool:
        return not self._closed

    # -- the application's API -----------------------------------------------

    async def emit(self, event: str, data: Any = None) -> None:
        """Send an event to this peer only."""
        body, binary = wire.event_body(event, data)
        self.send(*wire.event_message(body, binary))

    async def join(self, room: str) -> None:
        """Add this peer to ``room``; the server decides, so no authorization runs."""
        await self.hub._join(self, room)

    async def leave(self, room: str) -> None:
        await self.hub._leave(self, room)

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close the connection; ``disconnect`` handlers run once it is closed."""
        self.transport.close(code, reason)

    # -- sending -------------------------------------------------------------

    def send(self, payload: bytes, text: bool) -> None:
        """Send one protocol message to this peer (compressed if negotiated)."""
        if text:
            self.transport.send_text(payload)
        else:
            self.transport.send(payload)

    def _reply(self, message: wire.Ack | wire.Error | wire.Welcome) -> None:
        self.transport.send_text(wire.encode(message))

    def _ack(self, request_id: int | None, data: Any) -> None:
        if request_id is None or self._closed:
            return
        if isinstance(data, bytes | bytearray | memoryview):
            header = wire.encode(wire.Ack(request_id))
            self.transport.send(wire.pack_binary(header, bytes(data)))
            return
        try:
            payload = wire.encode(wire.Ack(request_id, data))
        except (TypeError, NotImplementedError, ValueError) as exc:
            logger.error("cannot encode the answer to request %s as JSON: %s", request_id, exc)
            self._error(request_id, ErrorCode.INTERNAL_ERROR, "internal error")
            return
        self.transport.send_text(payload)

    def _error(
        self,
        request_id: int | None,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        if not self._closed:
            self.hub.stats["errors"] += 1
            self._reply(wire.Error(str(code), message, request_id, details))

    # -- Session: called by the server -----------------------------------------

    def start(self) -> None:
        """The handshake completed: run the connect handler, then welcome."""
        handler = self.hub._handlers.get("connect")
        if handler is None:
            self._accept()
        else:
            self._spawn(self._connect(handler))

    async def _connect(self, spec: HandlerSpec) -> None:
        try:
            result = spec.func(self, self.request) if spec.takes_data else spec.func(self)
            if spec.is_async:
                await result
        except Reject as exc:
            logger.info("connect refused for %s: %s", self.request.client, exc.reason)
            self.transport.close(exc.code, exc.reason)
            return
        except Exception:
            logger.exception("connect handler failed; closing with 1011")
            self.transport.close(CloseCode.INTERNAL_ERROR, "internal error")
            return
        if not self._closed:
            self._accept()

    def _accept(self) -> None:
        self.hub.peers[self.id] = self
        limits = self.hub.limits
        self._reply(
            wire.Welcome(
                wire.PROTOCOL_VERSION,
                self.id,
                self.hub.timeouts.ping_interval,
                {
                    "max_message_size": limits.max_message_size,
                    "max_rooms": limits.max_rooms_per_peer,
                    "max_pending": limits.max_pending_calls,
                },
            )
        )
        self._ready = True
        early, self._early = self._early, []
        for message in early:
            self.message_received(message)

    def message_received(self, message: Message) -> None:
        if not self._ready:
            self._early.append(message)
            return
        self.hub.stats["messages_in"] += 1
        try:
            request, payload = wire.decode_client(message)
        except wire.DecodeError as exc:
            logger.info("bad message from peer %s: %s", self.id, exc)
            self._error(None, ErrorCode.BAD_MESSAGE, f"invalid message: {exc}")
            return
        if type(request) is wire.Emit:
            self._on_emit(request, payload)
        elif type(request) is wire.Join:
            self._spawn(self._on_join(request))
        elif type(request) is wire.Leave:
            self._spawn(self._on_leave(request))
        else:
            self._ack(request.id, None)  # ping

    def connection_lost(self, code: int, reason: str) -> None:
        self._closed = True
        self._early.clear()
        self.hub._peer_gone(self, DisconnectReason(code, reason))

    # -- dispatch --------------------------------------------------------------

    def _on_emit(self, request: wire.Emit, payload: bytes | None) -> None:
        spec = self.hub._handlers.get(request.event)
        if spec is None or request.event in ("connect", "disconnect"):
            self._error(request.id, ErrorCode.UNKNOWN_EVENT, f"no handler for {request.event!r}")
            return
        limit = self.hub.limits.max_pending_calls
        if spec.is_async and limit is not None and self._pending >= limit:
            self._error(
                request.id, ErrorCode.TOO_MANY_PENDING, f"more than {limit} requests pending"
            )
            return
        try:
            data = spec.decode(request.data, payload)
            result = spec.func(self, data) if spec.takes_data else spec.func(self)
        except EventError as exc:
            self._error(request.id, exc.code, exc.message, exc.details)
            return
        except Exception:
            logger.exception("handler for event %r failed", request.event)
            self._error(request.id, ErrorCode.INTERNAL_ERROR, "internal error")
            return
        if spec.is_async:
            self._pending += 1
            self._spawn(self._finish(request, result))
        else:
            self._ack(request.id, result)

    async def _finish(self, request: wire.Emit, pending: Any) -> None:
        try:
            result = await pending
        except EventError as exc:
            self._error(request.id, exc.code, exc.message, exc.details)
        except Exception:
            logger.exception("handler for event %r failed", request.event)
            self._error(request.id, ErrorCode.INTERNAL_ERROR, "internal error")
        else:
            self._ack(request.id, result)
        finally:
            self._pending -= 1

    async def _on_join(self, request: wire.Join) -> None:
        try:
            answer = await self.hub._client_join(self, request.room, request.since, request.history)
        except EventError as exc:
            self._error(request.id, exc.code, exc.message, exc.details)
        except Exception:
            logger.exception("join of %r failed", request.room)
            self._error(request.id, ErrorCode.INTERNAL_ERROR, "internal error")
        else:
            self._ack(request.id, answer)

    async def _on_leave(self, request: wire.Leave) -> None:
        await self.hub._leave(self, request.room)
        self._ack(request.id, None)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
