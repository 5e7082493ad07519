"""The back-off between failed passes of a ScaleSet: exponential per ScaleSet, with jitter, after Retry-After."""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

BASE_SECONDS = 1.0
MAX_SECONDS = 300.0
JITTER = 0.1
# An error the server or the network will likely not repeat (a timeout, a 5xx, a 429, a lost connection):
# a pass makes tens of requests, so under a flaky API most passes meet one; retried soon, and never
# slower than every few seconds (client-go's controllers start such retries at 5 ms).
TRANSIENT_BASE_SECONDS = 0.1
TRANSIENT_MAX_SECONDS = 5.0


@dataclass
class FailureBackoff:
    """How long to wait before the next pass of an item whose passes keep failing.

    client-go's workqueue `ItemExponentialFailureRateLimiter`: the n-th failure in a row waits
    base * 2^n, at most `cap` (1 s doubling to 5 minutes); `forget` after a pass that worked starts
    again from `base`. To that, wait.Jitter's spread (up to `jitter` of the delay more), so that many
    ScaleSets refused at the same moment (an API server restart, a quota shared by a namespace) do not
    come back in step, and the server's Retry-After as a floor. The count lives in memory only: it is a
    rate, and an operator restarted starts again at one second.
    """

    base: float = BASE_SECONDS
    cap: float = MAX_SECONDS
    jitter: float = JITTER
    random: Callable[[], float] = random.random
    failures: dict[Hashable, int] = field(default_factory=dict)

    def when(self, item: Hashable, retry_after: float | None = None) -> float:
        """Seconds until the next pass of `item`, which has just failed (once more)."""
        exponent = self.failures.get(item, 0)
        self.failures[item] = exponent + 1
        delay = self.cap if exponent >= 64 else min(self.cap, self.base * 2.0**exponent)
        delay += self.random() * self.jitter * delay
        return max(delay, retry_after or 0.0)

    def forget(self, item: Hashable) -> None:
        """`item` passed: its next failure waits `base` again."""
        self.failures.pop(item, None)

    @classmethod
    def for_transient_errors(cls) -> FailureBackoff:
        """The schedule of passes that failed on an error retrying will likely lift: 0.1 s doubling to 5 s."""
        return cls(base=TRANSIENT_BASE_SECONDS, cap=TRANSIENT_MAX_SECONDS)

    def retries(self, item: Hashable) -> int:
        return self.failures.get(item, 0)
