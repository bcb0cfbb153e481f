"""CORS for the hub's HTTP responses: ``Hub(cors_origins=[...])``, off by default.

A page on another origin may load ``/wirehub.js`` (a module script is fetched
in CORS mode), call the hub's routes and ``POST /api/emit`` only if the
response names its origin in ``Access-Control-Allow-Origin`` (Fetch standard,
"CORS protocol"). Requests other than simple ones (a JSON body, an
``Authorization`` header) are preceded by a preflight ``OPTIONS`` that this
module answers. Origins are matched like ``allowed_origins`` (exact ones and
``fnmatch`` patterns, ``"*"`` for any; see ``origins.py``); the answer
always names the one origin asked for, with ``Vary: Origin``, so caches keep
one copy per origin. Credentials (cookies) are not allowed across origins.

This is about plain HTTP only: which origins may open a WebSocket is
``allowed_origins`` (a separate, security-relevant choice).
"""

from __future__ import annotations

from collections.abc import Iterable

from wirehub.http.messages import Request, Response
from wirehub.security.origins import OriginPolicy

__all__ = ["CorsPolicy"]

MAX_AGE = 600  # seconds a browser may cache a preflight answer


class CorsPolicy:
    """Which origins may read the hub's HTTP responses."""

    def __init__(self, origins: Iterable[str]) -> None:
        self.origins = OriginPolicy(origins)

    def allowed_origin(self, request: Request) -> str | None:
        """The request's cross-origin ``Origin`` when it is allowed, else None."""
        origin = request.headers.get("origin")
        if origin is None:
            return None
        # ``host=None``: the server's own origin needs no CORS headers.
        return origin if self.origins.allows(origin, None) else None

    def preflight(self, request: Request, methods: Iterable[str]) -> Response | None:
        """The answer to a preflight ``OPTIONS`` for a path serving ``methods``, or None
        when ``request`` is not a preflight."""
        if request.method != "OPTIONS" or "access-control-request-method" not in request.headers:
            return None
        response = Response(204, headers=[("Vary", "Origin")])
        origin = self.allowed_origin(request)
        if origin is None:
            return response  # no CORS headers: the browser refuses the real request
        asked = request.headers.get("access-control-request-headers", "")
        response.headers += [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Methods", ", ".join(sorted(methods))),
            ("Access-Control-Max-Age", str(MAX_AGE)),
        ]
        if asked:
            response.headers.append(("Access-Control-Allow-Headers", asked))
        return response

    def decorate(self, request: Request, response: Response) -> Response:
        """Add the CORS headers ``request``'s origin needs to read ``response``."""
        origin = self.allowed_origin(request)
        response.headers.append(("Vary", "Origin"))
        if origin is not None:
            response.headers.append(("Access-Control-Allow-Origin", origin))
        return response
