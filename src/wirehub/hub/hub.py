"""``Hub``: the application object that routes, endpoints and events hang off."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import errno
import inspect
import logging
import os
import ssl as _ssl
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar, cast

from wirehub.brokers.base import Broker
from wirehub.brokers.memory import MemoryBroker
from wirehub.brokers.presence import PresenceStore
from wirehub.config import Limits, Timeouts
from wirehub.exceptions import ConfigError
from wirehub.http.messages import Request, Response
from wirehub.http.proxy import TrustedProxies
from wirehub.http.routing import HttpHandler, Router
from wirehub.http.static import StaticFiles, file_response
from wirehub.hub.api import EMIT_PATH, emit_route
from wirehub.hub.asgi import AsgiApp, Receive, Scope, Send
from wirehub.hub.fallback import Fallback
from wirehub.hub.handlers import HandlerSpec
from wirehub.hub.lifecycle import Lifecycle
from wirehub.hub.node import EmitAuthorizer, Node
from wirehub.hub.peer import Peer
from wirehub.hub.presence import ClusterPresence
from wirehub.hub.room import JoinAuthorizer, Room
from wirehub.hub.target import Target
from wirehub.hub.threadsafe import submit
from wirehub.hub.transport import Transport
from wirehub.hub.websocket import PlainEndpoint, WebSocketHandler
from wirehub.protocol import messages as wire
from wirehub.security.admission import Gate
from wirehub.security.auth import Admission, AuthHook, TokenAuth, authenticate_request
from wirehub.security.cors import CorsPolicy
from wirehub.security.origins import OriginPolicy
from wirehub.security.ratelimit import RateLimits

if TYPE_CHECKING:
    from wirehub.hub.admin import Admin
    from wirehub.hub.metrics import Metrics

__all__ = ["Hub", "Target"]

logger = logging.getLogger("wirehub.hub")

H = TypeVar("H", bound=Callable[..., Any])


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
    ``presence`` (announce joins and leaves to room members, and know every
    node's members: True, or the ``PresenceStore`` to keep them in; True picks
    ``RedisPresence`` with a ``RedisBroker``, see ``hub/presence.py``),
    ``slow_consumer`` (what happens to a peer that does not read fast enough:
    ``"close"`` it with 4008, or ``"drop"`` the messages it cannot take: its
    client gets a ``gap`` notice for the room events once it reads again, and
    its acks and errors are still sent),
    ``trusted_proxies`` (addresses or networks of the reverse proxies whose
    ``X-Forwarded-For`` gives ``request.client_ip``), ``api_key`` (turns on
    ``POST /api/emit`` for requests bearing ``Authorization: Bearer <api_key>``),
    ``metrics`` (serve Prometheus metrics at ``GET /metrics``: ``hub.metrics``,
    a ``wirehub.hub.metrics.Metrics``; needs ``wirehub[metrics]``), ``admin_key``
    (serve the admin page at ``/admin`` to whoever gives this key, 16 characters
    or more: ``hub.admin``, a ``wirehub.hub.admin.Admin``; docs/operations.md),
    ``cors_origins`` (pages on these origins may read the HTTP responses:
    ``/wirehub.js``, routes, the HTTP API; exact origins and patterns as for
    ``allowed_origins``; off by default, see ``wirehub.security.cors``),
    ``fallback`` (serve the event endpoint over plain HTTP too, for browsers
    whose WebSocket fails: ``/ws/open``, ``/ws/poll``, ``/ws/send``; see
    docs/browser.md).
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
        presence: bool | PresenceStore = False,
        slow_consumer: Literal["close", "drop"] = "close",
        allowed_origins: Iterable[str] | None = None,
        rate_limits: RateLimits | None = None,
        trusted_proxies: Iterable[str] | None = None,
        api_key: str | None = None,
        metrics: bool = False,
        cors_origins: Iterable[str] | None = None,
        fallback: bool = True,
        admin_key: str | None = None,
    ) -> None:
        if slow_consumer not in ("close", "drop"):
            raise ConfigError(f"slow_consumer is 'close' or 'drop', not {slow_consumer!r}")
        self.subprotocols = subprotocols
        self.trusted_proxies = TrustedProxies(trusted_proxies) if trusted_proxies else None
        self.cors = CorsPolicy(cors_origins) if cors_origins else None
        self.router = Router()
        self.stats: collections.Counter[str] = collections.Counter()
        self._authenticate: AuthHook | None = None
        self.rate_limits = rate_limits or RateLimits()
        self.node = Node(
            broker if broker is not None else MemoryBroker(),
            limits=limits or Limits(),
            timeouts=timeouts or Timeouts(),
            stats=self.stats,
            presence=bool(presence),
            compression=compression,
            slow_consumer=slow_consumer,
            rate_limits=self.rate_limits,
        )
        self.gate = Gate(
            origins=OriginPolicy(allowed_origins),
            rate_limits=self.rate_limits,
            max_connections=self.limits.max_connections,
            stats=self.stats,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self.lifecycle = Lifecycle()
        self.asgi = AsgiApp(self)
        self.fallback: Fallback | None = None
        if events_path is not None:
            endpoint = _EventEndpoint(self)
            self.router.add_websocket(events_path, endpoint)
            if fallback:
                self.fallback = Fallback(self.node, self.router, self.gate, endpoint, events_path)
        for name in ("wirehub.js", "wirehub-http.js", "wirehub.d.ts"):  # the browser client
            self.router.add_http(f"/{name}", {"GET"}, _package_file(STATIC / name))
        if api_key is not None:
            self.router.add_http(EMIT_PATH, {"POST"}, emit_route(self.node, api_key))
        self.cluster: ClusterPresence | None = None
        if presence:
            store = None if presence is True else presence
            self.cluster = ClusterPresence(self.node, self.node.rooms, store)
            self.node.rooms.cluster = self.cluster
            self.on_startup(self.cluster.start)
            self.on_shutdown(self.cluster.stop)
        self.metrics: Metrics | None = None
        if metrics:
            from wirehub.hub.metrics import Metrics  # prometheus-client is an optional extra

            Metrics(self)
        self.admin: Admin | None = None
        if admin_key is not None:
            from wirehub.hub.admin import Admin

            self.admin = Admin(self, admin_key)

    # The settings peers read live in the node: these forward to it, so they
    # may still be replaced before serving (the CLI does).

    @property
    def limits(self) -> Limits:
        """Size and count limits (``wirehub.Limits``)."""
        return self.node.limits

    @limits.setter
    def limits(self, limits: Limits) -> None:
        self.node.limits = self.node.fanout.limits = self.node.rooms.limits = limits

    @property
    def timeouts(self) -> Timeouts:
        """Timeouts in seconds (``wirehub.Timeouts``)."""
        return self.node.timeouts

    @timeouts.setter
    def timeouts(self, timeouts: Timeouts) -> None:
        self.node.timeouts = timeouts

    @property
    def compression(self) -> bool:
        """Whether permessage-deflate is offered (and big broadcasts deflated once)."""
        return self.node.fanout.compression

    @compression.setter
    def compression(self, compression: bool) -> None:
        self.node.fanout.compression = compression

    @property
    def presence(self) -> bool:
        """Whether joins and leaves are announced to the room."""
        return self.node.rooms.presence

    @presence.setter
    def presence(self, presence: bool) -> None:
        self.node.rooms.presence = presence

    @property
    def slow_consumer(self) -> Literal["close", "drop"]:
        """What happens to a peer that does not read fast enough."""
        return self.node.fanout.slow_consumer

    @slow_consumer.setter
    def slow_consumer(self, policy: Literal["close", "drop"]) -> None:
        self.node.fanout.slow_consumer = policy

    @property
    def broker(self) -> Broker:
        """The broker carrying emits between nodes; replace it only before serving."""
        return self.node.broker

    @broker.setter
    def broker(self, broker: Broker) -> None:
        self.node.broker = broker

    @property
    def peers(self) -> dict[str, Peer]:
        """This process's welcomed peers by id (live; do not mutate it)."""
        return cast("dict[str, Peer]", self.node.peers)

    @property
    def rooms(self) -> dict[str, Room]:
        """This process's rooms with at least one member, by name (live; do not mutate it)."""
        return self.node.rooms.by_name

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

    def on(self, event: str, *, blocking: bool = False) -> Callable[[H], H]:
        """Register the handler of ``event`` (sync or async).

        ``"connect"``: ``(peer, request)``, runs before the client is welcomed;
        raise ``wirehub.Reject`` to refuse it (returning False, or raising
        ``ConnectionRefusedError(reason)``, refuses as ``Reject()`` does:
        close 1008, final). ``"disconnect"``:
        ``(peer, reason)``. Any other name: ``(peer, data)`` or ``(peer)``;
        the return value is the acknowledgement, and ``data`` is validated
        against the annotation of that parameter when it has one.

        A sync handler runs on the event loop: while it runs, no other client
        of this process is served (one holding the loop over 100 ms is named
        in a warning). ``blocking=True`` runs a sync handler that blocks
        (a database driver, ``requests``, ``time.sleep``) in the loop's
        default thread pool instead; from there, reach peers with
        ``hub.emit_threadsafe`` (the ``peer`` methods are not thread-safe).
        """
        if not isinstance(event, str) or not event:
            raise ConfigError("an event name is a non-empty string")

        def register(handler: H) -> H:
            handlers = self.node.handlers
            if event in handlers:
                raise ConfigError(f"a handler for {event!r} already exists")
            lifecycle = event in ("connect", "disconnect")  # their 2nd argument is not data
            handlers[event] = HandlerSpec.inspect(handler, data=not lifecycle, blocking=blocking)
            return handler

        return register

    def authorize_join(self, func: JoinAuthorizer) -> JoinAuthorizer:
        """Decorate the hook deciding client-requested joins: ``(peer, room) -> bool``.

        Without one, a client may join any validly named room. Joins made by
        the server (``await peer.join(room)``) are never checked.
        """
        self.node.rooms.authorize = func
        return func

    def authorize_emit(self, func: EmitAuthorizer) -> EmitAuthorizer:
        """Decorate the hook deciding client emits: ``(peer, event, data) -> bool``.

        It runs after ``data`` was validated, before the handler; False (or
        an exception, logged) answers ``forbidden`` and the handler does not
        run. Emits made by the server are never checked.
        """
        self.node.authorize_emit = func
        return func

    def authenticate(self, hook: AuthHook) -> AuthHook:
        """Register the hook authenticating WebSocket handshakes: ``(request) -> identity``.

        Sync or async; it runs before the upgrade. ``raise Reject(401, reason)``
        (or 403) refuses with that HTTP status; the returned identity becomes
        ``request.user``, ``peer.user`` and ``ws.user``. A ``TokenAuth`` such
        as ``JWTAuth(...)`` also takes the token from the first message and
        refreshes it on the event endpoint (docs/security.md).
        """
        if isinstance(hook, TokenAuth) and inspect.iscoroutinefunction(hook.verify):
            raise ConfigError(f"{hook!r}: TokenAuth.verify must be a plain method, not async")
        self._authenticate = hook
        self.node.token_auth = hook if isinstance(hook, TokenAuth) else None
        return hook

    def _admit_events(self, request: Request) -> Admission:
        if self._authenticate is None:
            return None
        return authenticate_request(self._authenticate, request, deferrable=True, stats=self.stats)

    def _admit_plain(self, request: Request) -> Admission:
        if self._authenticate is None:
            return None
        return authenticate_request(self._authenticate, request, deferrable=False, stats=self.stats)

    async def emit(
        self, event: str, data: Any = None, *, exclude: Peer | str | None = None
    ) -> None:
        """Send an event to every connected peer (on every node)."""
        await Target(self.node).emit(event, data, exclude=exclude)

    def to(self, room: str) -> Target:
        """The members of ``room`` (on every node): ``await hub.to(room).emit(...)``."""
        return Target(self.node, room=room)

    def to_peer(self, peer_id: str) -> Target:
        """One peer by id, wherever it is connected."""
        return Target(self.node, peer=peer_id)

    async def members(self, room: str) -> list[dict[str, Any]]:
        """The members of ``room`` on every node: ``[{"id": ..., "info": {...}}, ...]``.

        Needs ``Hub(presence=...)`` (else ``ConfigError``). A node killed
        without leaving drops out within the presence ``ttl`` (15 s by default).
        """
        return await self._cluster().members(room)

    async def room_sizes(self) -> dict[str, int]:
        """Every room with members on any node, with how many. Needs ``Hub(presence=...)``."""
        return await self._cluster().room_sizes()

    def _cluster(self) -> ClusterPresence:
        if self.cluster is None:
            raise ConfigError("cluster-wide members need Hub(presence=True)")
        return self.cluster

    def room(self, name: str) -> Room:
        """The local members of ``name`` (an empty room if nobody is in it)."""
        return self.node.rooms.get(name)

    def emit_threadsafe(
        self,
        event: str,
        data: Any = None,
        *,
        room: str | None = None,
        peer: str | Peer | None = None,
        exclude: str | None = None,
    ) -> concurrent.futures.Future[wire.Position | None]:
        """``emit`` from another thread (a Flask view, a worker thread); it does not wait.

        To every peer, or to ``room`` (``hub.to(room).emit``), or to one
        ``peer`` (a ``Peer`` or its id, wherever it is connected:
        ``hub.to_peer(id).emit``). ``exclude`` is a peer id. The returned
        ``concurrent.futures.Future`` gives the room event's position, or
        raises what the emit raised (``Unavailable`` when the broker cannot
        take it). Raises ``ConfigError`` when the hub is not running here; its
        ``result()`` raises ``ConfigError`` on the event loop's own thread (a
        sync handler), where waiting would block every client.
        """
        if room is not None and peer is not None:
            raise ConfigError("emit_threadsafe: give room= or peer=, not both")
        if self._loop is None:
            raise ConfigError(
                "the hub is not running in this process (under --workers it runs in the "
                "workers, not where the app was imported): start producers from an "
                "@hub.on_startup hook, or emit with wirehub.Emitter"
            )
        peer_id = peer.id if isinstance(peer, Peer) else peer
        target = Target(self.node, room=room, peer=peer_id)
        coro = target.emit(event, data, exclude=exclude)
        return submit(coro, self._loop)

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
            await self.node.start()
            try:
                if self.fallback is not None:
                    await self.fallback.start()
                await self.lifecycle.startup()
            except BaseException:
                self._loop = None
                await self.node.stop()
                raise

    async def stop(self) -> None:
        """End background tasks, run the shutdown hooks, release the broker; after the
        last client left."""
        if self._loop is not None:
            await self.lifecycle.shutdown()
            self._loop = None
            await self.node.stop()

    def user_tasks(self) -> list[asyncio.Task[Any]]:
        """The user code running for clients now: event and ``disconnect`` handlers, plain
        endpoints' handlers (a host's graceful shutdown lets them finish, ``lifecycle.finish``)."""
        endpoints = self.router.websocket.values()
        return [*self.node.tasks, *(t for e in endpoints for t in getattr(e, "tasks", ()))]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The hub as an ASGI 3 application: ``uvicorn app:hub``, ``app.mount("/rt", hub)``.

        HTTP routes, WebSocket endpoints and lifespan, as ``wirehub.hub.asgi``
        says; docs/frameworks.md shows FastAPI, Starlette and Django.
        """
        await self.asgi(scope, receive, send)

    def lifespan(self, app: object = None) -> contextlib.AbstractAsyncContextManager[None]:
        """The hub's startup and shutdown, for a framework that runs the ASGI lifespan
        itself: ``FastAPI(lifespan=hub.lifespan)`` (a mounted app's own lifespan never runs)."""
        return self.asgi.lifespan(app)

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

        Prints where it listens; exits (``SystemExit``, status 1) with one line
        when it cannot (the address is in use). Uses uvloop when it is installed. For TLS
        files, workers and the rest, use the ``wirehub serve`` command; to
        serve inside your own event loop, ``async with wirehub.serve(hub)``.
        """
        runner = type(self).runner  # from the class: not bound to this hub
        if runner is None:
            raise ConfigError("no server to run the hub: import wirehub")
        try:
            runner(self, host, port, ssl=ssl, shutdown_code=shutdown_code)
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
                raise
            why = exc.strerror or exc
            raise SystemExit(f"wirehub: cannot listen on {host}:{port}: {why}") from None


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
        peer = Peer(self.hub.node, transport)
        peer.start()
        return peer
