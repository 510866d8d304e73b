"""Requests per token: one token bucket per key, refilled at a steady rate.

A bucket holds up to ``burst`` requests and refills at ``rate_per_s``; a request takes one.
An empty bucket refuses with the time until the next request would be allowed, which the API
sends as ``Retry-After``. The buckets live in this process's memory: each coordinator process
counts on its own.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable

from coordinator.errors import RateLimited

_EPSILON = 1e-9
MAX_BUCKETS = 100_000
"""Past this many keys, buckets that have refilled completely are forgotten."""


@dataclasses.dataclass
class _Bucket:
    tokens: float
    updated_s: float


class TokenBuckets:
    """Thread-safe token buckets; ``rate_per_s`` 0 turns limiting off."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = MAX_BUCKETS,
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = max(1, burst)
        self._clock = clock
        self._max_buckets = max_buckets
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def wait_s(self, key: str) -> float:
        """Take one request from ``key``'s bucket: 0.0 if allowed, else seconds to wait."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self._max_buckets:
                    self._forget_full(now)
                bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            bucket.tokens = min(
                float(self.burst), bucket.tokens + (now - bucket.updated_s) * self.rate_per_s
            )
            bucket.updated_s = now
            # The epsilon forgives float rounding: a client that waited exactly the answered
            # time must get through.
            if bucket.tokens >= 1.0 - _EPSILON:
                bucket.tokens = max(0.0, bucket.tokens - 1.0)
                return 0.0
            return (1.0 - bucket.tokens) / self.rate_per_s

    def check(self, key: str, who: str) -> None:
        """Raise ``RateLimited`` if ``key`` has no request left right now."""
        wait_s = self.wait_s(key)
        if wait_s > 0:
            raise RateLimited(
                f"too many requests from {who}: the limit is {self.rate_per_s:g} per second "
                f"(bursts of {self.burst}); retry in {wait_s:.2f} s",
                retry_after_s=round(wait_s, 3),
            )

    def _forget_full(self, now: float) -> None:
        refill_s = self.burst / self.rate_per_s
        stale = [k for k, b in self._buckets.items() if now - b.updated_s >= refill_s]
        for key in stale:
            del self._buckets[key]
