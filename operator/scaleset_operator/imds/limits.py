"""How often one instance may call the endpoint: the Instance Metadata Service's own limit.

"In general, requests to IMDS are limited to 5 requests per second (on a per VM basis). Requests
exceeding this threshold will be rejected with 429 responses." (Azure Instance Metadata Service,
"Rate limiting"). Each instance (by pod uid) gets at most `limit` requests in any `period` seconds;
time comes in as an argument, so the rule is tested with an explicit clock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

REQUESTS_PER_SECOND = 5
MAX_BODY_BYTES = 64 * 1024


@dataclass
class RequestRate:
    """A sliding window per instance: a request is allowed when fewer than `limit` came in the last `period`."""

    limit: int = REQUESTS_PER_SECOND
    period: float = 1.0
    _seen: dict[str, deque[float]] = field(default_factory=dict)

    def allow(self, instance: str, now: float) -> float | None:
        """None when the request may go on (and is counted); else the seconds until one would be allowed."""
        times = self._seen.setdefault(instance, deque())
        while times and times[0] <= now - self.period:
            times.popleft()
        if len(times) >= self.limit:
            return max(0.0, times[0] + self.period - now)
        times.append(now)
        if len(self._seen) > 4096:
            self._forget_idle(now)
        return None

    def _forget_idle(self, now: float) -> None:
        """Instances with nothing in the window hold no memory (instances come and go)."""
        for instance in [
            key for key, times in self._seen.items() if not times or times[-1] <= now - self.period
        ]:
            del self._seen[instance]


def retry_after(seconds: float) -> str:
    """The Retry-After header's whole seconds (at least 1)."""
    return str(max(1, math.ceil(seconds)))
