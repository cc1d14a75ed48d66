"""The ``--json FILE`` figures: plain numbers by flat key, assembled from each phase's part.

Pure functions only (no I/O, no clock), so the arithmetic is unit-tested
(tests/unit/test_bench_figures.py). Keys are documented in benchmarks/README.md ("JSON").
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Figures = dict[str, Any]


def number(x: float | None, digits: int = 3) -> float | None:
    """``x`` rounded, or None when it was not measured (None or NaN)."""
    if x is None or math.isnan(x) or math.isinf(x):
        return None
    return round(x, digits)


def ratio(a: float | None, b: float | None) -> float | None:
    """a ÷ b, or None when either is missing or b is not positive."""
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b <= 0:
        return None
    return round(a / b, 4)


def rate_key(name: str, rate: float) -> str:
    """``publish_p99_ms`` at 1,000/s is ``publish_p99_ms_1000``."""
    return f"{name}_{rate:g}"


def merge(*parts: Mapping[str, Any]) -> Figures:
    """One flat object; two phases claiming one key is a bug, not a silent overwrite."""
    out: Figures = {}
    for part in parts:
        for key, value in part.items():
            if key in out:
                raise ValueError(f"figure {key!r} set twice")
            out[key] = value
    return out


def nonce_phase(nonce: str) -> str:
    """Every benchmark nonce is ``<phase>.<unique part>``: ``bl.2.17`` belongs to ``bl``."""
    return nonce.split(".", 1)[0]


def tally_by_phase(nonces: Iterable[str]) -> dict[str, tuple[int, int]]:
    """phase -> (records, distinct nonces) over one record per nonce occurrence."""
    per_nonce = Counter(nonces)
    out: dict[str, tuple[int, int]] = {}
    for nonce, n in per_nonce.items():
        records, distinct = out.get(nonce_phase(nonce), (0, 0))
        out[nonce_phase(nonce)] = (records + n, distinct + 1)
    return out


def per_message_us(cpu_seconds: Mapping[str, float], messages: int) -> dict[str, float]:
    """CPU-µs each process spent per message: its CPU time over a phase ÷ messages in it.

    Processes that used no CPU are left out; nothing is returned when no message came through.
    """
    if messages <= 0:
        return {}
    return {
        name: round(1e6 * seconds / messages, 1)
        for name, seconds in cpu_seconds.items()
        if seconds > 0
    }


def quantiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(p50, p99, max) of ``values`` by nearest rank; NaN each when there are none (a figure
    not measured, which ``number`` and the report show as missing)."""
    if not values:
        return math.nan, math.nan, math.nan
    xs = sorted(values)

    def rank(q: float) -> float:
        return xs[max(0, math.ceil(q * len(xs)) - 1)]

    return rank(0.50), rank(0.99), xs[-1]
