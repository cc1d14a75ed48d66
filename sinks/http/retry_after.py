"""A destination's own answer to "when may I retry?" (qstash-api.md §5.4).

A failing response may carry ``Retry-After``, ``X-RateLimit-Reset``,
``X-RateLimit-Reset-Requests`` or ``X-RateLimit-Reset-Tokens``. The first of these
present (in that order) decides; a present but blank value counts as absent. Its value
may be seconds (``120``, ``1.5``), an HTTP date (``Wed, 21 Oct 2015 07:28:00 GMT``) or
a Go duration (``6m5s``, ``1.5s``, ``300ms``; units ns us µs ms s m h).

The answer is a delay in milliseconds from ``now_ms``, rounded up to whole
milliseconds so we never come back earlier than asked; ``0`` means retry now. A
negative value, one above ``RETRY_AFTER_CAP_S``, or one that cannot be read gives
``None``: the caller then uses its normal backoff. An HTTP date has one-second
resolution, so a date within the second before ``now_ms`` means "now"; an older one
is stale and gives ``None``.
"""

import email.utils
import math
import re
from collections.abc import Mapping
from datetime import UTC
from decimal import Decimal, InvalidOperation
from typing import Final

from kafstash.schemas.defaults import RETRY_AFTER_CAP_S

__all__ = ["RETRY_AFTER_HEADERS", "retry_after_ms"]

RETRY_AFTER_HEADERS: Final = (
    "retry-after",
    "x-ratelimit-reset",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
)

_CAP_MS: Final = RETRY_AFTER_CAP_S * 1000
_MAX_VALUE_LENGTH: Final = 64  # longer than any date or sane duration
_HTTP_DATE_RESOLUTION_MS: Final = 1000

_SECONDS: Final = re.compile(r"\d+(?:\.\d+)?", re.ASCII)
# Go's time.ParseDuration grammar without the sign: one or more <number><unit>.
# "ms" is listed before "m" so that "300ms" is not read as 300 minutes and an "s".
_DURATION_PART: Final = r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)"
_DURATION: Final = re.compile(rf"\+?(?:{_DURATION_PART})+", re.ASCII)
_DURATION_PARTS: Final = re.compile(_DURATION_PART, re.ASCII)
_UNIT_MS: Final = {
    "ns": Decimal("0.000001"),
    "us": Decimal("0.001"),
    "µs": Decimal("0.001"),  # U+00B5 MICRO SIGN
    "μs": Decimal("0.001"),  # U+03BC GREEK SMALL LETTER MU
    "ms": Decimal(1),
    "s": Decimal(1000),
    "m": Decimal(60_000),
    "h": Decimal(3_600_000),
}


def retry_after_ms(headers: Mapping[str, str], now_ms: int) -> int | None:
    """The delay the response asks for, in ms from ``now_ms``, or ``None`` to back off."""
    present = {name.lower(): value for name, value in headers.items()}
    for name in RETRY_AFTER_HEADERS:
        value = present.get(name, "").strip()
        if value:
            return _parse(value, now_ms)
    return None


def _parse(value: str, now_ms: int) -> int | None:
    if len(value) > _MAX_VALUE_LENGTH:
        return None
    delay: int | None
    if _SECONDS.fullmatch(value):
        delay = _whole_ms(Decimal(value) * 1000)
    elif _DURATION.fullmatch(value):
        delay = _duration_ms(value)
    else:
        delay = _http_date_delay_ms(value, now_ms)
    if delay is None or delay < 0 or delay > _CAP_MS:
        return None
    return delay


def _whole_ms(ms: Decimal) -> int:
    return math.ceil(ms)


def _duration_ms(value: str) -> int | None:
    total = Decimal(0)
    for number, unit in _DURATION_PARTS.findall(value):
        try:
            total += Decimal(number) * _UNIT_MS[unit]
        except InvalidOperation:
            return None
    return _whole_ms(total)


def _http_date_delay_ms(value: str, now_ms: int) -> int | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # A zone-less date ("-0000") is read as UTC; HTTP dates are always GMT.
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delay = round(when.timestamp() * 1000) - now_ms
    if -_HTTP_DATE_RESOLUTION_MS < delay < 0:
        return 0
    return delay
