"""The soak's open-loop generator and the ledger arithmetic over what the sink received.

The generator sends request i at ``t0 + i / rate`` whatever the earlier requests are doing, and
every latency counts from that **intended** time, not from when the request actually left. If
the server (or the generator itself) stalls, the requests that should have gone out meanwhile
are charged the stall, which is what a real client population would see (no coordinated
omission; reliability-notes §5).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

_MAX_US = 600_000_000  # 10 min: anything slower is clamped, and shows as max


def histogram() -> HdrHistogram:
    return HdrHistogram(1, _MAX_US, 3)


def record(h: HdrHistogram, ns: int) -> None:
    h.record_value(min(_MAX_US, max(1, ns // 1000)))


def pct_ms(h: HdrHistogram, p: float) -> float:
    return h.get_value_at_percentile(p) / 1000 if h.get_total_count() else float("nan")


@dataclass
class LoadResult:
    rate: float
    seconds: float
    planned: int = 0
    sent: int = 0
    late: int = 0  # left more than 5 ms after the intended time: the generator fell behind
    max_late_ms: float = 0.0
    dropped: int = 0  # not sent: too many requests already in flight
    intended: dict[str, int] = field(default_factory=dict)  # nonce -> intended monotonic ns
    acked: set[str] = field(default_factory=set)
    outcomes: Counter[str] = field(default_factory=Counter)  # "201", "503", "ClientError", ...
    answer: HdrHistogram = field(default_factory=histogram)  # intended → 2xx answer, acked only
    # actual send → 2xx answer: the gap to ``answer`` is time lost before the request left
    answer_from_send: HdrHistogram = field(default_factory=histogram)
    first_intended_ns: int = 0
    last_sent_ns: int = 0


async def open_loop(
    session: aiohttp.ClientSession,
    url: str,
    *,
    rate: float,
    seconds: float,
    body_bytes: int,
    headers: dict[str, str],
    prefix: str,
    max_in_flight: int = 5000,
    timeout_s: float = 30.0,
) -> LoadResult:
    """POST ``int(rate * seconds)`` bodies ``"<prefix><i> xxx..."`` to ``url`` on a timetable."""
    res = LoadResult(rate=rate, seconds=seconds, planned=int(rate * seconds))
    interval_ns = round(1e9 / rate)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    pad = b"x" * body_bytes
    tasks: set[asyncio.Task[None]] = set()

    async def one(nonce: str, intended_ns: int) -> None:
        body = (nonce.encode() + b" " + pad)[: max(body_bytes, len(nonce) + 1)]
        started = time.monotonic_ns()
        try:
            async with session.post(url, data=body, headers=headers, timeout=timeout) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            res.outcomes[type(exc).__name__] += 1
            return
        res.outcomes[str(status)] += 1
        if 200 <= status < 300:
            done = time.monotonic_ns()
            record(res.answer, done - intended_ns)
            record(res.answer_from_send, done - started)
            res.acked.add(nonce)

    t0 = time.monotonic_ns() + 50_000_000
    res.first_intended_ns = t0
    for i in range(res.planned):
        intended = t0 + i * interval_ns
        wait = intended - time.monotonic_ns()
        if wait > 0:
            await asyncio.sleep(wait / 1e9)
        elif -wait > 5_000_000:
            res.late += 1
            res.max_late_ms = max(res.max_late_ms, -wait / 1e6)
        nonce = f"{prefix}{i}"
        res.intended[nonce] = intended
        if len(tasks) >= max_in_flight:
            res.dropped += 1
            res.outcomes["dropped"] += 1
            continue
        task = asyncio.create_task(one(nonce, intended))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        res.sent += 1
    res.last_sent_ns = time.monotonic_ns()
    if tasks:
        await asyncio.wait(tasks)
    return res


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


def tally(load: LoadResult, arrivals: dict[str, list[int]], window_s: float) -> Tally:
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
