"""``Gate``: the checks a WebSocket handshake passes before the upgrade.

In order, each refusal an HTTP response (never a WebSocket, so nothing of
the application runs and a browser's page cannot read why):

1. origin — a browser's ``Origin`` must be allowed (403, see ``origins``);
2. ``Limits.max_connections`` — WebSockets open on this server (503);
3. handshakes per second per client address (429 with ``Retry-After``);
4. open connections per client address (429).

Refusals are counted in ``hub.stats`` (``refused_origin``,
``refused_capacity``, ``refused_rate``) and logged at DEBUG only: a flood
must not become a flood of log lines.

The authentication hook runs after these (``auth``), so an unauthenticated
flood is throttled before it can cost a token check. The server calls
``admit`` and, for every admitted handshake, ``release`` exactly once when
that connection ends (upgraded or not).
"""

from __future__ import annotations

import collections
import logging
import math
import time

from wirehub.http.messages import Request, Response
from wirehub.security.origins import OriginPolicy
from wirehub.security.ratelimit import AddressLimiter, Clock, RateLimits

__all__ = ["Gate"]

logger = logging.getLogger("wirehub.security")


class Gate:
    """Admission control for WebSocket handshakes, shared by every endpoint of a hub."""

    def __init__(
        self,
        *,
        origins: OriginPolicy,
        rate_limits: RateLimits,
        max_connections: int | None,
        stats: collections.Counter[str],
        clock: Clock = time.monotonic,
    ) -> None:
        self.origins = origins
        self.max_connections = max_connections
        self.stats = stats
        self.addresses = AddressLimiter(rate_limits, clock) if rate_limits.per_address else None
        self.open = 0
        """Handshakes admitted and not released: WebSockets open or being opened."""

    def admit(self, request: Request) -> Response | None:
        """None to go on with the handshake (then ``release`` it later), else the refusal."""
        origin = request.headers.get("origin")
        host = request.headers.get("host")
        if origin is not None and not self.origins.allows(origin, host):
            # INFO, with what was seen: a proxy that rewrites Host (nginx's
            # "Host $host" drops the port) refuses every browser this way.
            logger.info(
                "handshake from %s refused (403): Origin %s is neither Host %r nor in "
                "allowed_origins; behind a proxy, pass Host on as the browser sent it "
                "(nginx: proxy_set_header Host $http_host)",
                request.client_ip or request.client,
                origin,
                host,
            )
            return self._refuse("refused_origin", request, 403, "origin not allowed")
        if self.max_connections is not None and self.open >= self.max_connections:
            response = self._refuse("refused_capacity", request, 503, "server at capacity")
            response.headers.append(("Retry-After", "5"))
            return response
        if self.addresses is not None:
            address = request.client_ip
            if address is not None:
                wait = self.addresses.admit(address)
                if wait is not None:
                    response = self._refuse("refused_rate", request, 429, "too many connections")
                    response.headers.append(("Retry-After", str(max(1, math.ceil(wait)))))
                    return response
        self.open += 1
        return None

    def release(self, request: Request) -> None:
        """A connection that ``admit`` let through has ended."""
        self.open -= 1
        if self.addresses is not None:
            address = request.client_ip
            if address is not None:
                self.addresses.release(address)

    def _refuse(self, counter: str, request: Request, status: int, reason: str) -> Response:
        self.stats[counter] += 1
        logger.debug(
            "handshake from %s refused: %d %s", request.client_ip or request.client, status, reason
        )
        return Response.error(status, reason)
