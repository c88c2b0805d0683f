"""A per-key token bucket, in this process's memory.

With N server processes each keeps its own buckets, so a key's effective limit
is N times the configured one; a bucket shared through the database would be
the alternative. Off unless TASKS_RATE_LIMIT is set.
"""

from __future__ import annotations

import threading
import time


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; each request takes one."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Take a token: 0.0 when there was one, else the seconds until there is."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, then = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
