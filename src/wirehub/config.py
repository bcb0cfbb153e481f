"""Configuration: small frozen dataclasses grouped by concern.

Every field is keyword-only with a safe default; ``None`` disables a limit or
timeout. The library never reads the environment; only the CLI does.
"""

from __future__ import annotations

import dataclasses

__all__ = ["Limits", "Timeouts", "fd_limit", "socket_budget"]

KiB = 1024
MiB = 1024 * KiB

MAX_CONNECTIONS = 25_000
"""The default cap on WebSockets (~25 KiB each when idle: ~600 MiB), when file
descriptors allow it (``Limits.max_connections``)."""


def fd_limit() -> int | None:
    """This process's file-descriptor limit (the soft ``RLIMIT_NOFILE``), None if unbounded."""
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def _default_max_connections() -> int:
    # One socket per WebSocket; a tenth of the descriptors (at least 64) stays
    # for HTTP requests, /healthz, the listening sockets, Redis and files.
    limit = fd_limit()
    if limit is None:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, limit - max(64, limit // 10)))


def socket_budget() -> int | None:
    """Connections of any kind the server holds before it refuses new ones (503).

    A few descriptors below the limit (32, or 2 %), so that the refusal and
    ``/healthz`` can still be answered: past the limit itself, accepting
    fails and a client sees only a reset.
    """
    limit = fd_limit()
    return None if limit is None else max(1, limit - max(32, limit // 50))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Limits:
    """Size and count limits. Exceeding one gets a clear answer, never a crash."""

    max_message_size: int | None = 1 * MiB
    """Largest WebSocket message accepted, after decompression (else close 1009)."""
    max_request_line: int = 8 * KiB
    """Longest HTTP request line (else 414)."""
    max_head_size: int = 16 * KiB
    """Largest HTTP request head: request line plus headers (else 431)."""
    max_headers: int = 100
    """Most header fields in one request (else 431)."""
    max_body_size: int = 1 * MiB + 64 * KiB
    """Largest HTTP request body (else 413). Keep it above ``max_message_size``: an HTTP
    fallback POST carries a message in a body (PROTOCOL.md §14), with a few bytes more."""
    write_buffer_high: int = 256 * KiB
    """A connection whose unsent bytes pass this is 'behind': sends wait."""
    write_buffer_low: int = 64 * KiB
    """Sends resume once the unsent bytes fall below this."""
    max_queued_messages: int = 64
    """Received messages buffered for a plain endpoint before reading pauses."""
    max_buffered: int = 1 * MiB
    """A peer with more unsent bytes than this is a slow consumer (see ``slow_consumer``)."""
    max_rooms_per_peer: int | None = 100
    """Rooms one peer may be in at once (else ``limit_exceeded``)."""
    max_pending_calls: int | None = 64
    """Handlers of one peer still waiting on something; past this, the server stops
    reading that peer's socket until some finish (flow control, nothing dropped)."""
    max_connections: int | None = dataclasses.field(default_factory=_default_max_connections)
    """WebSockets open at once on one server (each costs a socket and some memory);
    one more handshake is answered 503 before the upgrade. Default: 25,000, or
    fewer when the process's file-descriptor limit is lower (the limit less a
    tenth, at least 64, kept for HTTP, ``/healthz``, Redis and files)."""
    reconnect_rate: float | None = 4000.0
    """Reconnections per second a server expects its clients' next server to absorb
    when it shuts down: each WebSocket it closes (1001, 1012) is told a random
    delay below ``clients / reconnect_rate`` seconds before reconnecting
    (``retry_after`` in the close reason, docs/PROTOCOL.md §6), so they come back
    spread out instead of all at once; when that is under half a second, no
    delay is suggested (the clients' own jitter is enough). None: never."""

    def __post_init__(self) -> None:
        # A zero or negative size would make a server that refuses everything, silently.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            least = 0 if field.name == "write_buffer_low" else 1
            if value is not None and value < least:
                raise ValueError(f"Limits.{field.name} is at least {least} (or None), not {value}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Timeouts:
    """Timeouts in seconds."""

    handshake: float | None = 10.0
    """A request head (and body) must arrive in full within this (slowloris guard)."""
    idle_http: float | None = 30.0
    """An HTTP keep-alive connection with no request in flight is closed after this."""
    ping_interval: float | None = 20.0
    """How often the server pings an idle-or-not WebSocket."""
    ping_timeout: float | None = 20.0
    """A WebSocket that sends nothing (not even the pong) for this long after a ping is closed."""
    auth: float | None = 10.0
    """With token authentication, a handshake without a token must send its ``auth``
    message within this (else close 4001); also bounds an async authentication hook."""
    close: float = 5.0
    """How long to wait for the client's close frame before dropping TCP."""
    shutdown: float = 10.0
    """Graceful shutdown: how long clients get to close before they are cut off."""
    poll: float = 25.0
    """HTTP fallback: how long a long-poll waits for records, and how long a stream lasts."""
    session: float = 20.0
    """HTTP fallback: a session with no request in flight for this long is closed
    (its client is gone), and a closed one is forgotten after this long."""
    relay: float = 2.0
    """HTTP fallback: how long a node waits for the node owning a session to answer
    a relayed request, through the broker, before telling the client it is gone (410)."""
