"""The backoff policy: exponential growth, the cap, jitter bounds, attempt limits."""

from __future__ import annotations

import pytest

from wirehub.client import Reconnect
from wirehub.exceptions import ConfigError


def test_delays_grow_exponentially_up_to_the_cap() -> None:
    """Without jitter, delays are initial * factor**(n-1), capped at max_delay."""
    policy = Reconnect(initial_delay=0.5, factor=2, max_delay=3, jitter=0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_draws_from_the_lower_fraction_of_each_delay() -> None:
    """With jitter j, a delay d becomes a value in [d * (1 - j), d]."""
    policy = Reconnect(initial_delay=1, factor=2, max_delay=10, jitter=0.5)
    assert policy.delay(2, rand=lambda: 0.0) == 2.0
    assert policy.delay(2, rand=lambda: 0.999999) == pytest.approx(1.0, abs=1e-5)
    assert 1.0 <= policy.delay(2) <= 2.0


def test_full_jitter_can_reach_zero() -> None:
    """jitter=1 is "full jitter": anywhere from 0 to the delay."""
    policy = Reconnect(initial_delay=4, max_delay=4, jitter=1)
    assert policy.delay(1, rand=lambda: 0.75) == 1.0


def test_huge_attempt_numbers_do_not_overflow() -> None:
    """The delay of the millionth attempt is the cap, not an OverflowError."""
    assert Reconnect(jitter=0).delay(1_000_000) == 30.0


def test_max_attempts_limits_attempts() -> None:
    """max_attempts=N allows attempts 1..N; None allows any; 0 allows none."""
    assert Reconnect(max_attempts=2).allows(2)
    assert not Reconnect(max_attempts=2).allows(3)
    assert Reconnect(max_attempts=None).allows(10**9)
    assert not Reconnect(max_attempts=0).allows(1)


def test_attempts_are_numbered_from_one() -> None:
    """Asking for the delay of attempt 0 is a programming error."""
    with pytest.raises(ValueError):
        Reconnect().delay(0)


@pytest.mark.parametrize(
    "options",
    [
        {"initial_delay": -1},
        {"initial_delay": 5, "max_delay": 1},
        {"factor": 0.5},
        {"jitter": 1.5},
        {"max_attempts": -1},
    ],
)
def test_invalid_policies_are_refused(options: dict[str, float]) -> None:
    """A policy that cannot work raises ConfigError when it is built."""
    with pytest.raises(ConfigError):
        Reconnect(**options)  # type: ignore[arg-type]
