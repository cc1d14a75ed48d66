"""Requests per second per token: a token bucket per user, with the clock passed in.

Each user's bucket holds up to ``burst`` requests and refills at ``rate`` per second. A request
takes one; an empty bucket answers 429 with QStash's ``Burst-RateLimit-*`` headers, which the
official SDKs turn into their rate-limit error (the Python SDK: ``RateLimitExceededError``).
``rate`` 0 turns the limiter off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["RateLimiter", "TokenBucket", "Verdict"]

# Unix times near 1.7e9 keep ~1e-7 s of precision: a token that is "just back" may be 0.9999999.
_EPSILON = 1e-6


@dataclass(frozen=True, slots=True)
class Verdict:
    """One request's answer: allowed or not, and the values of the rate-limit headers."""

    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # Unix seconds by which the next request will be allowed

    def headers(self) -> dict[str, str]:
        return {
            "Burst-RateLimit-Limit": str(self.limit),
            "Burst-RateLimit-Remaining": str(self.remaining),
            "Burst-RateLimit-Reset": str(self.reset_at),
        }


@dataclass(slots=True)
class TokenBucket:
    rate: float  # tokens per second, > 0
    burst: int  # capacity, >= 1
    tokens: float
    updated: float  # the clock's value at the last refill

    @classmethod
    def full(cls, rate: float, burst: int, now: float) -> TokenBucket:
        return cls(rate=rate, burst=burst, tokens=float(burst), updated=now)

    def take(self, now: float) -> Verdict:
        # A clock that steps back refills nothing (and never drains the bucket).
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate)
        self.updated = max(self.updated, now)
        allowed = self.tokens >= 1.0 - _EPSILON
        if allowed:
            self.tokens = max(0.0, self.tokens - 1.0)
        wait = 0.0 if self.tokens >= 1.0 - _EPSILON else (1.0 - self.tokens) / self.rate
        return Verdict(
            allowed=allowed,
            limit=self.burst,
            remaining=int(self.tokens + _EPSILON),
            reset_at=math.ceil(self.updated + wait),
        )


class RateLimiter:
    """A bucket per key (user id); buckets are created full on first use."""

    def __init__(self, rate: float, burst: int) -> None:
        if rate < 0 or (rate > 0 and burst < 1):
            raise ValueError("rate must be >= 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def check(self, key: str, now: float) -> Verdict | None:
        """The verdict for one request by ``key`` at ``now``; None when the limiter is off."""
        if not self.enabled:
            return None
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket.full(self.rate, self.burst, now)
        return bucket.take(now)
