"""Token buckets and the limiters, driven by a fake clock: no sleeping."""

from __future__ import annotations

import pytest

from wirehub.exceptions import ConfigError
from wirehub.security.ratelimit import (
    AddressLimiter,
    PeerLimiter,
    Rate,
    RateLimits,
    TokenBucket,
)


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_rate_defaults_and_validation() -> None:
    """A Rate's burst defaults to its count; nonsense rates are configuration errors."""
    assert Rate(20).capacity == 20 and Rate(20).per_second == 20
    assert Rate(100, per=60, burst=10).capacity == 10
    assert Rate(100, per=60).per_second == pytest.approx(100 / 60)
    for bad in ({"count": 0}, {"count": 5, "per": 0}, {"count": 5, "burst": 0.5}):
        with pytest.raises(ConfigError):
            Rate(**bad)  # type: ignore[arg-type]


def test_bucket_allows_a_burst_then_refills_at_its_rate() -> None:
    """A full bucket passes ``burst`` at once, then one per 1/rate seconds."""
    bucket = TokenBucket(Rate(2, burst=3), now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # one token takes 1/2 s to come back
    assert bucket.take(0.25) == pytest.approx(0.25)
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) == pytest.approx(0.5)
    assert bucket.full(100.0)  # refilled, capped at the burst
    assert bucket.tokens == 3


def test_bucket_refusal_takes_nothing() -> None:
    """A refused take leaves the tokens there: waiting the advised time succeeds."""
    bucket = TokenBucket(Rate(10, burst=10), now=0.0)
    assert bucket.take(0.0, 8) == 0.0
    wait = bucket.take(0.0, 5)
    assert wait == pytest.approx(0.3)
    assert bucket.take(wait, 5) == 0.0


def test_bucket_cost_above_capacity_is_capped() -> None:
    """A message bigger than the byte burst empties a full bucket instead of never passing."""
    bucket = TokenBucket(Rate(100, burst=100), now=0.0)
    assert bucket.take(0.0, 10_000) == 0.0
    assert bucket.take(0.0, 10_000) == pytest.approx(1.0)


def test_bucket_ignores_a_clock_going_backwards() -> None:
    """A non-monotonic reading never adds tokens."""
    bucket = TokenBucket(Rate(1, burst=1), now=10.0)
    assert bucket.take(10.0) == 0.0
    assert bucket.take(5.0) > 0


def test_peer_limiter_messages_and_bytes() -> None:
    """Messages and bytes each have a bucket; a refusal by bytes does not spend a message."""
    clock = Clock()
    limiter = PeerLimiter(RateLimits(messages=Rate(3), bytes=Rate(10)), clock)
    assert limiter.message("12345") == 0.0
    assert limiter.message("12345") == 0.0
    assert limiter.message("1") == pytest.approx(0.1)  # out of bytes, not of messages
    clock.advance(0.1)
    assert limiter.message("1") == 0.0  # the third message token was kept
    assert limiter.message("") > 0  # now out of messages


def test_peer_limiter_counts_utf8_bytes() -> None:
    """Text counts in UTF-8 bytes, not characters."""
    limiter = PeerLimiter(RateLimits(bytes=Rate(8)), Clock())
    assert limiter.message("éé") == 0.0  # 4 bytes
    assert limiter.message("éé") == 0.0  # 8 bytes
    assert limiter.message("é") > 0
    assert PeerLimiter(RateLimits(bytes=Rate(8)), Clock()).message(b"\x00" * 8) == 0.0


def test_peer_limiter_per_event() -> None:
    """Events with their own Rate are limited separately; others are not limited."""
    clock = Clock()
    limiter = PeerLimiter(RateLimits(events={"chat": Rate(1, per=2.0)}), clock)
    assert limiter.event("chat") == 0.0
    assert limiter.event("chat") == pytest.approx(2.0)
    assert all(limiter.event("move") == 0.0 for _ in range(100))
    clock.advance(2.0)
    assert limiter.event("chat") == 0.0


def test_strikes_close_after_a_burst_of_refusals() -> None:
    """With the default strikes (10 per 10 s), the 11th quick refusal says close, for good."""
    clock = Clock()
    limiter = PeerLimiter(RateLimits(messages=Rate(1)), clock)
    assert [limiter.strike() for _ in range(10)] == [False] * 10
    assert limiter.strike() is True
    assert limiter.closing
    clock.advance(1000)
    assert limiter.strike() is True


def test_strikes_forgive_occasional_refusals() -> None:
    """One refusal every two seconds never adds up to a close."""
    clock = Clock()
    limiter = PeerLimiter(RateLimits(messages=Rate(1)), clock)
    for _ in range(100):
        assert limiter.strike() is False
        clock.advance(2.0)


def test_no_strikes_never_closes() -> None:
    """``strikes=None`` turns the close off."""
    limiter = PeerLimiter(RateLimits(messages=Rate(1), strikes=None), Clock())
    assert not any(limiter.strike() for _ in range(1000))


def test_rate_limits_flags() -> None:
    """The defaults are all off, so no limiter object exists on the hot path."""
    assert not RateLimits().per_peer and not RateLimits().per_address
    assert RateLimits(events={"x": Rate(1)}).per_peer
    assert RateLimits(connections_per_ip=3).per_address


def test_address_limiter_handshake_rate() -> None:
    """Handshakes per address are a bucket per address; others are independent."""
    clock = Clock()
    limiter = AddressLimiter(RateLimits(handshakes_per_ip=Rate(2, burst=2)), clock)
    assert limiter.admit("10.0.0.1") is None
    assert limiter.admit("10.0.0.1") is None
    wait = limiter.admit("10.0.0.1")
    assert wait == pytest.approx(0.5)
    assert limiter.admit("10.0.0.2") is None
    clock.advance(0.5)
    assert limiter.admit("10.0.0.1") is None


def test_address_limiter_open_connections() -> None:
    """At most N open per address; a release frees a slot; counts never go negative."""
    limiter = AddressLimiter(RateLimits(connections_per_ip=2), Clock())
    assert limiter.admit("a") is None and limiter.admit("a") is None
    assert limiter.admit("a") == 1.0
    assert limiter.open_count("a") == 2
    limiter.release("a")
    assert limiter.admit("a") is None
    for _ in range(5):
        limiter.release("a")
    assert limiter.open_count("a") == 0
    limiter.release("never-seen")


def test_address_limiter_memory_is_bounded() -> None:
    """Many addresses never grow the table past ``max_tracked``; full buckets go first."""
    clock = Clock()
    limiter = AddressLimiter(RateLimits(handshakes_per_ip=Rate(1)), clock, max_tracked=100)
    for i in range(10_000):
        limiter.admit(f"10.0.{i // 256}.{i % 256}")
        assert len(limiter._buckets) <= 100
    clock.advance(10)  # all refilled: pruning empties the table
    limiter.admit("192.0.2.1")
    limiter._prune(clock())
    assert len(limiter._buckets) <= 1


def test_address_keys_group_ipv6_by_prefix() -> None:
    """IPv4 addresses are their own key; IPv6 ones their /64 (or the configured prefix)."""
    limiter = AddressLimiter(RateLimits(connections_per_ip=1))
    assert limiter.key("192.0.2.7") == "192.0.2.7"
    assert limiter.key("2001:db8::1") == limiter.key("2001:db8::ffff:1") == "2001:db8::/64"
    assert limiter.admit("2001:db8::1") is None and limiter.admit("2001:db8::2") == 1.0
    limiter.release("2001:db8::2")  # the same slot: the /64's one connection
    assert limiter.open_count("2001:db8::3") == 0
    wide = AddressLimiter(RateLimits(connections_per_ip=1, ipv6_prefix=48))
    assert wide.key("2001:db8:0:1::1") == "2001:db8::/48"
    with pytest.raises(ConfigError):
        RateLimits(ipv6_prefix=129)
