"""The route table: which handler answers which path, for HTTP and WebSocket."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from wirehub.exceptions import ConfigError
from wirehub.http.messages import Request, Response
from wirehub.http.static import StaticFiles

__all__ = ["HttpHandler", "HttpRoute", "Router"]

HttpHandler = Callable[[Request], Awaitable[Response] | Response]


@dataclasses.dataclass(frozen=True)
class HttpRoute:
    path: str
    methods: frozenset[str]
    handler: HttpHandler


class Router:
    """Exact-path routes for HTTP handlers and WebSocket endpoints, plus static mounts.

    ``websocket`` endpoints map a path to an opaque endpoint object that the
    server hands each upgraded connection to.
    """

    def __init__(self) -> None:
        self.http: dict[str, HttpRoute] = {}
        self.websocket: dict[str, Any] = {}
        self.static: list[StaticFiles] = []

    def add_http(self, path: str, methods: set[str], handler: HttpHandler) -> None:
        self._check_free(path, self.http)
        self.http[path] = HttpRoute(path, frozenset(m.upper() for m in methods), handler)

    def add_websocket(self, path: str, endpoint: Any) -> None:
        self._check_free(path, self.websocket)
        self.websocket[path] = endpoint

    def add_static(self, static: StaticFiles) -> None:
        # Longest prefix first, so /assets wins over /.
        self.static.append(static)
        self.static.sort(key=lambda s: len(s.prefix), reverse=True)

    def static_response(self, request: Request) -> Response | None:
        for static in self.static:
            if static.matches(request.path):
                response = static.respond(request)
                if response is not None:
                    return response
        return None

    @staticmethod
    def _check_free(path: str, table: dict[str, Any]) -> None:
        if not path.startswith("/"):
            raise ConfigError(f"route paths start with '/': {path!r}")
        if path in table:
            hint = ""
            if getattr(table[path], "is_event_endpoint", False):
                hint = " (the event endpoint: pass Hub(events_path=...) to move it, or None)"
            raise ConfigError(f"a route for {path!r} already exists{hint}")
