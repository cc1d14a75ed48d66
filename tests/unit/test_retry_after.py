"""Retry-After and the rate-limit reset headers: forms, precedence, caps."""

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from kafstash.sinks.http.retry_after import RETRY_AFTER_HEADERS, retry_after_ms

# Wed, 21 Oct 2015 07:27:30 GMT, plus 250 ms
NOW_MS = int(datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC).timestamp()) * 1000 + 250
DAY_MS = 86_400_000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # seconds
        ("120", 120_000),
        ("0", 0),
        ("1.5", 1_500),
        ("0.0001", 1),  # rounded up: never earlier than asked
        ("86400", DAY_MS),
        (" 30 ", 30_000),
        ("86401", None),
        ("-5", None),
        ("-0.5", None),
        ("1e3", None),
        ("0x10", None),
        # Go durations
        ("6m5s", 365_000),
        ("1.5s", 1_500),
        ("300ms", 300),
        ("2h", 7_200_000),
        ("1h30m", 5_400_000),
        ("1h0m0s", 3_600_000),
        ("24h", DAY_MS),
        ("23h59m60s", DAY_MS),
        ("24h0m0.001s", None),
        ("25h", None),
        ("0s", 0),
        ("20ms", 20),
        ("1m0.5s", 60_500),
        (".5s", 500),
        ("500us", 1),
        ("1500\u00b5s", 2),  # micro sign
        ("2000\u03bcs", 2),  # greek mu
        ("3000000ns", 3),
        ("+10s", 10_000),
        ("-10s", None),
        ("10", 10_000),
        ("10x", None),
        ("10 s", None),
        ("s", None),
        ("1d", None),
        # HTTP dates (RFC 1123 and the obsolete forms email.utils reads)
        ("Wed, 21 Oct 2015 07:28:00 GMT", 29_750),
        ("Wed, 21 Oct 2015 07:27:31 GMT", 750),
        ("Wed, 21 Oct 2015 07:27:30 GMT", 0),  # within the current second: now
        ("Wed, 21 Oct 2015 07:27:29 GMT", None),  # stale
        ("Wed, 21 Oct 2015 08:27:30 +0100", 0),
        ("Wed, 21 Oct 2015 07:28:00 -0000", 29_750),
        ("Thu, 22 Oct 2015 07:27:30 GMT", DAY_MS - 250),
        ("Fri, 23 Oct 2015 07:27:30 GMT", None),
        ("Wed, 21 Oct 2015 25:61:00 GMT", None),
        # junk
        ("soon", None),
        ("", None),
        ("9" * 100, None),
        ("1h" * 40, None),
    ],
)
def test_forms(value: str, expected: int | None) -> None:
    assert retry_after_ms({"Retry-After": value}, NOW_MS) == expected


def test_http_date_from_formatter() -> None:
    when = datetime.fromtimestamp((NOW_MS + 90_750) / 1000, tz=UTC)
    assert retry_after_ms({"Retry-After": format_datetime(when, usegmt=True)}, NOW_MS) == 90_750


@pytest.mark.parametrize("name", [*RETRY_AFTER_HEADERS, "Retry-After", "X-RATELIMIT-RESET"])
def test_each_header_is_read_case_insensitively(name: str) -> None:
    assert retry_after_ms({name: "7"}, NOW_MS) == 7_000
    assert retry_after_ms({name.upper(): "7s"}, NOW_MS) == 7_000


def test_header_order() -> None:
    assert RETRY_AFTER_HEADERS == (
        "retry-after",
        "x-ratelimit-reset",
        "x-ratelimit-reset-requests",
        "x-ratelimit-reset-tokens",
    )


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Content-Type": "text/plain", "RateLimit-Reset": "5"}, None),
        ({"X-RateLimit-Reset-Tokens": "4s", "X-RateLimit-Reset-Requests": "3s"}, 3_000),
        ({"X-RateLimit-Reset-Requests": "3s", "X-RateLimit-Reset": "2"}, 2_000),
        ({"x-ratelimit-reset": "2", "retry-after": "1"}, 1_000),
        ({"X-RateLimit-Reset-Tokens": "6m0s"}, 360_000),
        # the first present header decides, even when it cannot be read
        ({"Retry-After": "later", "X-RateLimit-Reset": "2"}, None),
        ({"Retry-After": "90000", "X-RateLimit-Reset": "2"}, None),
        # a blank value counts as absent
        ({"Retry-After": "  ", "X-RateLimit-Reset": "2"}, 2_000),
    ],
)
def test_precedence(headers: dict[str, str], expected: int | None) -> None:
    assert retry_after_ms(headers, NOW_MS) == expected
