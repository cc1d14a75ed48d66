"""schemas/cron.py: which expressions are accepted, how they are stored, when they tick."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kafstash.schemas.cron import InvalidCron, next_tick, parse


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def test_standard_five_fields_in_utc() -> None:
    assert next_tick("*/10 * * * *", ms(2026, 1, 1, 0, 3)) == ms(2026, 1, 1, 0, 10)
    assert next_tick("0 4 * * *", ms(2026, 1, 1, 5, 0)) == ms(2026, 1, 2, 4, 0)
    assert next_tick("0 0 * * 1", ms(2026, 1, 1)) == ms(2026, 1, 5)  # the next Monday


def test_next_tick_is_strictly_after() -> None:
    assert next_tick("*/10 * * * *", ms(2026, 1, 1, 0, 10)) == ms(2026, 1, 1, 0, 20)
    assert next_tick("*/10 * * * *", ms(2026, 1, 1, 0, 10) - 1) == ms(2026, 1, 1, 0, 10)


def test_surrounding_whitespace_is_trimmed() -> None:
    # The JS repo's real-service test sent "*/10 * * * * " and read back "*/10 * * * *".
    assert parse("*/10 * * * * ").text == "*/10 * * * *"
    assert parse("\t 0 4 * * *\n").text == "0 4 * * *"


def test_cron_tz_prefix() -> None:
    cron = "CRON_TZ=America/New_York 0 4 * * *"
    assert parse(f" {cron} ").text == cron
    # 04:00 in New York: 09:00 UTC in winter (EST), 08:00 UTC in summer (EDT).
    assert next_tick(cron, ms(2026, 1, 10)) == ms(2026, 1, 10, 9, 0)
    assert next_tick(cron, ms(2026, 7, 10)) == ms(2026, 7, 10, 8, 0)
    assert next_tick("CRON_TZ=UTC 0 4 * * *", ms(2026, 1, 10)) == ms(2026, 1, 10, 4)


def test_six_fields_start_with_seconds() -> None:
    assert parse("*/2 * * * * *").seconds
    assert next_tick("*/2 * * * * *", ms(2026, 1, 1, 0, 0, 1)) == ms(2026, 1, 1, 0, 0, 2)
    assert next_tick("*/2 * * * * *", ms(2026, 1, 1, 0, 0, 2)) == ms(2026, 1, 1, 0, 0, 4)
    assert next_tick("30 0 * * * *", ms(2026, 1, 1, 0, 0, 31)) == ms(2026, 1, 1, 1, 0, 30)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "* * *",
        "* * * * * * *",  # seven fields (years) are not a QStash cron
        "@daily",
        "61 * * * *",
        "* 24 * * *",
        "*/0 * * * *",
        "H * * * *",
        "a b c d e",
        "CRON_TZ=Mars/Base 0 4 * * *",
        "CRON_TZ=America/New_York",
    ],
)
def test_bad_crons_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(InvalidCron, match="cron"):
        parse(bad)
    with pytest.raises(InvalidCron):
        next_tick(bad, 0)
