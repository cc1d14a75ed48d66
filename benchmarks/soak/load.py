"""The soak's ledger: what the sink received, judged against what the generator sent.

The generator is ``benchmarks.harness.open_loop``; every latency counts from the intended send
time (no coordinated omission; reliability-notes §5).
"""

from __future__ import annotations

from dataclasses import dataclass

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

from benchmarks.harness import OpenLoopResult, histogram, pct_ms, record


@dataclass
class Tally:
    """What arrived, judged against what was sent and acknowledged (counts of distinct nonces)."""

    acked: int
    delivered: int  # acked nonces that arrived at least once
    lost: int  # acked, never arrived
    duplicated: int  # arrivals beyond the first, any nonce of this run
    recovered: int  # arrived though the publish was not acknowledged (error or timeout)
    unexpected: int  # arrived, never sent
    e2e: HdrHistogram  # intended send → first arrival, acked nonces
    windows: list[tuple[float, int, float, float, float]]  # (start s, n, p50, p99, max) in ms
    last_arrival_ns: int


def tally(load: OpenLoopResult, arrivals: dict[str, list[int]], window_s: float) -> Tally:
    e2e = histogram()
    by_window: dict[int, HdrHistogram] = {}
    t0 = min(load.intended.values(), default=0)
    for nonce in load.acked:
        got = arrivals.get(nonce)
        if got is None:
            continue
        took = got[0] - load.intended[nonce]
        record(e2e, took)
        w = int((load.intended[nonce] - t0) / 1e9 // window_s)
        record(by_window.setdefault(w, histogram()), took)
    windows = [
        (
            w * window_s,
            h.get_total_count(),
            pct_ms(h, 50),
            pct_ms(h, 99),
            h.get_max_value() / 1000,
        )
        for w, h in sorted(by_window.items())
    ]
    ours = {n: v for n, v in arrivals.items() if n in load.intended}
    return Tally(
        acked=len(load.acked),
        delivered=len(load.acked & ours.keys()),
        lost=len(load.acked - ours.keys()),
        duplicated=sum(count - 1 for _first, count in ours.values()),
        recovered=len(ours.keys() - load.acked),
        unexpected=len(arrivals.keys() - load.intended.keys()),
        e2e=e2e,
        windows=windows,
        last_arrival_ns=max((first for first, _c in ours.values()), default=0),
    )
