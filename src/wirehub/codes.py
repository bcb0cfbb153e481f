"""Wire codes: WebSocket close codes and whether a client should reconnect.

This module is the single source of truth. ``docs/PROTOCOL.md`` documents it
and the browser client's copy is checked against it by a test.
"""

from __future__ import annotations

import enum
import math
import re

__all__ = [
    "RETRY_AFTER",
    "CloseCode",
    "ErrorCode",
    "can_send",
    "is_retryable",
    "retry_after",
    "should_reconnect",
    "with_retry_after",
]


class CloseCode(enum.IntEnum):
    """Close codes the server sends (RFC 6455 §7.4 plus wirehub's 4xxx range)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down or client navigating away
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    ABNORMAL = 1006  # never sent: the TCP connection dropped
    INVALID_DATA = 1007  # e.g. text frame that is not UTF-8
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011  # a handler crashed, or keepalive timed out
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    # wirehub-specific (the 4000-4999 range is private use, RFC 6455 §7.4.2)
    UNAUTHORIZED = 4001  # authentication failed: do not retry with the same token
    FORBIDDEN = 4003  # authenticated but not allowed
    TOKEN_EXPIRED = 4004  # refresh the token, then reconnect
    SLOW_CONSUMER = 4008  # the client did not read fast enough; reconnect and recover
    RATE_LIMITED = 4029  # sustained abuse of rate limits


# Codes after which reconnecting with the same credentials cannot help.
_FINAL: frozenset[int] = frozenset(
    {
        CloseCode.NORMAL,
        CloseCode.PROTOCOL_ERROR,
        CloseCode.UNSUPPORTED_DATA,
        CloseCode.INVALID_DATA,
        CloseCode.POLICY_VIOLATION,
        CloseCode.MESSAGE_TOO_BIG,
        CloseCode.UNAUTHORIZED,
        CloseCode.FORBIDDEN,
    }
)


def can_send(code: int) -> bool:
    """Whether ``code`` may be sent in a close frame (RFC 6455 §7.4).

    1000 to 1003 and 1007 to 1014 (registered with IANA) and 3000 to 4999; never
    1004, 1005, 1006 or 1015, which only ever describe a close locally.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def should_reconnect(code: int) -> bool:
    """Whether a client that was closed with ``code`` should reconnect."""
    return code not in _FINAL


RETRY_AFTER = re.compile(r"retry_after=(\d{1,6}(?:\.\d{1,6})?)$")
"""How a close reason asks for a reconnection delay (wirehub.js reads it alike)."""


def with_retry_after(reason: str, seconds: float) -> str:
    """``reason`` with the delay a client should wait before reconnecting
    (``"server restarting; retry_after=0.734"``: docs/PROTOCOL.md §6). Milliseconds,
    rounded down: a delay drawn below a bound stays below it (0.9996 is 0.999, not 1.000)."""
    return f"{reason}; retry_after={math.floor(seconds * 1000) / 1000:.3f}"


def retry_after(reason: str) -> float | None:
    """The delay a close reason asks a client to wait before reconnecting, in
    seconds, or None when it asks none (``with_retry_after``)."""
    match = RETRY_AFTER.search(reason)
    return float(match.group(1)) if match else None


class ErrorCode(enum.StrEnum):
    """The ``code`` of an ``error`` message (docs/PROTOCOL.md, "Errors")."""

    BAD_MESSAGE = "bad_message"  # not JSON, or not a message of the protocol
    UNKNOWN_EVENT = "unknown_event"  # no handler for that event name
    INVALID_DATA = "invalid_data"  # the data failed the handler's type; see details
    FORBIDDEN = "forbidden"  # not allowed (join or emit denied)
    LIMIT_EXCEEDED = "limit_exceeded"  # e.g. too many rooms for one peer
    RATE_LIMITED = "rate_limited"  # slow down; details.retry_after in seconds
    INTERNAL_ERROR = "internal_error"  # the handler failed; the server logged why
    UNAVAILABLE = "unavailable"  # the server cannot serve this now (e.g. shutting down)


_RETRYABLE: frozenset[str] = frozenset(
    {
        ErrorCode.RATE_LIMITED,
        ErrorCode.INTERNAL_ERROR,
        ErrorCode.UNAVAILABLE,
    }
)


def is_retryable(code: str) -> bool:
    """Whether sending the same request again later may succeed."""
    return code in _RETRYABLE
