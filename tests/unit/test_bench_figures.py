"""The benchmark's pure arithmetic: ratios, missing figures, flat JSON keys (never its speed)."""

import json
import math

import pytest

from benchmarks.run.figures import (
    merge,
    nonce_phase,
    number,
    per_message_us,
    quantiles,
    rate_key,
    ratio,
    tally_by_phase,
)


def test_ratio_is_value_over_baseline() -> None:
    assert ratio(3_000, 30_000) == 0.1
    assert ratio(1, 3) == 0.3333


@pytest.mark.parametrize(
    ("a", "b"), [(None, 1.0), (1.0, None), (math.nan, 1.0), (1.0, math.nan), (1.0, 0.0), (1, -2)]
)
def test_ratio_of_a_missing_or_empty_figure_is_none(a: float | None, b: float | None) -> None:
    assert ratio(a, b) is None


def test_number_rounds_and_drops_what_was_not_measured() -> None:
    assert number(1.23456) == 1.235
    assert number(1234.56, 1) == 1234.6
    assert number(None) is None
    assert number(math.nan) is None
    assert number(math.inf) is None


def test_rate_keys_name_the_rate_without_a_decimal_point() -> None:
    assert rate_key("publish_p99_ms", 1000) == "publish_p99_ms_1000"
    assert rate_key("e2e_p99_ms", 200.0) == "e2e_p99_ms_200"


def test_merge_is_flat_and_json_safe() -> None:
    out = merge({"publish_rps": 1.0}, {"streams_rps": None, "cpu_us_per_msg": {"api": 2.5}})
    assert out == {"publish_rps": 1.0, "streams_rps": None, "cpu_us_per_msg": {"api": 2.5}}
    assert json.loads(json.dumps(out, allow_nan=False)) == out


def test_two_phases_claiming_one_key_is_an_error() -> None:
    with pytest.raises(ValueError, match="publish_rps"):
        merge({"publish_rps": 1.0}, {"publish_rps": 2.0})


def test_a_nonce_names_its_phase() -> None:
    assert nonce_phase("bl.2.17") == "bl"
    assert nonce_phase("e2e.41") == "e2e"
    assert nonce_phase("nodot") == "nodot"


def test_tally_by_phase_counts_records_and_distinct_nonces() -> None:
    nonces = ["bl.1.1", "bl.1.2", "bl.1.2", "pipe.2.1", "e2e.0", "e2e.0", "e2e.0"]
    assert tally_by_phase(nonces) == {"bl": (3, 2), "pipe": (1, 1), "e2e": (3, 1)}


def test_tally_of_nothing_is_empty() -> None:
    assert tally_by_phase([]) == {}


def test_cpu_per_message_is_cpu_time_over_messages_in_microseconds() -> None:
    cpu = {"api": 0.5, "streams": 2.0, "sink": 0.0}
    assert per_message_us(cpu, 1_000) == {"api": 500.0, "streams": 2000.0}


def test_cpu_per_message_without_messages_is_empty() -> None:
    assert per_message_us({"api": 1.0}, 0) == {}


def test_quantiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 1..100, unsorted
    assert quantiles(values) == (50.0, 99.0, 100.0)
    assert quantiles([7.0]) == (7.0, 7.0, 7.0)


def test_quantiles_of_nothing_are_missing_figures() -> None:
    p50, p99, worst = quantiles([])
    assert all(math.isnan(x) for x in (p50, p99, worst))
    assert number(p99) is None
