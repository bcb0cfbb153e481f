"""``Hub``: the application object that routes, endpoints and events hang off."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import inspect
import logging
import os
import ssl as _ssl
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, TypeVar

from wirehub.brokers.base import Broker, History, Publication
from wirehub.brokers.memory import MemoryBroker
from wirehub.codes import CloseCode, ErrorCode
from wirehub.config import Limits, Timeouts
from wirehub.exceptions import ConfigError, EventError
from wirehub.http.messages import Request, Response
from wirehub.http.proxy import TrustedProxies
from wirehub.http.routing import HttpHandler, Router
from wirehub.http.static import StaticFiles, file_response
from wirehub.hub.api import EMIT_PATH, emit_route
from wirehub.hub.handlers import HandlerSpec
from wirehub.hub.lifecycle import Lifecycle
from wirehub.hub.peer import DisconnectReason, Peer
from wirehub.hub.room import Room, check_room_name
from wirehub.hub.transport import Transport
from wirehub.hub.websocket import PlainEndpoint, WebSocketHandler
from wirehub.protocol import messages as wire
from wirehub.protocol.websocket import (
    COMPRESSION_THRESHOLD,
    encode_deflated_frame,
    encode_frame,
)
from wirehub.security.admission import Gate
from wirehub.security.auth import Admission, AuthHook, TokenAuth, authenticate_request
from wirehub.security.origins import OriginPolicy
from wirehub.security.ratelimit import PeerLimiter, RateLimits

__all__ = ["Hub", "Target"]

logger = logging.getLogger("wirehub.hub")

H = TypeVar("H", bound=Callable[..., Any])

JoinAuthorizer = Callable[[Peer, str], Any]  # -> bool or Awaitable[bool]
EmitAuthorizer = Callable[[Peer, str, Any], Any]  # -> bool or Awaitable[bool]



class Runner(Protocol):
    def __call__(
        self,
        hub: Hub,
        host: str,
        port: int,
        *,
        ssl: _ssl.SSLContext | None,
        shutdown_code: int,
    ) -> None: ...


MAX_HISTORY_REPLAY = 1000
STATIC = Path(__file__).resolve().parent.parent / "static"


class Hub:
    """A wirehub application: plain endpoints, HTTP routes and the event layer.

    ::

        hub = Hub()

        @hub.on("chat")
        async def chat(peer, data):
            await hub.to("lobby").emit("chat", data, exclude=peer)
            return {"ok": True}

        hub.run(port=8000)

    Security keywords (docs/security.md): ``allowed_origins`` (browser
    origins that may open a WebSocket besides the server's own: exact ones
    and ``fnmatch`` patterns like ``"https://*.example.com"``, ``["*"]`` for
    any; by default a cross-origin handshake is refused with 403),
    ``rate_limits`` (a ``RateLimits``: per peer, per event and per client
    address; all off by default). ``authenticate``, ``authorize_join`` and
    ``authorize_emit`` register the hooks.

    Keyword-only configuration, grouped: ``limits`` (sizes and counts),
    ``timeouts``, ``compression`` (offer permessage-deflate), ``subprotocols``
    (default for plain endpoints), ``broker`` (``MemoryBroker()`` unless
    given), ``events_path`` (the event endpoint; None turns it off),
    ``presence`` (announce joins and leaves to room members),
    ``slow_consumer`` (what happens to a peer that does not read fast enough:
    ``"close"`` it with 4008, or ``"drop"`` the messages it cannot take),
    ``trusted_proxies`` (addresses or networks of the reverse proxies whose
    ``X-Forwarded-For`` gives ``request.client_ip``), ``api_key`` (turns on
    ``POST /api/emit`` for requests bearing ``Authorization: Bearer <api_key>``).
    """

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        timeouts: Timeouts | None = None,
        compression: bool = True,
        subprotocols: list[str] | None = None,
        broker: Broker | None = None,
        events_path: str | None = "/ws",
        presence: bool = False,
        slow_consumer: Literal["close", "drop"] = "close",
        allowed_origins: Iterable[str] | None = None,
        rate_limits: RateLimits | None = None,
        trusted_proxies: Iterable[str] | None = None,
        api_key: str | None = None,
    ) -> None:
        if slow_consumer not in ("close", "drop"):
            raise ConfigError(f"slow_consumer is 'close' or 'drop', not {slow_consumer!r}")
        self.limits = limits or Limits()
        self.timeouts = timeouts or Timeouts()
        self.compression = compression
        self.subprotocols = subprotocols
        self.broker: Broker = broker if broker is not None else MemoryBroker()
        self.presence = presence
        self.slow_consumer = slow_consumer
        self.trusted_proxies = TrustedProxies(trusted_proxies) if trusted_proxies else None
        self.router = Router()
        self.peers: dict[str, Peer] = {}
        self.rooms: dict[str, Room] = {}
        self.stats: collections.Counter[str] = collections.Counter()
        self._handlers: dict[str, HandlerSpec] = {}
        self._authorize_join: JoinAuthorizer | None = None
        self._authorize_emit: EmitAuthorizer | None = None
        self._authenticate: AuthHook | None = None
        self._token_auth: TokenAuth | None = None
        self.rate_limits = rate_limits or RateLimits()
        self.gate = Gate(
            origins=OriginPolicy(allowed_origins),
            rate_limits=self.rate_limits,
            max_connections=self.limits.max_connections,
            stats=self.stats,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.lifecycle = Lifecycle()
        if events_path is not None:
            self.router.add_websocket(events_path, _EventEndpoint(self))
        for name in ("wirehub.js", "wirehub.d.ts"):  # the browser client, from the package
            self.router.add_http(f"/{name}", {"GET"}, _package_file(STATIC / name))
        if api_key is not None:
            self.router.add_http(EMIT_PATH, {"POST"}, emit_route(self, api_key))

    # -- routes ------------------------------------------------------------

    def websocket(
        self, path: str, *, subprotocols: list[str] | None = None, auth: bool = True
    ) -> Callable[[WebSocketHandler], WebSocketHandler]:
        """Register a plain WebSocket endpoint: ``async def handler(ws)``.

        The handler runs once per connection. When it returns the connection
        is closed with 1000; if it raises, with 1011 (and the error is logged).
        The ``authenticate`` hook guards it (``ws.user``) unless ``auth=False``.
        """

        def register(handler: WebSocketHandler) -> WebSocketHandler:
            endpoint = PlainEndpoint(
                path,
                handler,
                subprotocols=subprotocols if subprotocols is not None else self.subprotocols,
                max_queue=self.limits.max_queued_messages,
                max_buffered=self.limits.max_buffered,
                admit=self._admit_plain if auth else None,
            )
            self.router.add_websocket(path, endpoint)
            return handler

        return register

    def route(self, path: str, *, methods: tuple[str, ...] = ("GET",)) -> Callable[[H], H]:
        """Register an HTTP handler: ``(request) -> Response`` (sync or async)."""

        def register(handler: H) -> H:
            self.router.add_http(path, set(methods), handler)
            return handler

        return register

    def add_route(
        self, path: str, handler: HttpHandler, *, methods: tuple[str, ...] = ("GET",)
    ) -> None:
        self.router.add_http(path, set(methods), handler)

    def mount(self, prefix: str, directory: str | os.PathLike[str]) -> None:
        """Serve the files in ``directory`` under URL ``prefix`` (``"/"`` for the root)."""
        self.router.add_static(StaticFiles(prefix, directory))

    # -- events ------------------------------------------------------------

    def on(self, event: str) -> Callable[[H], H]:
        """Register the handler of ``event`` (sync or async).

        ``"connect"``: ``(peer, request)``, runs before the client is welcomed;
        raise ``wirehub.Reject`` to refuse it. ``"disconnect"``:
        ``(peer, reason)``. Any other name: ``(peer, data)`` or ``(peer)``;
        the return value is the acknowledgement, and ``data`` is validated
        against the annotation of that parameter when it has one.
        """
        if not isinstance(event, str) or not event:
            raise ConfigError("an event name is a non-empty string")

        def register(handler: H) -> H:
            if event in self._handlers:
                raise ConfigError(f"a handler for {event!r} already exists")
            lifecycle = event in ("connect", "disconnect")  # their 2nd argument is not data
            self._handlers[event] = HandlerSpec.inspect(handler, data=not lifecycle)
            return handler

        return register

    def authorize_join(self, func: JoinAuthorizer) -> JoinAuthorizer:
        """Decorate the hook deciding client-requested joins: ``(peer, room) -> bool``.

        Without one, a client may join any validly named room. Joins made by
        the server (``await peer.join(room)``) are never checked.
        """
        self._authorize_join = func
        return func

    def authorize_emit(self, func: EmitAuthorizer) -> EmitAuthorizer:
        """Decorate the hook deciding client emits: ``(peer, event, data) -> bool``.

        It runs after ``data`` was validated, before the handler; False (or
        an exception, logged) answers ``forbidden`` and the handler does not
        run. Emits made by the server are never checked.
        """
        self._authorize_emit = func
        return func

    def authenticate(self, hook: AuthHook) -> AuthHook:
        """Register the hook authenticating WebSocket handshakes: ``(request) -> identity``.

        Sync or async; it runs before the upgrade. ``raise Reject(401, reason)``
        (or 403) refuses with that HTTP status; the returned identity becomes
        ``request.user``, ``peer.user`` and ``ws.user``. A ``TokenAuth`` such
        as ``JWTAuth(...)`` also takes the token from the first message and
        refreshes it on the event endpoint (docs/security.md).
        """
        self._authenticate = hook
        self._token_auth = hook if isinstance(hook, TokenAuth) else None
        return hook

    def _admit_events(self, request: Request) -> Admission:
        if self._authenticate is None:
            return None
        return authenticate_request(self._authenticate, request, deferrable=True, stats=self.stats)

    def _admit_plain(self, request: Request) -> Admission:
        if self._authenticate is None:
            return None
        return authenticate_request(self._authenticate, request, deferrable=False, stats=self.stats)

    async def _emit_allowed(self, peer: Peer, event: str, data: Any) -> bool:
        assert self._authorize_emit is not None
        try:
            allowed = self._authorize_emit(peer, event, data)
            if inspect.isawaitable(allowed):
                allowed = await allowed
        except Exception:
            logger.exception("authorize_emit failed for event %r; refusing", event)
            allowed = False
        if not allowed:
            self.stats["forbidden"] += 1
        return bool(allowed)

    def _peer_limiter(self) -> PeerLimiter | None:
        return PeerLimiter(self.rate_limits) if self.rate_limits.per_peer else None

    async def emit(
        self, event: str, data: Any = None, *, exclude: Peer | str | None = None
    ) -> None:
        """Send an event to every connected peer (on every node)."""
        await Target(self).emit(event, data, exclude=exclude)

    def to(self, room: str) -> Target:
        """The members of ``room`` (on every node): ``await hub.to(room).emit(...)``."""
        return Target(self, room=room)

    def to_peer(self, peer_id: str) -> Target:
        """One peer by id, wherever it is connected."""
        return Target(self, peer=peer_id)

    def room(self, name: str) -> Room:
        """The local members of ``name`` (an empty room if nobody is in it)."""
        return self.rooms.get(name) or Room(name)

    def emit_threadsafe(
        self,
        event: str,
        data: Any = None,
        *,
        room: str | None = None,
        exclude: str | None = None,
    ) -> concurrent.futures.Future[wire.Position | None]:
        """``emit`` from another thread (a Flask view, a worker thread)."""
        if self._loop is None:
            raise ConfigError(
                "the hub is not running in this process (under --workers it runs in the "
                "workers, not where the app was imported): start producers from an "
                "@hub.on_startup hook, or emit with wirehub.Emitter"
            )
        target = Target(self, room=room)
        coro = target.emit(event, data, exclude=exclude)
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def health(self) -> dict[str, Any]:
        """What ``GET /healthz`` reports about the hub (the server adds its own counts)."""
        broker = self.broker.health()
        return {
            "status": "ok" if broker.get("ok", True) else "degraded",
            "peers": len(self.peers),
            "rooms": len(self.rooms),
            "broker": broker,
            "stats": dict(self.stats),
        }

    # -- lifecycle -----------------------------------------------------------

    def on_startup(self, hook: H) -> H:
        """Decorate a function (sync or async, no arguments) to run when the hub starts.

        It runs in every process that serves the hub: each ``--workers``
        worker after the fork, and under an ASGI server's lifespan. The
        broker is connected by then, so it may emit. If it raises, the hub
        does not start. See ``wirehub.hub.lifecycle``.
        """
        return self.lifecycle.on_startup(hook)

    def on_shutdown(self, hook: H) -> H:
        """Decorate a function (sync or async) to run when the hub stops.

        It runs after the clients left and the background tasks ended,
        before the broker closes; an error is logged and the others still run.
        """
        return self.lifecycle.on_shutdown(hook)

    def start_background_task(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` for the life of the hub; it is cancelled at shutdown.

        Call it from an ``on_startup`` hook (once per worker) or a handler.
        Its exception, if any, is logged. Raises ``ConfigError`` where the
        hub is not running (at import time, in the ``--workers`` supervisor).
        """
        return self.lifecycle.start_background_task(coro)

    async def start(self) -> None:
        """Connect the broker, run the startup hooks; the host calls this before serving."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            await self.broker.start(self)
            try:
                await self.lifecycle.startup()
            except BaseException:
                self._loop = None
                await self.broker.close()
                raise

    async def stop(self) -> None:
        """End background tasks, run the shutdown hooks, release the broker; after the
        last client left."""
        if self._loop is not None:
            await self.lifecycle.shutdown()
            self._loop = None
            await self.broker.close()

    runner: ClassVar[Runner | None] = None
    """What ``run`` calls: ``runner(hub, host, port, ssl=..., shutdown_code=...)``.

    The package root sets it to wirehub's own server (``wirehub/__init__.py``),
    which it loads only when called: the hub layer never imports the server
    (DESIGN.md), yet ``hub.run()`` is where users start.
    """

    def run(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        ssl: _ssl.SSLContext | None = None,
        shutdown_code: int = 1001,
    ) -> None:
        """Serve with wirehub's own server until SIGINT/SIGTERM, then shut down gracefully.

        Prints where it listens. Uses uvloop when it is installed. For TLS
        files, workers and the rest, use the ``wirehub serve`` command; to
        serve inside your own event loop, ``async with wirehub.serve(hub)``.
        """
        runner = type(self).runner  # from the class: not bound to this hub
        if runner is None:
            raise ConfigError("no server to run the hub: import wirehub")
        runner(self, host, port, ssl=ssl, shutdown_code=shutdown_code)

    # -- delivery (the broker calls this) -----------------------------------------

    def deliver(self, publication: Publication) -> None:
        """Deliver a publication to this node's peers: one encode, one frame, many writes."""
        receivers: Iterable[Peer]
        if publication.room is not None:
            room = self.rooms.get(publication.room)
            if room is None:
                return
            receivers = room.members
            if publication.presence:
                payload = b'{"type":"presence","room":%s,%s' % (
                    wire.encode_json(publication.room),
                    publication.body,
                )
                text = True
            else:
                payload, text = wire.event_message(
                    publication.body, publication.binary, publication.room, publication.position
                )
        else:
            if publication.peer is not None:
                peer = self.peers.get(publication.peer)
                if peer is None:
                    return
                receivers = (peer,)
            else:
                receivers = self.peers.values()
            payload, text = wire.event_message(publication.body, publication.binary)
        frame = encode_frame(payload, text)
        # Big messages are also deflated, once, for every client that can take it.
        deflated = frame
        if self.compression and len(payload) >= COMPRESSION_THRESHOLD:
            deflated = encode_deflated_frame(payload, text)
        exclude = publication.exclude
        sent = 0
        for peer in receivers:  # the hot loop: attribute reads and one call per receiver
            transport = peer.transport
            if (
                (transport.writing_paused and self._behind(peer, transport))
                or peer.id == exclude
                or not peer._ready  # joined by the connect handler, not welcomed yet
            ):
                continue
            transport.send_frame(deflated if transport.shares_deflate else frame)
            sent += 1
        self.stats["deliveries"] += sent

    def _behind(self, peer: Peer, transport: Transport) -> bool:
        """Apply the slow-consumer policy; True when this delivery must be skipped."""
        buffered = transport.buffered
        if buffered <= self.limits.max_buffered:
            return False
        self.stats["dropped"] += 1
        if self.slow_consumer == "close" and peer.connected and "slow" not in peer.state:
            peer.state["slow"] = True
            self.stats["slow_consumers"] += 1
            logger.warning(
                "peer %s is not reading (%d bytes unsent); closing it with 4008", peer.id, buffered
            )
            transport.close(CloseCode.SLOW_CONSUMER, "slow consumer: not reading fast enough")
        return True

    # -- rooms -------------------------------------------------------------------

    async def _join(self, peer: Peer, name: str) -> None:
        if not peer.connected or name in peer._rooms:
            return
        room = self.rooms.get(name)
        first = room is None
        if room is None:
            room = self.rooms[name] = Room(name)
        room.members.add(peer)
        peer._rooms.add(name)
        if first:
            await self.broker.subscribe(name)
        if self.presence:
            await self._presence(name, "joined", peer)

    async def _leave(self, peer: Peer, name: str) -> None:
        if name not in peer._rooms:
            return
        peer._rooms.discard(name)
        if self._forget(peer, name):
            await self.broker.unsubscribe(name)
        if self.presence:
            await self._presence(name, "left", peer)

    def _forget(self, peer: Peer, name: str) -> bool:
        """Remove ``peer`` from room ``name``; True when the room became empty."""
        room = self.rooms.get(name)
        if room is None:
            return False
        room.members.discard(peer)
        if room.members:
            return False
        del self.rooms[name]
        return True

    async def _presence(self, room: str, change: str, peer: Peer) -> None:
        member = wire.encode_json({"id": peer.id, "info": peer.info})
        body = b'"%s":%s}' % (change.encode(), member)
        await self.broker.publish(Publication(body, room=room, exclude=peer.id, presence=True))

    async def _client_join(
        self, peer: Peer, room: str, since: wire.Position | None, history: int
    ) -> dict[str, Any]:
        """A ``join`` request: check, authorize, join, replay; return the ack's data."""
        problem = check_room_name(room)
        if problem is not None:
            raise EventError(ErrorCode.INVALID_DATA, problem, {"path": "$.room", "error": problem})
        if room not in peer._rooms:
            limit = self.limits.max_rooms_per_peer
            if limit is not None and len(peer._rooms) >= limit:
                raise EventError(
                    ErrorCode.LIMIT_EXCEEDED, f"a peer may be in at most {limit} rooms"
                )
            if not await self._authorized(peer, room):
                self.stats["forbidden"] += 1
                raise EventError(ErrorCode.FORBIDDEN, "not allowed to join this room")
            await self._join(peer, room)
        limit = MAX_HISTORY_REPLAY if since is not None else min(history, MAX_HISTORY_REPLAY)
        kept = await self.broker.history(room, since, limit)
        self._replay(peer, room, kept)
        answer: dict[str, Any] = {"epoch": kept.position.epoch, "offset": kept.position.offset}
        if since is not None:
            answer["recovered"] = kept.recovered
        if self.presence:
            members = self.room(room).members
            answer["members"] = [{"id": p.id, "info": p.info} for p in members]
        return answer

    async def _position(self, room: str) -> wire.Position:
        """The room's latest position."""
        return (await self.broker.history(room, None, 0)).position

    def _replay(self, peer: Peer, room: str, kept: History) -> None:
        for publication in kept.publications:
            peer.send(
                *wire.event_message(
                    publication.body, publication.binary, room, publication.position
                )
            )

    async def _authorized(self, peer: Peer, room: str) -> bool:
        if self._authorize_join is None:
            return True
        try:
            allowed = self._authorize_join(peer, room)
            if asyncio.iscoroutine(allowed):
                allowed = await allowed
        except Exception:
            logger.exception("authorize_join failed for room %r; refusing", room)
            return False
        return bool(allowed)

    # -- peers -------------------------------------------------------------------

    def _peer_gone(self, peer: Peer, reason: DisconnectReason) -> None:
        welcomed = self.peers.pop(peer.id, None) is not None
        rooms = list(peer._rooms)
        peer._rooms.clear()
        emptied = [name for name in rooms if self._forget(peer, name)]
        if not (emptied or (self.presence and rooms) or welcomed):
            return
        task = asyncio.get_running_loop().create_task(
            self._after_disconnect(peer, reason, rooms, emptied, welcomed)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _after_disconnect(
        self,
        peer: Peer,
        reason: DisconnectReason,
        rooms: list[str],
        emptied: list[str],
        welcomed: bool,
    ) -> None:
        for name in emptied:
            await self.broker.unsubscribe(name)
        if self.presence:
            for name in rooms:
                await self._presence(name, "left", peer)
        spec = self._handlers.get("disconnect")
        if spec is None or not welcomed:
            return
        try:
            result = spec.func(peer, reason) if spec.takes_data else spec.func(peer)
            if spec.is_async:
                await result
        except Exception:
            logger.exception("disconnect handler failed")


class Target:
    """Where an emit goes: every peer, one room, or one peer (on every node)."""

    __slots__ = ("hub", "peer", "room")

    def __init__(self, hub: Hub, *, room: str | None = None, peer: str | None = None) -> None:
        self.hub = hub
        self.room = room
        self.peer = peer

    async def emit(
        self,
        event: str,
        data: Any = None,
        *,
        exclude: Peer | str | None = None,
        volatile: bool = False,
    ) -> wire.Position | None:
        """Send ``event`` with ``data`` (JSON-able, or bytes) to the target.

        ``exclude`` (a Peer or a peer id) does not receive it: broadcast
        without the sender. The data is encoded once for all receivers.
        ``volatile`` room events get no position and are not kept in history,
        so they are not recovered after a reconnect and push nothing out of
        the history: typing notices, cursors, presence-like chatter.
        Returns the event's position in a room (None for other targets,
        volatile events, or when the broker could not give one).
        """
        body, binary = wire.event_body(event, data)
        excluded = exclude.id if isinstance(exclude, Peer) else exclude
        publication = Publication(
            body, binary, room=self.room, peer=self.peer, exclude=excluded, volatile=volatile
        )
        return await self.hub.broker.publish(publication)


def _package_file(path: Path) -> HttpHandler:
    def serve(request: Request) -> Response:
        if not path.is_file():
            return Response.error(404, f"{path.name} is not installed")
        return file_response(path, request)

    return serve


class _EventEndpoint:
    """The event-layer WebSocket route: each connection becomes a ``Peer``."""

    subprotocols: list[str] | None = None
    is_event_endpoint = True

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def admit(self, request: Request) -> Admission:
        return self.hub._admit_events(request)

    def open(self, transport: Transport) -> Peer:
        peer = Peer(self.hub, transport)
        peer.start()
        return peer
