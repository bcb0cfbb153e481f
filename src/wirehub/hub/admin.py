"""The admin page: ``Hub(admin_key=...)`` serves ``/admin``, live over the event layer.

The page (``static/admin.html`` and ``admin.js``, built on ``/wirehub.js``)
connects to ``/admin/ws``: an event endpoint of its own, with its own
``Node`` — handlers, peers and in-memory broker apart from the
application's, so no application hook (authentication, authorization, rate
limits) applies to it and no application client can call its handlers. Its
only credential is the admin key, sent in the first message (``auth``,
PROTOCOL.md §13), never in a URL. A handshake whose ``Origin`` is not the
page's own is refused with 403 whatever ``allowed_origins`` says, and the
page itself may not be framed, so no other site can drive it.

The cluster view travels through the hub's broker, on a control room no
client can name (it starts with a NUL character; ``check_room_name``
refuses those). Every process publishes a report of itself (``report.py``)
every ``interval`` seconds; every process keeps the latest report of each,
pushes them to its admin pages, and forgets a process that said goodbye or
fell silent for ``SILENT`` intervals. Looking up or disconnecting a peer asks
every process the same way; the one holding the peer answers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import itertools
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec

from wirehub.brokers.base import Publication
from wirehub.brokers.memory import MemoryBroker
from wirehub.codes import CloseCode, ErrorCode
from wirehub.exceptions import ConfigError, EventError, Reject, Unavailable
from wirehub.http.messages import Request, Response
from wirehub.http.routing import Router
from wirehub.http.static import file_response
from wirehub.hub.fanout import Member
from wirehub.hub.handlers import HandlerSpec
from wirehub.hub.node import Node
from wirehub.hub.peer import Peer
from wirehub.hub.report import node_report
from wirehub.hub.room import check_room_name
from wirehub.hub.target import Target
from wirehub.hub.transport import Transport
from wirehub.protocol import messages as wire
from wirehub.security.auth import Admission, TokenAuth, authenticate_request
from wirehub.security.origins import OriginPolicy
from wirehub.security.ratelimit import RateLimits

__all__ = ["ADMIN_PATH", "CONTROL_ROOM", "Admin", "AdminKey"]

logger = logging.getLogger("wirehub.admin")

ADMIN_PATH = "/admin"
CONTROL_ROOM = "\x00wirehub:admin"
"""The room the processes of a hub talk on; a client cannot name it."""

MIN_KEY_LENGTH = 16
SILENT = 5  # intervals without a report after which a process is forgotten
STATIC = Path(__file__).resolve().parent.parent / "static"

# The page: no framing, nothing from elsewhere.
PAGE_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
]

H = TypeVar("H", bound=Callable[..., Any])


class Administered(Protocol):
    """What the admin page reads and hooks into (``Hub`` implements it)."""

    node: Node
    router: Router

    def on_startup(self, hook: H) -> H: ...

    def on_shutdown(self, hook: H) -> H: ...

    def start_background_task(self, coro: Any) -> asyncio.Task[Any]: ...


class AdminKey(TokenAuth):
    """The admin page's credential: one shared key, compared in constant time.

    It is taken from the first message only (not the URL, not a cookie).
    Raises ``ConfigError`` for a key shorter than 16 characters.
    """

    def __init__(self, key: str) -> None:
        super().__init__(query=None, cookie=None, allow_message=True)
        if not isinstance(key, str) or len(key) < MIN_KEY_LENGTH:
            raise ConfigError(f"the admin key has at least {MIN_KEY_LENGTH} characters")
        self._key = key.encode()

    def verify(self, token: str) -> str:
        if hmac.compare_digest(token.encode(), self._key):
            return "admin"
        raise Reject(401, "wrong admin key", code=CloseCode.UNAUTHORIZED)


class EmitCommand(msgspec.Struct, forbid_unknown_fields=True):
    """``emit``: send ``event`` with ``data`` to ``room`` on every node."""

    room: str
    event: str
    data: Any = None


class PeerCommand(msgspec.Struct, forbid_unknown_fields=True):
    """``lookup`` / ``disconnect`` a peer by id, wherever it is connected."""

    id: str
    reconnect: bool = False  # disconnect: 1012 (the client reconnects) instead of 4003


class Admin:
    """The admin page of one hub (``hub.admin``); see the module docstring.

    ``interval``: seconds between two reports of this process; ``timeout``:
    how long a lookup or disconnect waits for the process holding the peer.
    """

    def __init__(
        self, hub: Administered, key: str, *, interval: float = 1.0, timeout: float = 2.0
    ) -> None:
        self.hub = hub
        self.auth = AdminKey(key)
        self.interval = interval
        self.timeout = timeout
        main = hub.node
        self.node = Node(
            MemoryBroker(history_size=0),
            limits=main.limits,
            timeouts=main.timeouts,
            stats=collections.Counter(),
            presence=False,
            compression=True,
            slow_consumer="close",
            rate_limits=RateLimits(),
        )
        self.node.token_auth = self.auth
        for name, handler in (
            ("snapshot", self.snapshot),
            ("lookup", self.lookup),
            ("disconnect_peer", self.disconnect_peer),
            ("emit", self.emit),
        ):
            self.node.handlers[name] = HandlerSpec.inspect(handler)
        self.name = ""  # this process among the hub's: set at start (after a fork)
        self.started = time.time()
        self.reports: dict[str, tuple[dict[str, Any], float]] = {}  # by name, when heard
        self._asked: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        router = hub.router
        router.add_http(ADMIN_PATH, {"GET"}, _page("admin.html"))
        for name in ("admin.js", "admin.css"):
            router.add_http(f"{ADMIN_PATH}/{name}", {"GET"}, _page(name))
        router.add_websocket(f"{ADMIN_PATH}/ws", _AdminEndpoint(self))
        hub.on_startup(self.start)
        hub.on_shutdown(self.stop)

    # -- lifecycle (hooks of the hub) ---------------------------------------------

    async def start(self) -> None:
        self.name = secrets.token_urlsafe(6)
        self.started = time.time()
        await self.node.broker.start(self.node)
        self.hub.node.channels[CONTROL_ROOM] = self._heard
        with contextlib.suppress(Unavailable):  # counted: subscribed once Redis is back
            await self.hub.node.broker.subscribe(CONTROL_ROOM)
        self.hub.start_background_task(self._report_every_interval())

    async def stop(self) -> None:
        await self._tell({"op": "bye", "node": self.name})
        self.hub.node.channels.pop(CONTROL_ROOM, None)
        await self.hub.node.broker.unsubscribe(CONTROL_ROOM)
        await self.node.broker.close()

    async def _report_every_interval(self) -> None:
        while True:
            report = node_report(
                self.hub.node, self.hub.router, name=self.name, started=self.started
            )
            self._keep(report)  # here even when the broker cannot carry it
            await self._tell({"op": "report", "report": report})
            self._forget_silent()
            await asyncio.sleep(self.interval)

    # -- what the page calls ---------------------------------------------------------

    def snapshot(self, peer: Peer) -> dict[str, Any]:
        """Every process's latest report, and which one this page is connected to."""
        return {"node": self.name, "nodes": [report for report, _ in self.reports.values()]}

    async def lookup(self, peer: Peer, command: PeerCommand) -> dict[str, Any]:
        """``{"found": true, "peer": {...}}`` from the process holding the peer, or found false."""
        answer = await self._ask("lookup", command)
        return {"found": answer is not None, "peer": answer}

    async def disconnect_peer(self, peer: Peer, command: PeerCommand) -> dict[str, Any]:
        """Close the peer's connection: 4003 (final), or 1012 with ``reconnect``."""
        answer = await self._ask("disconnect", command)
        return {"closed": answer is not None, "peer": answer}

    async def emit(self, peer: Peer, command: EmitCommand) -> dict[str, Any]:
        """Emit to a room, on every node, as the application would."""
        problem = check_room_name(command.room)
        if problem is not None:
            raise EventError(ErrorCode.INVALID_DATA, problem, {"path": "$.room"})
        if not command.event:
            raise EventError(ErrorCode.INVALID_DATA, "an event name is a non-empty string")
        if command.event in wire.CLIENT_CALLBACKS:
            message = f"event {command.event!r}: the clients keep that name for their callbacks"
            raise EventError(ErrorCode.INVALID_DATA, message, {"path": "$.event"})
        position = await Target(self.hub.node, room=command.room).emit(command.event, command.data)
        logger.info("admin emitted %r to room %r", command.event, command.room)
        if position is None:
            return {"epoch": None, "offset": None}
        return {"epoch": position.epoch, "offset": position.offset}

    # -- between the processes -----------------------------------------------------

    async def _ask(self, op: str, command: PeerCommand) -> dict[str, Any] | None:
        """Run ``op`` where the peer is: here, or on the process that answers in time."""
        local = self._act(op, command)
        if local is not None:
            return local
        asked = next(self._ids)
        answer = asyncio.get_running_loop().create_future()
        self._asked[asked] = answer
        try:
            request = {"op": op, "from": self.name, "asked": asked, **msgspec.to_builtins(command)}
            await self._tell(request)
            async with asyncio.timeout(self.timeout):
                result: dict[str, Any] = await answer
                return result
        except TimeoutError:
            return None
        finally:
            del self._asked[asked]

    def _act(self, op: str, command: PeerCommand) -> dict[str, Any] | None:
        """Look up (and for ``disconnect``, close) a peer of this process; None if not here."""
        member = self.hub.node.peers.get(command.id)
        if member is None:
            return None
        described = self._describe(member)
        if op == "disconnect":
            code = CloseCode.SERVICE_RESTART if command.reconnect else CloseCode.FORBIDDEN
            logger.warning("admin disconnects peer %s with %d", member.id, code)
            member.transport.close(code, "closed by an administrator")
        return described

    def _describe(self, member: Member) -> dict[str, Any]:
        request = member.transport.request
        user = getattr(member, "user", None)
        return {
            "id": member.id,
            "node": self.name,
            "client": request.client_ip,
            "path": request.path,
            "user_agent": request.headers.get("user-agent"),
            "user": None if user is None else str(user),
            "info": member.info,
            "rooms": sorted(self.hub.node.rooms.of(member)),
            "transport": member.transport.kind,
            "buffered": member.transport.buffered,
        }

    async def _tell(self, message: dict[str, Any]) -> None:
        """Publish ``message`` to every process's admin (this one's included)."""
        body = msgspec.json.encode(message)
        try:
            await self.hub.node.publish(Publication(body, room=CONTROL_ROOM, volatile=True))
        except Exception as exc:  # the broker is down: this process still reports to its pages
            logger.debug("admin message not sent: %r", exc)

    def _heard(self, publication: Publication) -> None:
        """A message on the control room (called by the rooms table, for each process)."""
        try:
            message = msgspec.json.decode(publication.body)
            op = message["op"]
        except (msgspec.DecodeError, KeyError, TypeError):
            logger.warning("undecodable message on the admin control room")
            return
        if op == "report":
            self._keep(message["report"])
        elif op == "bye":
            self._forget(message["node"])
        elif op == "answer" and message.get("to") == self.name:
            waiting = self._asked.get(message["asked"])
            if waiting is not None and not waiting.done():
                waiting.set_result(message["peer"])
        elif op in ("lookup", "disconnect") and message.get("from") != self.name:
            command = PeerCommand(message["id"], bool(message.get("reconnect")))
            found = self._act(op, command)
            if found is not None:
                answer = {"op": "answer", "to": message["from"], "asked": message["asked"]}
                self.hub.start_background_task(self._tell({**answer, "peer": found}))

    def _keep(self, report: dict[str, Any]) -> None:
        self.reports[report["node"]] = (report, time.monotonic())
        self._push("report", report)

    def _forget(self, name: str) -> None:
        if self.reports.pop(name, None) is not None:
            self._push("gone", {"node": name})

    def _forget_silent(self) -> None:
        deadline = time.monotonic() - SILENT * self.interval
        for name, (_, heard) in list(self.reports.items()):
            if heard < deadline:
                self._forget(name)

    def _push(self, event: str, data: Any) -> None:
        """Send an event to every admin page connected to this process: one encode."""
        if self.node.peers:
            payload, text = wire.event_message(*wire.event_body(event, data))
            self.node.fanout.send(self.node.peers.values(), payload, text, None)


class _AdminEndpoint:
    """``/admin/ws``: same-origin handshakes only; the key comes in the first message."""

    subprotocols: list[str] | None = None

    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self.origins = OriginPolicy(None)  # the page's own origin, and nothing else

    def admit(self, request: Request) -> Admission:
        if not self.origins.allows(request.headers.get("origin"), request.headers.get("host")):
            return Response.error(403, "the admin endpoint takes its own page's origin only")
        return authenticate_request(self.admin.auth, request, deferrable=True)

    def open(self, transport: Transport) -> Peer:
        peer = Peer(self.admin.node, transport)
        peer.start()
        return peer


def _page(name: str) -> Callable[[Request], Response]:
    path = STATIC / name

    def serve(request: Request) -> Response:
        response = file_response(path, request)
        response.headers.extend(PAGE_HEADERS)
        return response

    return serve
