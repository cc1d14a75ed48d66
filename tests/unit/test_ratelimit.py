"""The per-token bucket, driven by a fake clock."""

from __future__ import annotations

import pytest

from kafstash.producers.api.ratelimit import RateLimiter, TokenBucket

T0 = 1_700_000_000.0


def test_a_full_bucket_allows_a_burst_then_refuses() -> None:
    bucket = TokenBucket.full(rate=2.0, burst=3, now=T0)

    verdicts = [bucket.take(T0) for _ in range(4)]

    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.remaining for v in verdicts] == [2, 1, 0, 0]
    assert all(v.limit == 3 for v in verdicts)
    # Empty at T0: one token back after 0.5 s, so the next request is allowed by T0 + 1 (ceil).
    assert verdicts[-1].reset_at == int(T0) + 1


def test_tokens_come_back_at_the_rate_and_never_past_the_burst() -> None:
    bucket = TokenBucket.full(rate=1.0, burst=2, now=T0)
    assert bucket.take(T0).allowed
    assert bucket.take(T0).allowed
    assert not bucket.take(T0 + 0.5).allowed

    assert bucket.take(T0 + 1.0).allowed  # one token back after a second
    assert not bucket.take(T0 + 1.0).allowed

    later = bucket.take(T0 + 3600)  # an hour idle refills to the burst, no more
    assert later.allowed
    assert later.remaining == 1


def test_a_clock_stepping_back_neither_refills_nor_breaks_the_bucket() -> None:
    bucket = TokenBucket.full(rate=10.0, burst=1, now=T0)
    assert bucket.take(T0).allowed

    assert not bucket.take(T0 - 100).allowed
    assert bucket.take(T0 + 0.1).allowed


def test_fractional_rates() -> None:
    bucket = TokenBucket.full(rate=0.1, burst=1, now=T0)  # one request every 10 s
    assert bucket.take(T0).allowed

    refused = bucket.take(T0 + 1)

    assert not refused.allowed
    assert refused.reset_at == int(T0) + 10
    assert not bucket.take(T0 + 9.9).allowed
    assert bucket.take(T0 + 10).allowed


def test_the_limiter_keeps_one_bucket_per_key() -> None:
    limiter = RateLimiter(rate=1.0, burst=1)

    a1 = limiter.check("alice", T0)
    a2 = limiter.check("alice", T0)
    b1 = limiter.check("bob", T0)

    assert a1 is not None
    assert a1.allowed
    assert a2 is not None
    assert not a2.allowed
    assert b1 is not None
    assert b1.allowed


def test_rate_zero_is_off() -> None:
    limiter = RateLimiter(rate=0, burst=0)

    assert not limiter.enabled
    assert all(limiter.check("alice", T0) is None for _ in range(1000))


def test_headers_are_qstash_s() -> None:
    verdict = TokenBucket.full(rate=1.0, burst=5, now=T0).take(T0)

    assert verdict.headers() == {
        "Burst-RateLimit-Limit": "5",
        "Burst-RateLimit-Remaining": "4",
        "Burst-RateLimit-Reset": str(int(T0)),
    }


@pytest.mark.parametrize(("rate", "burst"), [(-1.0, 1), (1.0, 0)])
def test_bad_settings_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate, burst)
