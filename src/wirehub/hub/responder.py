"""Plain HTTP requests: which handler answers, for every host of the hub.

The native server and the ASGI adapter both hand a parsed ``Request`` here
and write back what comes out, so routes, static files, ``/healthz``, the
answers 404, 405 and 426, and CORS behave the same under both.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from wirehub.http.messages import Request, Response
from wirehub.http.routing import Router
from wirehub.security.cors import CorsPolicy

__all__ = ["HEALTH_PATH", "respond"]

logger = logging.getLogger("wirehub.hub")

HEALTH_PATH = "/healthz"

Health = Callable[[], dict[str, Any]]


def respond(
    router: Router, request: Request, *, health: Health, cors: CorsPolicy | None = None
) -> Response | Awaitable[Response]:
    """The response to ``request`` (not a WebSocket handshake): now, or to await.

    A handler that raises, or returns something else than a ``Response``, is
    logged and answered 500 (an awaited one: by the caller).
    """
    if cors is not None:
        preflight = cors.preflight(request, _methods(router, request.path))
        if preflight is not None:
            return preflight
    result = _respond(router, request, health)
    if cors is None:
        return result
    if isinstance(result, Response):
        return cors.decorate(request, result)
    return _decorate_later(cors, request, result)


def _respond(router: Router, request: Request, health: Health) -> Response | Awaitable[Response]:
    matched = router.match_http(request.path)
    if matched is not None:
        route, request.path_params = matched
        if request.method not in route.methods and not (
            request.method == "HEAD" and "GET" in route.methods
        ):
            return _method_not_allowed(route.methods)
        try:
            result = route.handler(request)
        except Exception:
            logger.exception("HTTP handler for %s %s failed", request.method, request.path)
            return Response.error(500)
        if inspect.isawaitable(result) or isinstance(result, Response):
            return result
        logger.error(
            "HTTP handler for %s %s returned %s, not a Response",
            request.method,
            request.path,
            type(result).__name__,
        )
        return Response.error(500)
    if request.path == HEALTH_PATH:
        return Response.json(health())
    if request.method in ("GET", "HEAD"):
        response = router.static_response(request)
        if response is not None:
            return response
    elif router.static_response(request) is not None:
        return _method_not_allowed(frozenset({"GET", "HEAD"}))
    if router.match_websocket(request.path) is not None:
        response = Response.error(426, "this is a WebSocket endpoint")
        response.headers.append(("Upgrade", "websocket"))
        return response
    return Response.error(404)


def _methods(router: Router, path: str) -> frozenset[str]:
    matched = router.match_http(path)
    return matched[0].methods if matched is not None else frozenset({"GET", "HEAD"})


async def _decorate_later(
    cors: CorsPolicy, request: Request, pending: Awaitable[Response]
) -> Response:
    response = await pending
    return cors.decorate(request, response) if isinstance(response, Response) else response


def _method_not_allowed(methods: frozenset[str]) -> Response:
    response = Response.error(405)
    response.headers.append(("Allow", ", ".join(sorted(methods))))
    return response
