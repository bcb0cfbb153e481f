"""Rate limits: token buckets per connection, per event and per client address.

Sans-I/O: every decision takes the time from a ``clock`` callable (or a
``now`` argument), so the logic is tested without sleeping. The hub asks a
``PeerLimiter`` about each message of a peer, and the server asks an
``AddressLimiter`` about each WebSocket handshake (via ``Gate``). Nothing
here runs unless a limit is configured: every limit defaults to None.

A bucket holds up to ``burst`` tokens and gains ``count / per`` of them per
second; a message takes one (the bytes bucket: one per byte). An empty
bucket refuses, and says how long until it would accept (``retry_after``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import time
from collections.abc import Callable, Mapping

from wirehub.exceptions import ConfigError

__all__ = [
    "AddressLimiter",
    "Clock",
    "PeerLimiter",
    "Rate",
    "RateLimits",
    "TokenBucket",
]

Clock = Callable[[], float]
"""Returns the current time in seconds (``time.monotonic`` unless a test passes its own)."""


@dataclasses.dataclass(frozen=True)
class Rate:
    """``count`` per ``per`` seconds on average, with bursts of up to ``burst`` (default: count).

    ``Rate(20)`` is 20 per second; ``Rate(100, per=60, burst=10)`` is 100 a
    minute, at most 10 at once.
    """

    count: float
    per: float = 1.0
    burst: float | None = None

    def __post_init__(self) -> None:
        if self.count <= 0 or self.per <= 0:
            raise ConfigError(f"a Rate needs count > 0 and per > 0, not {self}")
        if self.burst is not None and self.burst < 1:
            raise ConfigError(f"a Rate's burst is at least 1, not {self.burst}")

    @property
    def per_second(self) -> float:
        return self.count / self.per

    @property
    def capacity(self) -> float:
        return self.count if self.burst is None else self.burst


class TokenBucket:
    """One bucket; starts full. ``take`` returns 0.0 when it took, else the seconds to wait."""

    __slots__ = ("capacity", "per_second", "stamp", "tokens")

    def __init__(self, rate: Rate, now: float) -> None:
        self.per_second = rate.per_second
        self.capacity = rate.capacity
        self.tokens = self.capacity
        self.stamp = now

    def _refill(self, now: float) -> None:
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.capacity, self.tokens + elapsed * self.per_second)
            self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens if there are enough; else take none and return the wait.

        A cost above the capacity is counted as the capacity (a message bigger
        than the byte burst empties a full bucket rather than never passing).
        """
        self._refill(now)
        cost = min(cost, self.capacity)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.per_second

    def full(self, now: float) -> bool:
        """Whether the bucket is full: it then behaves exactly like a new one."""
        self._refill(now)
        return self.tokens >= self.capacity


@dataclasses.dataclass(frozen=True, kw_only=True)
class RateLimits:
    """Rate limits, all off (None) by default; ``Hub(rate_limits=RateLimits(...))``.

    Per connection of the event endpoint (refused with an ``error``
    ``rate_limited`` carrying ``details.retry_after``; nothing is run):
    """

    messages: Rate | None = None
    """Messages of any type (emit, join, leave, ping, auth) one peer may send."""
    bytes: Rate | None = None
    """Message bytes one peer may send (text counted in UTF-8)."""
    events: Mapping[str, Rate] = dataclasses.field(default_factory=dict)
    """Per event name: how often one peer may emit it (on top of ``messages``)."""
    strikes: Rate | None = Rate(10, per=10.0)
    """Refusals tolerated before the peer is closed with 4029: by default 10 at once,
    or more than one a second sustained. None never closes."""
    handshakes_per_ip: Rate | None = None
    """WebSocket handshakes one client address may start (else HTTP 429)."""
    connections_per_ip: int | None = None
    """WebSockets one client address may hold open at once (else HTTP 429)."""
    ipv6_prefix: int = 64
    """For the per-address limits, IPv6 clients are grouped by this prefix: one /64 is
    usually one subscriber (RFC 6177), who could otherwise take a fresh bucket per address."""

    def __post_init__(self) -> None:
        if not 0 <= self.ipv6_prefix <= 128:
            raise ConfigError(f"ipv6_prefix is 0 to 128, not {self.ipv6_prefix}")

    @property
    def per_peer(self) -> bool:
        """Whether any per-connection limit is set (else no limiter is made at all)."""
        return self.messages is not None or self.bytes is not None or bool(self.events)

    @property
    def per_address(self) -> bool:
        return self.handshakes_per_ip is not None or self.connections_per_ip is not None


class PeerLimiter:
    """The buckets of one connection. Made only when ``RateLimits.per_peer``."""

    __slots__ = ("_bytes", "_clock", "_events", "_limits", "_messages", "_strikes", "closing")

    def __init__(self, limits: RateLimits, clock: Clock = time.monotonic) -> None:
        now = clock()
        self._limits = limits
        self._clock = clock
        self._messages = TokenBucket(limits.messages, now) if limits.messages else None
        self._bytes = TokenBucket(limits.bytes, now) if limits.bytes else None
        self._events: dict[str, TokenBucket] = {}
        self._strikes = TokenBucket(limits.strikes, now) if limits.strikes else None
        self.closing = False
        """Set once ``strike`` said to close: later messages are ignored."""

    def message(self, message: str | bytes) -> float:
        """Count one message; 0.0 if it may pass, else seconds until it could."""
        now = self._clock()
        wait = 0.0
        if self._messages is not None:
            wait = self._messages.take(now)
        if self._bytes is not None and not wait:
            size = len(message)
            if isinstance(message, str) and not message.isascii():
                size = len(message.encode())
            wait = self._bytes.take(now, size)
            if wait and self._messages is not None:
                self._messages.tokens += 1  # refused: it did not use its message token
        return wait

    def event(self, name: str) -> float:
        """Count one emit of ``name`` against its own limit, if it has one."""
        rate = self._limits.events.get(name)
        if rate is None:
            return 0.0
        bucket = self._events.get(name)
        now = self._clock()
        if bucket is None:
            bucket = self._events[name] = TokenBucket(rate, now)
        return bucket.take(now)

    def strike(self) -> bool:
        """Record a refusal; True when the peer has abused the limits and must be closed."""
        if self._strikes is None or self.closing:
            return self.closing
        if self._strikes.take(self._clock()):
            self.closing = True
        return self.closing


class AddressLimiter:
    """Handshakes per second and open connections per client address.

    Memory is bounded: at most ``max_tracked`` addresses keep a bucket. A
    full bucket is the same as none, so those are forgotten first; past
    that, the oldest are (an attacker with more addresses than that can
    only get a fresh burst for each, never more).
    """

    def __init__(
        self, limits: RateLimits, clock: Clock = time.monotonic, *, max_tracked: int = 100_000
    ) -> None:
        self._ipv6_prefix = limits.ipv6_prefix
        self._rate = limits.handshakes_per_ip
        self._max_open = limits.connections_per_ip
        self._clock = clock
        self._max_tracked = max_tracked
        self._buckets: dict[str, TokenBucket] = {}
        self._open: dict[str, int] = {}

    def admit(self, address: str) -> float | None:
        """None when a handshake from ``address`` may go on (it then holds a slot until
        ``release``); else the seconds after which to retry (for ``Retry-After``)."""
        address = self.key(address)
        if self._rate is not None:
            now = self._clock()
            bucket = self._buckets.get(address)
            if bucket is None:
                if len(self._buckets) >= self._max_tracked:
                    self._prune(now)
                bucket = self._buckets[address] = TokenBucket(self._rate, now)
            wait = bucket.take(now)
            if wait:
                return wait
        if self._max_open is not None:
            count = self._open.get(address, 0)
            if count >= self._max_open:
                return 1.0
            self._open[address] = count + 1
        return None

    def release(self, address: str) -> None:
        """A connection ``admit`` let through has ended."""
        address = self.key(address)
        count = self._open.get(address)
        if count is None:
            return
        if count <= 1:
            del self._open[address]
        else:
            self._open[address] = count - 1

    def open_count(self, address: str) -> int:
        return self._open.get(self.key(address), 0)

    def key(self, address: str) -> str:
        """What ``address`` is counted as: itself (IPv4), or its IPv6 network of the prefix."""
        if ":" not in address:
            return address
        try:
            network = ipaddress.IPv6Network((address, self._ipv6_prefix), strict=False)
        except ValueError:
            return address
        return str(network)

    def _prune(self, now: float) -> None:
        for address in [a for a, b in self._buckets.items() if b.full(now)]:
            del self._buckets[address]
        excess = len(self._buckets) - self._max_tracked // 2
        if excess > 0:  # still crowded: forget the oldest
            for address in list(self._buckets)[:excess]:
                del self._buckets[address]
