"""The route table: which handler answers which path, for HTTP and WebSocket.

A route path is exact (``/echo``) or a template with parameters in braces:
``/room/{name}`` matches one path segment (``/room/lobby``, not
``/room/a/b``), ``/files/{rest:path}`` matches the rest of the path,
slashes included. The values, percent-decoded, are ``request.path_params``.
An exact route wins over a template; templates are tried in the order they
were added.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar
from urllib.parse import unquote

from wirehub.exceptions import ConfigError
from wirehub.http.messages import Request, Response
from wirehub.http.static import StaticFiles

__all__ = ["HttpHandler", "HttpRoute", "PathTemplate", "Router"]

HttpHandler = Callable[[Request], Awaitable[Response] | Response]
T = TypeVar("T")

PARAMETER = re.compile(r"\{([A-Za-z_]\w*)(?::(\w+))?\}")
CONVERTERS = {"str": "[^/]+", "path": ".+"}


@dataclasses.dataclass(frozen=True)
class HttpRoute:
    path: str
    methods: frozenset[str]
    handler: HttpHandler


class PathTemplate(Generic[T]):
    """A route path with ``{name}`` (one segment) or ``{name:path}`` parameters."""

    def __init__(self, path: str, target: T) -> None:
        self.path = path
        self.target = target
        pattern, names, position = "", [], 0
        for match in PARAMETER.finditer(path):
            name, kind = match.group(1), match.group(2) or "str"
            if kind not in CONVERTERS:
                raise ConfigError(
                    f"route {path!r}: unknown parameter type {kind!r} (use str or path)"
                )
            if name in names:
                raise ConfigError(f"route {path!r}: parameter {name!r} appears twice")
            names.append(name)
            pattern += re.escape(path[position : match.start()]) + f"(?P<{name}>{CONVERTERS[kind]})"
            position = match.end()
        rest = path[position:]
        if "{" in rest or "}" in rest:
            raise ConfigError(f"route {path!r}: a brace that is not a parameter like {{name}}")
        self.regex = re.compile(pattern + re.escape(rest))

    def match(self, path: str) -> dict[str, str] | None:
        found = self.regex.fullmatch(path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items()}


class Router:
    """Routes for HTTP handlers and WebSocket endpoints, plus static mounts.

    ``http`` and ``websocket`` map each registered path (exact or template)
    to its route; ``match_http`` and ``match_websocket`` find the one for a
    request path, with its parameters. ``websocket`` endpoints are opaque
    objects the server hands each upgraded connection to.
    """

    def __init__(self) -> None:
        self.http: dict[str, HttpRoute] = {}
        self.websocket: dict[str, Any] = {}
        self.static: list[StaticFiles] = []
        self._http_templates: list[PathTemplate[HttpRoute]] = []
        self._websocket_templates: list[PathTemplate[Any]] = []

    def add_http(self, path: str, methods: set[str], handler: HttpHandler) -> None:
        self._check_free(path, self.http)
        route = HttpRoute(path, frozenset(m.upper() for m in methods), handler)
        if "{" in path or "}" in path:
            self._http_templates.append(PathTemplate(path, route))
        self.http[path] = route

    def add_websocket(self, path: str, endpoint: Any) -> None:
        self._check_free(path, self.websocket)
        if "{" in path or "}" in path:
            self._websocket_templates.append(PathTemplate(path, endpoint))
        self.websocket[path] = endpoint

    def match_http(self, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        """The HTTP route for ``path`` and its parameters, or None."""
        return _match(path, self.http, self._http_templates)

    def match_websocket(self, path: str) -> tuple[Any, dict[str, str]] | None:
        """The WebSocket endpoint for ``path`` and its parameters, or None."""
        return _match(path, self.websocket, self._websocket_templates)

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


def _match(
    path: str, exact: dict[str, T], templates: list[PathTemplate[T]]
) -> tuple[T, dict[str, str]] | None:
    target = exact.get(path)
    if target is not None and "{" not in path:  # not a client asking for a template by name
        return target, {}
    for template in templates:
        params = template.match(path)
        if params is not None:
            return template.target, params
    return None
