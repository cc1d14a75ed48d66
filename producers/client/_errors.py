"""Every error the kafstash client raises, under one root.

::

    KafstashError                      root: ``except KafstashError`` catches everything below
    ├── ApiError(status, message)      the server answered with a non-2xx status
    │   ├── Unauthorized               401: missing or wrong token
    │   ├── NotFound                   404: unknown message, schedule, queue ...
    │   └── RateLimitError             429: slow down (``retry_after``, ``limit``, ``reset``)
    ├── NetworkError                   no answer at all: connect/read failure or timeout
    ├── ProtocolError                  a 2xx answer that is not the shape qstash-api.md §8 says
    ├── InvalidArgument                refused before sending (also a ``ValueError``)
    └── SignatureError                 Receiver: the ``Upstash-Signature`` does not verify

Callers branch on the ``retryable`` flag, never on a message: it is true for 429, 5xx and
network failures. A retried publish may be stored twice unless it carries a deduplication id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

__all__ = [
    "ApiError",
    "InvalidArgument",
    "KafstashError",
    "NetworkError",
    "NotFound",
    "ProtocolError",
    "RateLimitError",
    "SignatureError",
    "Unauthorized",
    "api_error",
]


class KafstashError(Exception):
    """Root of every error the client and the receiver raise."""

    retryable: bool = False


class ApiError(KafstashError):
    """A non-2xx answer; ``message`` is the ``error`` of QStash's ``{"error": "..."}`` body."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.retryable = status == 429 or status >= 500


class Unauthorized(ApiError):
    """401: the token is missing or unknown."""


class NotFound(ApiError):
    """404: no such message, schedule, queue, URL group or DLQ entry for this token."""


class RateLimitError(ApiError):
    """429: QStash's ``RateLimit-*`` (daily) or ``Burst-RateLimit-*`` headers, when sent."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        retry_after: float | None = None,
        limit: str | None = None,
        remaining: str | None = None,
        reset: str | None = None,
    ) -> None:
        super().__init__(status, message, retry_after=retry_after)
        self.limit = limit
        self.remaining = remaining
        self.reset = reset


class NetworkError(KafstashError):
    """The request got no answer (connection refused, reset, timeout)."""

    retryable = True


class ProtocolError(KafstashError):
    """The server answered 2xx with a body the QStash contract does not allow."""


class InvalidArgument(KafstashError, ValueError):
    """An argument was refused before anything was sent (bad duration, non-UTF-8 batch body)."""


class SignatureError(KafstashError):
    """The ``Upstash-Signature`` of a delivery does not verify with either signing key."""


_BY_STATUS: dict[int, type[ApiError]] = {401: Unauthorized, 404: NotFound}


def _message(status: int, body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text or f"HTTP {status}"
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return str(parsed["error"])
    return text


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: the caller can still read the raw header from `reset`
    return seconds if seconds >= 0 else None


def api_error(status: int, headers: Mapping[str, str], body: bytes) -> ApiError:
    """The error for one non-2xx answer; ``headers`` must be case-insensitive (httpx.Headers)."""
    message = _message(status, body)
    retry_after = _seconds(headers.get("retry-after"))
    if status == 429:
        prefix = "ratelimit-" if "ratelimit-limit" in headers else "burst-ratelimit-"
        return RateLimitError(
            status,
            message,
            retry_after=retry_after,
            limit=headers.get(prefix + "limit"),
            remaining=headers.get(prefix + "remaining"),
            reset=headers.get(prefix + "reset"),
        )
    return _BY_STATUS.get(status, ApiError)(status, message, retry_after=retry_after)
