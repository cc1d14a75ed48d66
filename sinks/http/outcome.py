"""What one delivery attempt means for the message (qstash-api.md §5.3, §5.4).

:func:`classify` turns the attempt's result into one of three values, which the sender
consumes with an exhaustive ``match``::

    match classify(...):
        case Delivered():
            ...
        case RetryAt(at_ms=at_ms, reason=reason):
            ...
        case DeadLetter(reason=reason):
            ...
        case unreachable:
            assert_never(unreachable)

Rules, in order:

1. any 2xx is delivered;
2. 489 with ``Upstash-NonRetryable-Error: true`` goes to the DLQ at once;
3. a failure with no retries left (``retried >= max_retries``) goes to the DLQ;
4. otherwise the message is retried at ``now_ms`` plus the delay the response asked
   for (``Retry-After`` and friends), else the ``Upstash-Retry-Delay`` expression,
   else the default exponential backoff.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from kafstash.schemas import headers as h
from kafstash.schemas.retry_delay import RetryDelay
from kafstash.sinks.http.backoff import default_backoff_ms
from kafstash.sinks.http.retry_after import retry_after_ms

__all__ = ["DeadLetter", "Delivered", "Outcome", "RetryAt", "classify"]


@dataclass(frozen=True, slots=True)
class Delivered:
    """The destination answered 2xx."""


@dataclass(frozen=True, slots=True)
class RetryAt:
    """The attempt failed; try again at ``at_ms`` (Unix ms)."""

    at_ms: int
    reason: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The message failed for good and moves to the DLQ."""

    reason: str


Outcome = Delivered | RetryAt | DeadLetter


def classify(
    *,
    status: int | None,
    headers: Mapping[str, str],
    error: str | None,
    retried: int,
    max_retries: int,
    retry_delay: RetryDelay | None,
    now_ms: int,
) -> Outcome:
    """Decide what happens after one attempt.

    ``status`` is the HTTP status, or ``None`` when no response came (a transport error
    or a timeout; ``error`` says which). ``headers`` are the response headers (any
    case). ``retried`` is the attempt's ``Upstash-Retried`` value, 0 for the first.
    """
    if status is not None and 200 <= status < 300:
        return Delivered()
    if status == h.NON_RETRYABLE_STATUS and _non_retryable(headers):
        return DeadLetter(reason=f"non-retryable error: HTTP {status}")

    failure = f"HTTP {status}" if status is not None else f"transport error: {error or 'unknown'}"
    if retried >= max_retries:
        attempts = retried + 1
        return DeadLetter(reason=f"retries exhausted after {attempts} attempts; last: {failure}")

    requested = retry_after_ms(headers, now_ms) if status is not None else None
    if requested is not None:
        delay_ms = requested
    elif retry_delay is not None:
        delay_ms = retry_delay.delay_ms(retried)
    else:
        delay_ms = default_backoff_ms(retried)
    return RetryAt(at_ms=now_ms + delay_ms, reason=failure)


def _non_retryable(headers: Mapping[str, str]) -> bool:
    return any(
        name.lower() == h.NON_RETRYABLE_HEADER and value.strip().lower() == "true"
        for name, value in headers.items()
    )
