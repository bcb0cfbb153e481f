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

The claim helpers turn an identity's claims into ``authorize_join`` and
``authorize_emit`` hooks: ``hub.authorize_join(rooms_claim())`` lets a peer
join the rooms matching the patterns of its ``rooms`` claim.
"""

from __future__ import annotations

import collections
import fnmatch
import http
import http.cookies
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from typing import Any, Protocol

from wirehub.codes import CloseCode
from wirehub.exceptions import Reject
from wirehub.http.messages import Request, Response

__all__ = [
    "Admission",
    "AuthHook",
    "TokenAuth",
    "authenticate_request",
    "claim_values",
    "events_claim",
    "has_role",
    "matches",
    "refusal",
    "require_role",
    "rooms_claim",
]

logger = logging.getLogger("wirehub.security")

AuthHook = Callable[[Request], Any]
"""``(request) -> identity``, or an awaitable of it; raises ``Reject`` to refuse."""

Admission = Response | Awaitable[Response | None] | None
"""What a pre-upgrade check answers: None (go on), a refusal, or an awaitable of either."""


class TokenAuth:
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

    def verify(self, token: str) -> Any:
        """The identity a token stands for; raises ``Reject`` (401, close code 4001/4004)."""
        raise NotImplementedError

    def expires_at(self, identity: Any) -> float | None:
        """When ``identity`` stops being valid (Unix time, seconds), or None: never."""
        return None

    def same_subject(self, old: Any, new: Any) -> bool:
        """Whether a refreshed identity is the same principal (else the peer is closed)."""
        return True

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
            request.user = hook.verify(token)
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


# -- authorization from claims ---------------------------------------------------


class HasUser(Protocol):
    """Anything with the authenticated identity as ``user`` (a ``Peer``, a ``WebSocket``)."""

    @property
    def user(self) -> Any: ...


def claim_values(user: Any, claim: str) -> tuple[str, ...]:
    """The strings of claim ``claim``: a list of strings, or one string (space-separated
    scopes are split, RFC 8693 §4.2). Works on dicts (JWT claims) and on objects."""
    value = user.get(claim) if isinstance(user, Mapping) else getattr(user, claim, None)
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, Iterable):
        return tuple(item for item in value if isinstance(item, str))
    return ()


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether ``name`` matches one of ``patterns`` (``fnmatch``, case-sensitive: ``chat:*``)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def has_role(user: Any, *roles: str, claim: str = "roles") -> bool:
    """Whether the identity's ``roles`` claim holds one of ``roles``."""
    held = claim_values(user, claim)
    return any(role in held for role in roles)


def rooms_claim(claim: str = "rooms") -> Callable[[HasUser, str], bool]:
    """A join authorizer: the room must match a pattern of the peer's ``claim``.

    ``hub.authorize_join(rooms_claim())`` with a token holding
    ``"rooms": ["chat:*", "news"]`` lets that peer join ``chat:general`` and
    ``news``, and nothing else.
    """

    def authorize(peer: HasUser, room: str) -> bool:
        return matches(room, claim_values(peer.user, claim))

    return authorize


def events_claim(
    claim: str = "events", *, free: Collection[str] = ()
) -> Callable[[HasUser, str, Any], bool]:
    """An emit authorizer: the event must match a pattern of the peer's ``claim``.

    Events named in ``free`` need no claim (e.g. ``free={"ping", "typing"}``).
    """

    def authorize(peer: HasUser, event: str, data: Any) -> bool:
        return event in free or matches(event, claim_values(peer.user, claim))

    return authorize


def require_role(*roles: str, claim: str = "roles") -> Callable[..., bool]:
    """An authorizer for ``authorize_join`` or ``authorize_emit``: the peer holds a role."""

    def authorize(peer: HasUser, *_: Any) -> bool:
        return has_role(peer.user, *roles, claim=claim)

    return authorize
