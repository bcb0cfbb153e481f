"""Authorization from an identity's claims: hooks for ``authorize_join`` and ``authorize_emit``.

``hub.authorize_join(rooms_claim())`` lets a peer join the rooms matching
the ``fnmatch`` patterns of its ``rooms`` claim (``["chat:*", "news"]``);
``events_claim`` does the same for emits, ``require_role`` checks a
``roles`` claim. Identities are JWT claims dicts or any object with
attributes of those names.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Protocol

__all__ = [
    "HasUser",
    "claim_values",
    "events_claim",
    "has_role",
    "matches",
    "require_role",
    "rooms_claim",
]


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
