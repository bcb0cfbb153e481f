"""The reconnection policy: exponential backoff with jitter (no I/O, no clock).

``Reconnect`` only computes delays; the client sleeps them. Attempt numbers
start at 1 for the first reconnection attempt after a connection was lost,
and start over once a connection is welcomed again.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

from wirehub.exceptions import ConfigError

__all__ = ["Reconnect"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Reconnect:
    """How a client waits between reconnection attempts.

    The delay before attempt ``n`` is ``initial_delay * factor ** (n - 1)``,
    capped at ``max_delay``, then drawn uniformly from
    ``[delay * (1 - jitter), delay]`` so that many clients dropped at once by
    a restarting server do not come back at the same instant. ``jitter=0``
    makes delays exact; ``jitter=1`` is "full jitter" (anywhere from 0).
    ``max_attempts=None`` retries forever; ``0`` never reconnects.
    """

    initial_delay: float = 0.5
    """Delay before the first attempt, in seconds (before jitter)."""
    max_delay: float = 30.0
    """Upper bound of any delay, in seconds."""
    factor: float = 2.0
    """Growth of the delay from one attempt to the next (>= 1)."""
    jitter: float = 0.5
    """Fraction of each delay that is randomized, from 0 to 1."""
    max_attempts: int | None = None
    """Attempts after one connection loss before giving up; None: no limit."""

    def __post_init__(self) -> None:
        if self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise ConfigError("Reconnect needs 0 <= initial_delay <= max_delay")
        if self.factor < 1:
            raise ConfigError("Reconnect.factor must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ConfigError("Reconnect.jitter is a fraction between 0 and 1")
        if self.max_attempts is not None and self.max_attempts < 0:
            raise ConfigError("Reconnect.max_attempts is None or >= 0")

    def allows(self, attempt: int) -> bool:
        """Whether attempt number ``attempt`` (1 for the first) may be made."""
        return self.max_attempts is None or attempt <= self.max_attempts

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before attempt ``attempt`` (1 for the first).

        ``rand`` returns a float in ``[0, 1)``; pass a fixed one for exact delays.
        """
        if attempt < 1:
            raise ValueError("attempts are numbered from 1")
        # Grow step by step and stop at the cap: factor ** (attempt - 1)
        # overflows a float after about a thousand attempts.
        base = self.initial_delay
        for _ in range(attempt - 1):
            base *= self.factor
            if base >= self.max_delay:
                break
        base = min(base, self.max_delay)
        return base * (1 - self.jitter * rand())
