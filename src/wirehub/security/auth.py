"""Authentication at the handshake, and authorization from the identity's claims.

``hub.authenticate(hook)`` registers ``hook(request) -> identity`` (sync or
async). It runs before the WebSocket upgrade; raising ``Reject(401|403,
reason)`` refuses the handshake with that HTTP status, so nothing of the
application runs. The identity it returns is ``request.user``, then
``peer.user`` (event endpoint) and ``ws.user`` (plain endpoints).

A ``TokenAuth`` (such as ``wirehub.security.jwt.JWTAuth``) is a hook that
also knows tokens: it reads one from ``Authorization: Bearer``, the
``?token=`` query or a cookie, and on the event endpoint it can take it from
the first message instead (``{"type": "auth", "token": …}``) and ask the
client for a fresh one before it expires (``{"type": "refresh"}``,
docs/PROTOCOL.md §13).

Authorization from the identity's claims is in ``wirehub.security.claims``.
"""

from __future__ import annotations

import abc
import collections
import http
import http.cookies
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from wirehub.codes import CloseCode
from wirehub.exceptions import Reject
from wirehub.http.messages import Request, Response

__all__ = [
    "Admission",
    "AuthHook",
    "TokenAuth",
    "answered",
    "authenticate_request",
    "refusal",
    "subject",
]

logger = logging.getLogger("wirehub.security")

AuthHook = Callable[[Request], Any]
"""``(request) -> identity``, or an awaitable of it; raises ``Reject`` to refuse."""

Admission = Response | Awaitable[Response | None] | None
"""What a pre-upgrade check answers: None (go on), a refusal, or an awaitable of either."""


class TokenAuth(abc.ABC):
    """Base of token authenticators: subclass it and implement ``verify``.

    ``refresh_before``: seconds before the identity expires at which the
    server asks the client for a new token. ``query``/``cookie``: where else
    than ``Authorization: Bearer`` a handshake may carry the token (None
    turns one off). ``allow_message``: on the event endpoint, a handshake
    without a token is accepted and the first message must be ``auth``.
    """

    def __init__(
        self,
        *,
        refresh_before: float = 30.0,
        query: str | None = "token",
        cookie: str | None = None,
        allow_message: bool = True,
    ) -> None:
        self.refresh_before = refresh_before
        self.query = query
        self.cookie = cookie
        self.allow_message = allow_message

    @abc.abstractmethod
    def verify(self, token: str) -> Any:
        """The identity a token stands for; raises ``Reject`` (401, close code 4001/4004)."""

    def expires_at(self, identity: Any) -> float | None:
        """When ``identity`` stops being valid (Unix time, seconds), or None: never."""
        return None

    def same_subject(self, old: Any, new: Any) -> bool:
        """Whether a refreshed identity is the same principal (else the peer is closed, 4003).

        By default: two mappings with the same ``sub``, or two equal values
        that are not mappings (the same user id). Identities with no subject
        to compare are refused: a refresh must never switch users unseen.
        """
        if isinstance(old, Mapping) or isinstance(new, Mapping):
            return subject(old) is not None and subject(old) == subject(new)
        return old is not None and old == new

    def token_from(self, request: Request) -> str | None:
        """The token a handshake carries, or None."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        if self.query is not None:
            token = request.query.get(self.query)
            if token:
                return token
        if self.cookie is not None:
            for header in request.headers.get_all("cookie"):
                jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
                try:
                    jar.load(header)
                except http.cookies.CookieError:
                    continue
                morsel = jar.get(self.cookie)
                if morsel is not None and morsel.value:
                    return morsel.value
        return None

    def __call__(self, request: Request) -> Any:
        """Use as a plain hook: the identity of the handshake's token."""
        token = self.token_from(request)
        if token is None:
            raise Reject(401, "missing token", code=CloseCode.UNAUTHORIZED)
        return self.verify(token)


def answered(value: Any, what: str) -> Any:
    """``value``, from a method that must answer at once (``TokenAuth.verify``,
    ``same_subject``, ``expires_at``); raises ``TypeError`` for an awaitable
    (an ``async def`` there), which callers treat as a refusal: never as an answer."""
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never awaited, on purpose: no warning about it
        raise TypeError(f"{what} returned an awaitable; it must be a plain method")
    return value


def subject(identity: Any) -> Any:
    """The ``sub`` claim of a mapping identity (None when absent, empty or not a mapping)."""
    value = identity.get("sub") if isinstance(identity, Mapping) else None
    return None if value in (None, "") else value


def refusal(exc: Reject) -> Response:
    """The HTTP response refusing a handshake for ``exc`` (the one place this maps)."""
    status = exc.status
    if status not in http.HTTPStatus._value2member_map_ or not 400 <= status < 600:
        status = 403
    response = Response.error(status, exc.reason)
    if status == 401:  # RFC 6750 §3
        response.headers.append(("WWW-Authenticate", 'Bearer realm="wirehub"'))
    return response


def authenticate_request(
    hook: AuthHook,
    request: Request,
    *,
    deferrable: bool,
    stats: collections.Counter[str] | None = None,
) -> Admission:
    """Run ``hook`` for a handshake; set ``request.user``; None when it may go on.

    ``deferrable``: the endpoint can take the token from the first message
    (the event endpoint), so a ``TokenAuth`` lets a handshake without one
    through. Returns an awaitable when the hook is a coroutine function.
    """
    if isinstance(hook, TokenAuth):
        token = hook.token_from(request)
        if token is None:
            if deferrable and hook.allow_message:
                return None
            missing = Reject(401, "missing token", code=CloseCode.UNAUTHORIZED)
            return _refused(request, missing, stats)
        try:
            request.user = answered(hook.verify(token), f"{hook!r}.verify")
        except Reject as exc:
            return _refused(request, exc, stats)
        except Exception:
            return _failed(hook)
        return None
    try:
        result = hook(request)
    except Reject as exc:
        return _refused(request, exc, stats)
    except Exception:
        return _failed(hook)
    if inspect.isawaitable(result):
        return _identity(request, result, stats)
    request.user = result
    return None


async def _identity(
    request: Request, pending: Awaitable[Any], stats: collections.Counter[str] | None
) -> Response | None:
    try:
        request.user = await pending
    except Reject as exc:
        return _refused(request, exc, stats)
    except Exception:
        return _failed(pending)
    return None


def _failed(hook: object) -> Response:
    logger.exception("authentication hook %r failed; refusing with 500", hook)
    return Response.error(500)


def _refused(request: Request, exc: Reject, stats: collections.Counter[str] | None) -> Response:
    if stats is not None:
        stats["refused_auth"] += 1
    logger.info("handshake from %s refused: %d %s", request.client_ip, exc.status, exc.reason)
    return refusal(exc)
