"""``Hub``: the application object that routes, endpoints and events hang off."""

from __future__ import annotations

import os
import ssl as _ssl
from collections.abc import Callable
from typing import Any, TypeVar

from wirehub.config import Limits, Timeouts
from wirehub.http.routing import HttpHandler, Router
from wirehub.http.static import StaticFiles
from wirehub.hub.websocket import PlainEndpoint, WebSocketHandler

__all__ = ["Hub"]

H = TypeVar("H", bound=Callable[..., Any])


class Hub:
    """A wirehub application.

    ::

        hub = Hub()

        @hub.websocket("/echo")
        async def echo(ws):
            async for message in ws:
                await ws.send(message)

        hub.run(port=8000)

    Configuration is keyword-only and grouped: ``limits`` (sizes and counts),
    ``timeouts``, ``compression`` (offer permessage-deflate), ``subprotocols``
    (the default list for endpoints that do not name their own).
    """

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        timeouts: Timeouts | None = None,
        compression: bool = True,
        subprotocols: list[str] | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.timeouts = timeouts or Timeouts()
        self.compression = compression
        self.subprotocols = subprotocols
        self.router = Router()

    # -- routes ------------------------------------------------------------

    def websocket(
        self, path: str, *, subprotocols: list[str] | None = None
    ) -> Callable[[WebSocketHandler], WebSocketHandler]:
        """Register a plain WebSocket endpoint: ``async def handler(ws)``.

        The handler runs once per connection. When it returns the connection
        is closed with 1000; if it raises, with 1011 (and the error is logged).
        """

        def register(handler: WebSocketHandler) -> WebSocketHandler:
            endpoint = PlainEndpoint(
                path,
                handler,
                subprotocols=subprotocols if subprotocols is not None else self.subprotocols,
                max_queue=self.limits.max_queued_messages,
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

    def health(self) -> dict[str, Any]:
        """What ``GET /healthz`` reports about the hub (the server adds its own counts)."""
        return {"status": "ok"}

    # -- running -----------------------------------------------------------

    def run(
        self,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        ssl: _ssl.SSLContext | None = None,
        shutdown_code: int = 1001,
    ) -> None:
        """Serve until SIGINT/SIGTERM, then shut down gracefully.

        Uses uvloop when it is installed. For more control (workers, TLS files,
        logging) use the ``wirehub serve`` command.
        """
        # The one call up the layers: running needs the server, and a Hub is
        # what users hold. Imported here so importing the hub never loads it.
        from wirehub.server.serve import run

        run(self, host=host, port=port, ssl=ssl, shutdown_code=shutdown_code)
