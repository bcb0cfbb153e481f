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
from typing import TYPE_CHECKING, Any

from wirehub.codes import CloseCode
from wirehub.exceptions import Reject
from wirehub.protocol import messages as wire
from wirehub.protocol.websocket import Message
from wirehub.security.auth import TokenAuth

if TYPE_CHECKING:
    from wirehub.hub.peer import Peer

__all__ = ["Credentials"]

logger = logging.getLogger("wirehub.hub")


class Credentials:
    """The token side of one peer: first ``auth``, ``refresh`` requests, expiry."""

    __slots__ = ("_timers", "auth", "expires", "peer", "waiting")

    def __init__(self, peer: Peer, auth: TokenAuth) -> None:
        self.peer = peer
        self.auth = auth
        self.waiting = False  # for the first message, which must be ``auth``
        self.expires: float | None = None
        self._timers: list[asyncio.TimerHandle] = []

    # -- before welcome ------------------------------------------------------

    def wait_first(self) -> None:
        """The handshake had no token: the first message must bring one."""
        self.waiting = True
        timeout = self.peer.hub.timeouts.auth
        if timeout is not None:
            self._later(timeout, self._no_token)

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
        self.peer._begin()  # the connect handler, then welcome (the first auth's answer)

    def _no_token(self) -> None:
        if self.waiting:
            self.waiting = False
            self.peer.hub.stats["auth_timeouts"] += 1
            self._close(CloseCode.UNAUTHORIZED, "no credentials in time")

    # -- after welcome --------------------------------------------------------

    def refreshed(self, request: wire.Auth) -> None:
        """An ``auth`` on a welcomed connection: a new token for the same subject."""
        identity = self._verify(request.token)
        if identity is None:
            return
        if not self.auth.same_subject(self.peer.user, identity):
            self._close(CloseCode.FORBIDDEN, "the new token is for another subject")
            return
        self.peer.user = identity
        self.schedule()
        if request.id is not None:
            expires_in = None if self.expires is None else round(self.expires - time.time(), 3)
            self.peer._ack(request.id, {"expires_in": expires_in})

    def schedule(self) -> None:
        """Arm the refresh request and the expiry for the current identity."""
        self.cancel()
        self.expires = self.auth.expires_at(self.peer.user)
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
            self.peer.transport.send_text(wire.encode(wire.Refresh(expires_in)))

    def _expired(self) -> None:
        self.peer.hub.stats["tokens_expired"] += 1
        self._close(CloseCode.TOKEN_EXPIRED, "token expired")

    # -- helpers ----------------------------------------------------------------

    def _verify(self, token: str) -> Any:
        """The identity of ``token``, or None after closing the peer for it."""
        try:
            identity = self.auth.verify(token)
        except Reject as exc:
            self.peer.hub.stats["refused_auth"] += 1
            logger.info("peer %s: token refused: %s", self.peer.id, exc.reason)
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
