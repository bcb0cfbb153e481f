"""A peer's token over the life of its connection (docs/PROTOCOL.md §13).

With a ``TokenAuth`` (``hub.authenticate(JWTAuth(...))``), each peer of the
event endpoint gets ``Credentials``:

- when the handshake carried no token, the first message must be ``auth``
  within ``Timeouts.auth``, else the peer is closed with 4001; until then no
  handler runs and nothing is sent (not even ``welcome``);
- ``refresh_before`` seconds before the identity expires, the server sends
  ``{"type": "refresh", "expires_in": …}``; an ``auth`` with a valid token
  for the same subject replaces the identity (``peer.user``) and restarts
  the clock; without one, the peer is closed with 4004 when it expires.

Timers are loop timers, not tasks; the clock is wall time, as ``exp`` is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from wirehub.codes import CloseCode
from wirehub.exceptions import Reject
from wirehub.hub.transport import Transport
from wirehub.protocol import messages as wire
from wirehub.protocol.websocket import Message
from wirehub.security.auth import TokenAuth, answered

__all__ = ["Credentials", "Holder"]

logger = logging.getLogger("wirehub.hub")


class Holder(Protocol):
    """The peer whose token it is (``Peer`` implements it)."""

    id: str
    user: Any
    transport: Transport

    @property
    def connected(self) -> bool: ...

    def send(self, payload: bytes, text: bool, *, vital: bool = False) -> None:
        """Send one protocol message (obeying ``Limits.max_buffered``)."""


class Credentials:
    """The token side of one peer: first ``auth``, ``refresh`` requests, expiry.

    ``timeout`` is how long the first ``auth`` may take (None: forever);
    ``begin`` is called once the first ``auth`` was accepted (the connect
    handler, then the welcome); refusals are counted in ``stats``.
    """

    __slots__ = ("_timers", "auth", "begin", "expires", "peer", "stats", "timeout", "waiting")

    def __init__(
        self,
        peer: Holder,
        auth: TokenAuth,
        *,
        timeout: float | None,
        stats: dict[str, int],
        begin: Callable[[], None],
    ) -> None:
        self.peer = peer
        self.auth = auth
        self.timeout = timeout
        self.stats = stats
        self.begin = begin
        self.waiting = False  # for the first message, which must be ``auth``
        self.expires: float | None = None
        self._timers: list[asyncio.TimerHandle] = []

    # -- before welcome ------------------------------------------------------

    def wait_first(self) -> None:
        """The handshake had no token: the first message must bring one."""
        self.waiting = True
        if self.timeout is not None:
            self._later(self.timeout, self._no_token)

    def first(self, message: Message) -> None:
        """The first message arrived while waiting: authenticate, then go on (or close)."""
        self.waiting = False
        self.cancel()
        try:
            request, _ = wire.decode_client(message)
        except wire.DecodeError:
            request = None
        if type(request) is not wire.Auth:
            self._close(CloseCode.UNAUTHORIZED, "authentication required: send auth first")
            return
        identity = self._verify(request.token)
        if identity is None:
            return
        self.peer.user = identity
        self.schedule()
        self.begin()  # the connect handler, then welcome (the first auth's answer)

    def _no_token(self) -> None:
        if self.waiting:
            self.waiting = False
            self.stats["auth_timeouts"] += 1
            self._close(CloseCode.UNAUTHORIZED, "no credentials in time")

    # -- after welcome --------------------------------------------------------

    def refreshed(self, request: wire.Auth) -> None:
        """An ``auth`` on a welcomed connection: a new token for the same subject."""
        identity = self._verify(request.token)
        if identity is None:
            return
        try:
            same = answered(self.auth.same_subject(self.peer.user, identity), "same_subject")
        except Exception:
            logger.exception("same_subject failed; refusing the new token")
            same = False
        if not same:
            self._close(CloseCode.FORBIDDEN, "the new token is for another subject")
            return
        self.peer.user = identity
        self.schedule()
        if request.id is not None and self.peer.connected:
            expires_in = None if self.expires is None else round(self.expires - time.time(), 3)
            answer = wire.Ack(request.id, {"expires_in": expires_in})
            self.peer.send(wire.encode(answer), True, vital=True)

    def schedule(self) -> None:
        """Arm the refresh request and the expiry for the current identity."""
        self.cancel()
        self.expires = answered(self.auth.expires_at(self.peer.user), "expires_at")
        if self.expires is None:
            return
        remaining = self.expires - time.time()
        if remaining <= 0:
            self._expired()
            return
        lead = min(self.auth.refresh_before, remaining / 2)
        self._later(remaining - lead, self._ask)
        self._later(remaining, self._expired)

    def _ask(self) -> None:
        if self.expires is not None and self.peer.connected:
            expires_in = round(max(self.expires - time.time(), 0.0), 3)
            # Kept until the welcome; never dropped (the client would be cut at expiry).
            self.peer.send(wire.encode(wire.Refresh(expires_in)), True, vital=True)

    def _expired(self) -> None:
        self.stats["tokens_expired"] += 1
        self._close(CloseCode.TOKEN_EXPIRED, "token expired")

    # -- helpers ----------------------------------------------------------------

    def _verify(self, token: str) -> Any:
        """The identity of ``token``, or None after closing the peer for it."""
        try:
            identity = answered(self.auth.verify(token), f"{self.auth!r}.verify")
        except Reject as exc:
            self.stats["refused_auth"] += 1
            logger.info(
                "peer %s: token refused: %s",
                self.peer.id,
                exc.reason,
                extra={"peer": self.peer.id, "client": self.peer.transport.request.client_ip},
            )
            self._close(exc.code, exc.reason)
            return None
        except Exception:
            logger.exception("token verification failed; closing with 1011")
            self._close(CloseCode.INTERNAL_ERROR, "internal error")
            return None
        if identity is None:
            logger.error("%r.verify returned None; refusing the token", self.auth)
            self._close(CloseCode.UNAUTHORIZED, "invalid token")
        return identity

    def _close(self, code: int, reason: str) -> None:
        self.cancel()
        self.peer.transport.close(code, reason)

    def _later(self, delay: float, callback: Any) -> None:
        self._timers.append(asyncio.get_running_loop().call_later(delay, callback))

    def cancel(self) -> None:
        """Stop every timer (the connection is gone, or a new token replaced the old)."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
