"""The default backoff: min(86400, e^(2.5 n)) seconds before retry n."""

import math

import pytest

from kafstash.sinks.http.backoff import default_backoff_ms


@pytest.mark.parametrize(
    ("retried", "expected_ms"),
    [
        (0, 12_182),  # retry 1: ~12 s
        (1, 148_413),  # retry 2: ~2 m 28 s
        (2, 1_808_042),  # retry 3: ~30 m 8 s
        (3, 22_026_466),  # retry 4: ~6 h 7 m
        (4, 86_400_000),  # retry 5: capped at a day
        (5, 86_400_000),
        (19, 86_400_000),
    ],
)
def test_documented_table(retried: int, expected_ms: int) -> None:
    assert default_backoff_ms(retried) == expected_ms


def test_matches_the_formula() -> None:
    for retried in range(4):
        n = retried + 1
        assert default_backoff_ms(retried) == round(min(86_400, math.exp(2.5 * n)) * 1000)


def test_table_in_human_units() -> None:
    assert divmod(default_backoff_ms(1) // 1000, 60) == (2, 28)
    assert divmod(default_backoff_ms(2) // 1000, 60) == (30, 8)
    assert divmod(default_backoff_ms(3) // 60_000, 60) == (6, 7)


def test_never_decreases_and_huge_counts_do_not_overflow() -> None:
    delays = [default_backoff_ms(r) for r in range(50)]
    assert delays == sorted(delays)
    assert default_backoff_ms(10**9) == 86_400_000


def test_negative_retried_is_a_bug() -> None:
    with pytest.raises(ValueError, match="retried must be >= 0"):
        default_backoff_ms(-1)
