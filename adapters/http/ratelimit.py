"""A per-key token bucket, in this process's memory.

With N server processes each keeps its own buckets, so a key's effective limit
is N times the configured one; a bucket shared through the database would be
the alternative. Off unless TASKS_RATE_LIMIT is set.
"""

from __future__ import annotations

import math
import threading
import time

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.http.errors import error_response


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


class RateLimitMiddleware:
    """429 with Retry-After once a key has used up its bucket; runs after authentication."""

    def __init__(self, app: ASGIApp, rate: float, burst: int) -> None:
        self.app = app
        self.bucket = TokenBucket(rate, burst or max(1, math.ceil(rate * 2))) if rate > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope.get("user")
        principal = getattr(user, "principal", None)
        if self.bucket is None or scope["type"] != "http" or principal is None:
            await self.app(scope, receive, send)
            return
        wait = self.bucket.take(principal.key_id)
        if wait == 0.0:
            await self.app(scope, receive, send)
            return
        retry_after = max(1, math.ceil(wait))
        response = error_response(
            HTTPConnection(scope),  # type: ignore[arg-type]
            429, "rate_limited",
            f"this key is over its limit of {self.bucket.rate:g} requests a second; retry after {retry_after} s",
            {"limit": self.bucket.rate, "burst": self.bucket.burst, "retryAfter": retry_after},
            {"Retry-After": str(retry_after)},
        )
        await response(scope, receive, send)
