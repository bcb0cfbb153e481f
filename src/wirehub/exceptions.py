"""Exceptions raised by wirehub.

The tree::

    WirehubError
    ├── ConnectionClosed        the WebSocket is closed; carries code and reason
    ├── Reject                  raised by user hooks to refuse a connection
    ├── ConfigError             our misuse: bad configuration or API use
    ├── HandshakeError          a client could not open a connection
    └── EventError              an event was refused; the caller gets an ``error``
        ├── Unavailable         the broker cannot take it now (retryable ``unavailable``)
        └── CallError           a ``call`` (client's, or ``peer.call``) was answered with an error
            └── CallTimeout     no answer in time

The mapping from exception to HTTP status or close code lives in one place:
the ``status``/``code`` fields below, read by the server.
"""

from __future__ import annotations

from typing import Any

from wirehub.codes import can_send

__all__ = [
    "CallError",
    "CallTimeout",
    "ConfigError",
    "ConnectionClosed",
    "EventError",
    "HandshakeError",
    "Reject",
    "Unavailable",
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
    (401, 403, 429…). After the upgrade, ``code`` is the close code: one a
    close frame may carry (``wirehub.codes.can_send``), else the
    constructor raises ``ConfigError``; a ``reason`` longer than a close
    frame holds (123 bytes of UTF-8) is cut.
    """

    def __init__(self, status: int = 403, reason: str = "forbidden", *, code: int = 1008) -> None:
        if not can_send(code):  # refused here, where the mistake is, not at the close
            raise ConfigError(f"Reject(code={code}): not a close code one may send (RFC 6455 §7.4)")
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


class EventError(WirehubError):
    """Raise in an event handler to answer the caller with this error.

    ``code`` is machine-readable (see ``wirehub.codes.ErrorCode`` for the
    built-in ones; applications may use their own), ``message`` is for
    humans, ``details`` is any JSON-able dict.
    """

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details


class Unavailable(EventError):
    """The broker cannot take a publication, or confirm a subscription, now.

    Raised by ``await hub.to(room).emit(...)`` (and every other emit that
    goes through the broker) and by joins while the broker is unreachable.
    Nothing was delivered anywhere, or — when the broker's answer was lost
    (a timeout) — the outcome is unknown (``details == {"outcome":
    "unknown"}``): if the broker applied it, it is delivered everywhere with
    its position, never twice, and a retry publishes it again. Retryable: a
    handler that lets it propagate answers the caller's ``call`` with the
    ``unavailable`` error code (docs/PROTOCOL.md §5).
    """

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__("unavailable", message, details)


class CallError(EventError):
    """A ``call`` was answered with an ``error`` message (by the server, or by
    the client for the server's ``peer.call``)."""


class CallTimeout(CallError):
    """A ``call`` got no answer within its timeout."""

    def __init__(self, event: str, timeout: float) -> None:
        super().__init__("timeout", f"no answer to {event!r} within {timeout}s")
