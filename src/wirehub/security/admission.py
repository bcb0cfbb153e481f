"""``Gate``: the checks a WebSocket handshake passes before the upgrade.

In order, each refusal an HTTP response (never a WebSocket, so nothing of
the application runs and a browser's page cannot read why):

1. origin — a browser's ``Origin`` must be allowed (403, see ``origins``);
2. ``Limits.max_connections`` — WebSockets open on this server (503);
3. handshakes per second per client address (429 with ``Retry-After``);
4. open connections per client address (429).

Refusals are counted in ``hub.stats`` (``refused_origin``,
``refused_capacity``, ``refused_rate``) and logged at DEBUG only: a flood
must not become a flood of log lines. Running out of capacity (this server
is full, not one client misbehaving) is also logged as a warning, once per
burst (``Burst``).

Before any of this, ``overloaded`` guards the file descriptors: past
``socket_budget`` connections of any kind, the server answers each new one
with 503 (``/healthz`` still gets its answer) and closes it, rather than
letting ``accept()`` fail, which a client would only see as a reset.

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

from wirehub.config import socket_budget
from wirehub.http.messages import Request, Response
from wirehub.security.origins import OriginPolicy
from wirehub.security.ratelimit import AddressLimiter, Clock, RateLimits

__all__ = ["Burst", "Gate"]

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
        self.max_sockets = socket_budget()
        """Connections of any kind past which new ones are refused (None: no limit)."""
        self._full = Burst(logger, "server at capacity (%s); refusing with 503", clock)

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
            self._full.note(f"max_connections={self.max_connections} WebSockets open")
            return self.at_capacity(request)
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

    def overloaded(self, sockets: int) -> bool:
        """Whether a new connection, the ``sockets``-th one open, is past the budget."""
        if self.max_sockets is None or sockets <= self.max_sockets:
            return False
        self._full.note(f"{sockets} connections, near the file-descriptor limit")
        return True

    def at_capacity(self, request: Request) -> Response:
        """The 503 answering a request the server has no room for."""
        response = self._refuse("refused_capacity", request, 503, "server at capacity")
        response.headers.append(("Retry-After", "5"))
        return response

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


class Burst:
    """Log a condition once when it starts, not at every occurrence.

    A burst ends after ``quiet`` seconds without an occurrence; the next one
    logs again, saying how many the previous burst had.
    """

    def __init__(
        self, log: logging.Logger, message: str, clock: Clock, *, quiet: float = 10.0
    ) -> None:
        self._log = log
        self._message = message
        self._clock = clock
        self._quiet = quiet
        self._last = -math.inf
        self._count = 0

    def note(self, detail: str) -> None:
        """One occurrence; ``detail`` fills the message's ``%s`` when this one is logged."""
        now = self._clock()
        if now - self._last > self._quiet:
            before = f" ({self._count} in the previous burst)" if self._count else ""
            self._log.warning(self._message + "; logged once per burst" + before, detail)
            self._count = 0
        self._last = now
        self._count += 1
