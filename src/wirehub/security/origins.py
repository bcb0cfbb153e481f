"""Origin checks: refuse cross-site WebSocket hijacking (CSWSH).

Browsers send cookies and HTTP authentication with a WebSocket handshake to
any site, whichever page opened it, and the same-origin policy does not
apply to WebSockets: a page on ``evil.example`` can open
``wss://bank.example/ws`` with the victim's cookies. What the server can
see is the ``Origin`` header, which browsers always send and scripts cannot
forge (RFC 6455 §10.2). So by default a handshake whose ``Origin`` is not the
server's own (the ``Host`` it was sent to) is refused with 403, and one
without ``Origin`` (not a browser: the Python client, curl, a server) is
let through: such a client could set any header anyway, and an origin check
cannot stop it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["OriginPolicy", "normalize_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
# What a browser sends: scheme://host[:port], nothing else (RFC 6454 §7).
_WELL_FORMED = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#@\\\s]+")


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, without a default port or trailing slash."""
    value = origin.strip().lower().rstrip("/")
    scheme, sep, rest = value.partition("://")
    if not sep:
        return value
    port = _DEFAULT_PORTS.get(scheme)
    if port is not None and rest.endswith(f":{port}") and not rest.endswith("]"):
        rest = rest[: -len(f":{port}")]
    return f"{scheme}://{rest}"


def _split(origin: str) -> tuple[str, str, int | None] | None:
    """``(scheme, host, port)`` of an origin, or None if it is not one."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or _DEFAULT_PORTS.get(parts.scheme)


def _same_origin(origin: str, host: str) -> bool:
    split = _split(origin)
    if split is None:
        return False
    scheme, origin_host, origin_port = split
    try:
        target = urlsplit(f"//{host.strip()}")
        host_name, host_port = target.hostname, target.port
    except ValueError:
        return False
    if host_name is None or host_name != origin_host:
        return False
    # A Host without a port was sent to the scheme's default port.
    return (host_port or _DEFAULT_PORTS.get(scheme)) == origin_port


class OriginPolicy:
    """Which ``Origin`` values may open a WebSocket.

    ``allowed`` lists exact origins (``"https://app.example.com"``) and
    patterns matched with ``fnmatch`` (``"https://*.example.com"``,
    ``"http://localhost:*"``); ``"*"`` allows every origin (turns the check
    off). The server's own origin is always allowed. ``"null"`` (sandboxed
    frames, ``file://`` pages) is allowed only when listed.
    """

    def __init__(self, allowed: Iterable[str] | None = None) -> None:
        self.exact: frozenset[str] = frozenset()
        self.patterns: tuple[str, ...] = ()
        self.any = False
        exact: set[str] = set()
        patterns: list[str] = []
        for entry in allowed or ():
            value = normalize_origin(entry)
            if value == "*":
                self.any = True
            elif any(c in value for c in "*?["):
                patterns.append(value)
            else:
                exact.add(value)
        self.exact = frozenset(exact)
        self.patterns = tuple(patterns)

    def allows(self, origin: str | None, host: str | None) -> bool:
        """Whether a handshake with this ``Origin`` (None: absent) sent to ``Host`` may go on."""
        if origin is None or self.any:
            return True
        value = normalize_origin(origin)
        if value in self.exact:
            return True
        if value != "null" and host is not None and _same_origin(value, host):
            return True
        if not self.patterns or not _WELL_FORMED.fullmatch(value):
            return False
        return any(fnmatch.fnmatchcase(value, pattern) for pattern in self.patterns)
