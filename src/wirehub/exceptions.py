"""Exceptions raised by wirehub.

The tree::

    WirehubError
    ├── ConnectionClosed        the WebSocket is closed; carries code and reason
    ├── Reject                  raised by user hooks to refuse a connection
    ├── ConfigError             our misuse: bad configuration or API use
    └── HandshakeError          a client could not open a connection

The mapping from exception to HTTP status or close code lives in one place:
the ``status``/``code`` fields below, read by the server.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConnectionClosed",
    "HandshakeError",
    "Reject",
    "WirehubError",
]


class WirehubError(Exception):
    """Root of every exception wirehub raises on purpose."""


class ConnectionClosed(WirehubError):
    """The WebSocket connection is closed.

    ``code`` is the close code received from the peer (or 1006 when the TCP
    connection dropped without a closing handshake); ``reason`` its text.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class Reject(WirehubError):
    """Refuse a connection from a hook.

    Before the WebSocket upgrade, ``status`` is the HTTP status sent back
    (401, 403, 429…). After the upgrade, ``code`` is the close code.
    """

    def __init__(self, status: int = 403, reason: str = "forbidden", *, code: int = 1008) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.code = code


class ConfigError(WirehubError):
    """wirehub was configured or called in a way that cannot work."""


class HandshakeError(WirehubError):
    """The client could not open the WebSocket connection."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
