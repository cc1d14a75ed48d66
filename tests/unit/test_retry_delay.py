"""The Upstash-Retry-Delay expression language: values, clamping and rejected input."""

import time

import pytest

from kafstash.schemas.retry_delay import (
    MAX_EXPRESSION_LENGTH,
    MAX_RETRY_DELAY_MS,
    InvalidRetryDelay,
    RetryDelay,
    parse_retry_delay,
)

DAY_MS = 86_400_000


@pytest.mark.parametrize(
    ("expr", "retried", "expected"),
    [
        ("1000*retried", 0, 0),
        ("1000*retried", 1, 1000),
        ("1000*retried", 3, 3000),
        ("pow(2, retried)*100", 0, 100),
        ("pow(2, retried)*100", 1, 200),
        ("pow(2, retried)*100", 5, 3200),
        ("max(1000, retried*500)", 0, 1000),
        ("max(1000, retried*500)", 2, 1000),
        ("max(1000, retried*500)", 4, 2000),
        ("min(5000, 1000 + retried * 1000)", 2, 3000),
        ("min(5000, 1000 + retried * 1000)", 9, 5000),
        ("2 ** retried * 1000", 3, 8000),
        ("(retried + 1) * (retried + 2) * 10", 2, 120),
        ("1000 - retried * 100", 4, 600),
        ("10000 / (retried + 1)", 2, 3333),
        ("10 % 4 * 100", 0, 200),
        ("sqrt(16) * 250", 0, 1000),
        ("abs(-3) * 1000", 0, 3000),
        ("exp(retried) * 1000", 1, 2718),
        ("floor(2.7) * 1000", 0, 2000),
        ("ceil(2.1) * 1000", 0, 3000),
        ("round(2.5) * 1000", 0, 3000),
        ("round(2.4) * 1000", 0, 2000),
        ("max(retried, 1, 2, 3) * 1000", 7, 7000),
        ("min(4)", 0, 4),
        ("-(-7)", 0, 7),
        ("+7", 0, 7),
        ("1.5e3", 0, 1500),
        ("  1000 * retried  ", 2, 2000),
        ("1000 * retried # a comment", 2, 2000),
        ("1999.9", 0, 1999),
    ],
)
def test_values(expr: str, retried: int, expected: int) -> None:
    assert parse_retry_delay(expr).delay_ms(retried) == expected


@pytest.mark.parametrize(
    ("expr", "retried", "expected"),
    [
        ("-5", 0, 0),
        ("100 - retried * 1000", 3, 0),
        ("1e12", 0, DAY_MS),
        ("86400000", 0, DAY_MS),
        ("86400001", 0, DAY_MS),
        ("pow(10, retried)", 300, DAY_MS),
        ("pow(10, retried)", 400, DAY_MS),
        ("pow(-10, retried)", 401, 0),
        ("exp(1000)", 0, DAY_MS),
        ("-exp(1000)", 0, 0),
        ("1e308 * 10", 0, DAY_MS),
        ("1" + "0" * 250, 0, DAY_MS),
        ("1 / 0", 0, DAY_MS),
        ("-1 / 0", 0, 0),
        ("0 / 0", 0, 0),
        ("5 % 0", 0, 0),
        ("sqrt(-1)", 0, 0),
        ("pow(-8, 1/3)", 0, 0),
        ("pow(0, -1)", 0, DAY_MS),
        ("exp(1000) - exp(1000)", 0, 0),
        ("max(1000, 0/0)", 0, 0),
    ],
)
def test_clamped_to_zero_and_a_day(expr: str, retried: int, expected: int) -> None:
    assert MAX_RETRY_DELAY_MS == DAY_MS
    assert parse_retry_delay(expr).delay_ms(retried) == expected


def test_power_tower_is_capped_quickly() -> None:
    started = time.perf_counter()
    delay = parse_retry_delay("9**9**9").delay_ms(0)
    assert delay == DAY_MS
    assert parse_retry_delay("pow(9, pow(9, pow(9, 9)))").delay_ms(0) == DAY_MS
    assert parse_retry_delay("(retried+9)**(retried+9)**(retried+9)").delay_ms(5) == DAY_MS
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("__import__('os')", "may be called"),
        ("__import__('os').system('true')", "may be called"),
        ("().__class__", "not allowed"),
        ("().__class__.__bases__[0].__subclasses__()", "may be called"),
        ("retried.real", "not allowed"),
        ("'a'*9", "only numbers"),
        ("b'a'", "only numbers"),
        ("lambda: 1", "not allowed"),
        ("(lambda: 1)()", "may be called"),
        ("x", "unknown name 'x'"),
        ("retried + os", "unknown name 'os'"),
        ("open", "unknown name"),
        ("eval('1')", "may be called"),
        ("True", "only numbers"),
        ("None", "only numbers"),
        ("1j", "only numbers"),
        ("...", "only numbers"),
        ("1 < 2", "not allowed"),
        ("1 if retried else 2", "not allowed"),
        ("not retried", "not allowed"),
        ("~retried", "not allowed"),
        ("retried // 2", "not allowed"),
        ("retried << 2", "not allowed"),
        ("retried & 1", "not allowed"),
        ("[1]", "not allowed"),
        ("(1, 2)", "not allowed"),
        ("{1: 2}", "not allowed"),
        ("retried[0]", "not allowed"),
        ("f'{retried}'", "not allowed"),
        ("(y := 1)", "not allowed"),
        ("[c for c in ()]", "not allowed"),
        ("max(*[1, 2])", "not allowed"),
        ("max(a=1)", "positional"),
        ("pow(2)", "takes 2 argument"),
        ("pow(2, 3, 4)", "takes 2 argument"),
        ("sqrt()", "takes 1 argument"),
        ("max()", "at least 1"),
        ("retried()", "may be called"),
        ("math.pow(2, 3)", "may be called"),
        ("", "empty"),
        ("   ", "empty"),
        ("1 +", "not a valid expression"),
        ("1; 2", "not a valid expression"),
        ("import os", "not a valid expression"),
        ("1\x00", "not a valid expression"),
        ("1" * (MAX_EXPRESSION_LENGTH + 1), "longer than 256"),
        ("-" * 200 + "1", "deeper than 64"),
        ("1+" * 64 + "1", "deeper than 64"),
        ("2**" * 70 + "2", "deeper than 64"),
        ("(" * 30 + "-" * 70 + "1" + ")" * 30, "deeper than 64"),
    ],
)
def test_rejected(expr: str, message: str) -> None:
    with pytest.raises(InvalidRetryDelay, match=message):
        parse_retry_delay(expr)


def test_invalid_retry_delay_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown name"):
        parse_retry_delay("y")


def test_longest_allowed_expression() -> None:
    expr = "1000+" + "+".join(["retried"] * 31)
    expr = expr.ljust(MAX_EXPRESSION_LENGTH)
    assert len(expr) == MAX_EXPRESSION_LENGTH
    assert parse_retry_delay(expr).delay_ms(2) == 1062


def test_long_flat_sums_and_nested_calls_are_not_too_deep() -> None:
    assert parse_retry_delay("1+" * 62 + "1").delay_ms(0) == 63
    assert parse_retry_delay("abs(" * 40 + "-5" + ")" * 40).delay_ms(0) == 5


def test_keeps_the_expression_and_compares_by_it() -> None:
    delay = parse_retry_delay("1000*retried")
    assert isinstance(delay, RetryDelay)
    assert delay.expression == "1000*retried"
    assert delay == parse_retry_delay("1000*retried")
    assert delay != parse_retry_delay("1000 * retried")
    assert "1000*retried" in repr(delay)
