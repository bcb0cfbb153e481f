"""Listening sockets, the per-tick write flush, HTTP routing and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import signal
import socket
import ssl as _ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from wirehub.codes import should_reconnect
from wirehub.http.messages import Request, Response
from wirehub.http.routing import Router
from wirehub.hub.lifecycle import finish
from wirehub.hub.responder import respond

if TYPE_CHECKING:
    from wirehub.hub.hub import Hub
    from wirehub.server.connection import Connection

__all__ = ["Server", "run", "run_loop", "serve"]

logger = logging.getLogger("wirehub.server")


BACKLOG = 4096
"""Connections the kernel may hold before ``accept`` (capped by ``net.core.somaxconn``).
A reconnect storm brings thousands within a few hundred milliseconds; past the
backlog the kernel drops their handshakes and the clients retry after a second
(bench/README.md, "Reconnect storms")."""


MIN_SPREAD = 0.5
"""Seconds below which a shutdown suggests no reconnection delays: the clients' own
first-retry jitter (0.25 to 0.5 s by default) spreads that few enough."""


class Server:
    """Serves one ``Hub`` on one or more listening sockets in this event loop."""

    def __init__(
        self,
        hub: Hub,
        *,
        ssl: _ssl.SSLContext | None = None,
        shutdown_code: int = 1001,
        router: Router | None = None,
    ) -> None:
        self.hub = hub
        self.router = router if router is not None else hub.router
        """The routes served here: the hub's, or another table (the metrics port's)."""
        self.ssl = ssl
        self.shutdown_code = shutdown_code
        self.loop = asyncio.get_running_loop()
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False
        self.started = time.time()
        self.websockets_opened = 0
        self._dirty: list[Connection] = []
        self._servers: list[asyncio.base_events.Server] = []
        self._idle = asyncio.Event()
        self._stop = asyncio.Event()
        self._signals = False

    async def listen(
        self,
        host: str | None = "127.0.0.1",
        port: int = 8000,
        *,
        sock: socket.socket | None = None,
        reuse_port: bool = False,
    ) -> list[tuple[str, int]]:
        """Start accepting; return the bound ``(host, port)`` addresses."""
        from wirehub.server.connection import Connection

        await self.hub.start()
        if sock is not None:
            server = await self.loop.create_server(
                lambda: Connection(self), sock=sock, ssl=self.ssl, backlog=BACKLOG
            )
        else:
            server = await self.loop.create_server(
                lambda: Connection(self),
                host,
                port,
                ssl=self.ssl,
                backlog=BACKLOG,
                reuse_port=reuse_port or None,
            )
        self._servers.append(server)
        return [s.getsockname()[:2] for s in server.sockets]

    @property
    def url(self) -> str:
        """The ``http(s)://host:port`` of the first listening socket."""
        host, port = self._servers[0].sockets[0].getsockname()[:2]
        if ":" in host:  # IPv6: bracketed in a URL (RFC 3986 §3.2.2)
            host = f"[{host}]"
        return f"{'https' if self.ssl else 'http'}://{host}:{port}"

    # -- per-tick flush ------------------------------------------------------

    def mark_dirty(self, connection: Connection) -> None:
        if not self._dirty:
            self.loop.call_soon(self._flush)
        self._dirty.append(connection)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for connection in dirty:
            connection.flush()

    # -- HTTP routing ----------------------------------------------------------

    def http_response(self, request: Request) -> Response | Awaitable[Response]:
        """Answer a plain HTTP request (not an upgrade)."""
        return respond(self.router, request, health=self.health, cors=self.hub.cors)

    def health(self) -> dict[str, Any]:
        report = self.hub.health()
        websockets = sum(1 for c in self.connections if c.ws is not None)
        report.update(
            connections=len(self.connections),
            websockets=websockets,
            uptime=round(time.time() - self.started, 1),
        )
        return report

    # -- lifecycle -------------------------------------------------------------

    def websocket_opened(self) -> None:
        self.websockets_opened += 1

    def connection_closed(self) -> None:
        if self.closing and not self.connections:
            self._idle.set()

    async def serve_forever(self) -> None:
        """Wait until ``stop()`` is called or (with ``handle_signals``) SIGINT or SIGTERM."""
        await self._stop.wait()

    def stop(self) -> None:
        """Make ``serve_forever`` return (the ``async with`` then shuts down)."""
        self._stop.set()

    def handle_signals(self) -> None:
        """Have SIGINT and SIGTERM call ``stop()``; ``restore_signals`` undoes it."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.loop.add_signal_handler(signum, self._on_signal, signum)
        self._signals = True

    def restore_signals(self) -> None:
        if self._signals:
            self._signals = False
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        logger.info(
            "%s: shutting down, closing %d connections",
            signal.Signals(signum).name,
            len(self.connections),
        )
        self.stop()

    def _reconnect_spread(self, code: int) -> float:
        """Seconds over which the clients closed with ``code`` are told to come back:
        as many as the next server absorbs at ``Limits.reconnect_rate``."""
        rate = self.hub.limits.reconnect_rate
        if not rate or not should_reconnect(code):
            return 0.0
        spread = sum(1 for c in self.connections if c.ws is not None) / rate
        return spread if spread >= MIN_SPREAD else 0.0

    async def shutdown(self, code: int | None = None, timeout: float | None = None) -> None:
        """Stop accepting, close every connection, wait up to ``timeout``, cut the rest."""
        if self.closing:
            return
        self.closing = True
        code = self.shutdown_code if code is None else code
        timeout = self.hub.timeouts.shutdown if timeout is None else timeout
        deadline = self.loop.time() + timeout
        for server in self._servers:
            server.close()
        if self.hub.fallback is not None:
            self.hub.fallback.shutdown(code)  # answers its polls: their connections finish
        spread = self._reconnect_spread(code)
        for connection in list(self.connections):
            connection.shutdown(code, spread * random.random() if spread else None)
        if self.connections:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except TimeoutError:
                logger.warning(
                    "%d connections did not close in %ss; cutting them",
                    len(self.connections),
                    timeout,
                )
                for connection in list(self.connections):
                    connection._abort()
        # User code still running (HTTP and event handlers, disconnect handlers, plain
        # endpoints) gets what is left of the deadline to finish; then it is cancelled.
        await finish(lambda: [*self.tasks, *self.hub.user_tasks()], deadline - self.loop.time())
        for server in self._servers:
            await server.wait_closed()
        await self.hub.stop()


@contextlib.asynccontextmanager
async def serve(
    hub: Hub,
    host: str | None = "127.0.0.1",
    port: int = 8000,
    *,
    ssl: _ssl.SSLContext | None = None,
    shutdown_code: int = 1001,
    sock: socket.socket | None = None,
    reuse_port: bool = False,
    handle_signals: bool = False,
) -> AsyncIterator[Server]:
    """Serve ``hub`` in the running event loop for the body of an ``async with``::

        async with wirehub.serve(hub, "127.0.0.1", 8000) as server:
            print("listening on", server.url)
            await server.serve_forever()  # or run the rest of your program

    Entering starts the hub (broker, startup hooks) and listens (``port=0``:
    any free port; ``sock``: an already bound socket). Leaving shuts down
    gracefully: clients are closed with ``shutdown_code``, then shutdown
    hooks run. No signal handler is installed unless ``handle_signals=True``
    (then SIGINT and SIGTERM end ``serve_forever``). Raises ``OSError`` when
    the address cannot be bound (the hub is stopped again first).
    """
    server = Server(hub, ssl=ssl, shutdown_code=shutdown_code)
    internal: list[Server] = []
    try:
        await server.listen(host, port, sock=sock, reuse_port=reuse_port)
        internal = await _serve_metrics(hub, host)
        if handle_signals:
            server.handle_signals()
        logger.info("wirehub listening on %s", server.url)
        yield server
    finally:
        server.restore_signals()
        await server.shutdown()
        for other in internal:
            await other.shutdown()


async def _serve_metrics(hub: Hub, host: str | None) -> list[Server]:
    """Listen where ``hub.metrics`` is served besides the application's port.

    Its own port (``Metrics.port``: plain HTTP, ``/metrics`` and ``/healthz``
    only), shared by the workers with ``SO_REUSEPORT``; and in a worker, the
    private Unix socket where the other workers get its own metrics.
    """
    metrics = hub.metrics
    if metrics is None:
        return []
    servers = []
    if metrics.port is not None:
        server = Server(hub, router=metrics.router)
        [(_, metrics.port), *_] = await server.listen(
            host, metrics.port, reuse_port=metrics.workers is not None
        )  # port 0: the one the kernel picked
        servers.append(server)
    if metrics.workers is not None:
        path = metrics.workers.socket(metrics.workers.slot)
        path.unlink(missing_ok=True)  # left by this slot's previous worker
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        server = Server(hub, router=metrics.local_router)
        await server.listen(sock=sock)
        servers.append(server)
    return servers


def run(
    hub: Hub,
    host: str | None = "127.0.0.1",
    port: int = 8000,
    *,
    ssl: _ssl.SSLContext | None = None,
    shutdown_code: int = 1001,
    announce: Callable[[Server], None] | None = None,
) -> None:
    """Serve ``hub`` in a new event loop (uvloop if installed) until SIGINT or SIGTERM.

    ``announce(server)`` is called once it listens; by default it prints
    where (``wirehub listening on http://127.0.0.1:8000 ...``).
    """

    async def main() -> None:
        serving = serve(hub, host, port, ssl=ssl, shutdown_code=shutdown_code, handle_signals=True)
        async with serving as server:
            # What exists once serving starts (modules, routes, handlers) lives
            # as long as the process: leave it out of every collection, so the
            # ones that thousands of handshakes trigger scan only what they made.
            gc.freeze()
            (announce or _print_where)(server)
            await server.serve_forever()

    run_loop(main())


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` in a fresh event loop: uvloop's when it is installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def _print_where(server: Server) -> None:
    routes = ", ".join(sorted(server.hub.router.websocket)) or "none"
    print(f"wirehub listening on {server.url} (WebSocket routes: {routes})", flush=True)
