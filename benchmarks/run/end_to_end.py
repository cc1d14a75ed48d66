"""Phase 5, end-to-end latency: publish ack → sink receipt, delay 0, open loop, every role up.

Each body starts with a nonce. The generator stamps the 2xx with ``time.monotonic_ns()`` and
the sink stamps the receipt with the same clock (system-wide on Linux), so e2e = receipt - ack.
The deliveries topic is then read back to split that time into two hops by Kafka CreateTime.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiokafka import ConsumerRecord
from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

from benchmarks.harness import OpenLoopResult, histogram, pct_ms
from benchmarks.run.context import BUDGET, Bench, Profile
from benchmarks.run.figures import Figures, number, rate_key
from benchmarks.run.kafka import read_to_end
from benchmarks.run.publish import Publish
from benchmarks.run.report import Row, fmt_ms, fmt_ratio
from kafstash.schemas import codec
from kafstash.schemas.commands import DeliveryDue


@dataclass(frozen=True)
class EndToEnd:
    publish: OpenLoopResult
    hist: HdrHistogram  # ack → receipt, µs
    missing: int  # acknowledged, not received in time
    negative: int  # received before the ack was read
    hops: str


async def run(bench: Bench) -> EndToEnd:
    p = bench.prof
    return await bench.phase(f"end-to-end: open-loop {p.e2e_rate}/s", _measure(bench))


async def _measure(bench: Bench) -> EndToEnd:
    assert bench.stack
    assert bench.sink
    p = bench.prof
    res = await bench.open_loop(
        f"{bench.stack.base_url}{bench.publish_path('e2e')}",
        rate=p.e2e_rate,
        seconds=p.e2e_s,
        headers=bench.auth,
        prefix="e2e.",
    )
    deadline = time.monotonic() + min(15.0, max(3.0, bench.left() - 25))
    while True:
        async with bench.session.get(f"{bench.sink.base}/_e2e") as resp:
            recv: dict[str, list[int]] = await resp.json()
        if all(k in recv for k in res.acks) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    hist = histogram()
    missing = neg = 0
    for nonce, t_ack in res.acks.items():
        got = recv.get(nonce)
        if got is None:
            missing += 1
            continue
        if got[0] < t_ack:
            neg += 1
        hist.record_value(max(1, (got[0] - t_ack) // 1000))
    hops = await _hops(bench, {k: v[1] for k, v in recv.items()})
    return EndToEnd(res, hist, missing, neg, hops)


async def _hops(bench: Bench, recv_wall_ns: dict[str, int]) -> str:
    """Where end-to-end time goes, from Kafka record timestamps (wall clock, ms).

    created (API accepted) → DeliveryDue record (stream workers' producer) → sink receipt.
    """
    a_hops: list[float] = []
    b_hops: list[float] = []

    def hop(rec: ConsumerRecord) -> None:
        if rec.value and b"/e2e/m" in rec.value:
            due = codec.decode(rec.value, DeliveryDue)
            nonce = due.message.body.split(b" ", 1)[0].decode()
            if nonce in recv_wall_ns:
                a_hops.append(rec.timestamp - due.message.created_at)
                b_hops.append(recv_wall_ns[nonce] / 1e6 - rec.timestamp)

    await read_to_end(bench.bootstrap, bench.topics.deliveries, hop, deadline_s=20)
    if not a_hops:
        return "no DeliveryDue records found for the e2e messages"

    def q(xs: list[float]) -> str:
        xs = sorted(xs)
        p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
        return f"p50 {xs[len(xs) // 2]:.0f} ms, p99 {p99:.0f} ms"

    return (
        f"API accepted → DeliveryDue appended by the stream workers: {q(a_hops)}; "
        f"DeliveryDue appended → sink receipt (sender): {q(b_hops)} "
        f"({len(a_hops)} messages, Kafka CreateTime, 1 ms resolution)"
    )


def rows(e2e: EndToEnd, pub: Publish, prof: Profile) -> list[Row]:
    section = f"3. End-to-end (publish ack → sink receipt, delay 0, {prof.e2e_rate}/s open-loop)"
    out = []
    for label, key, q in (("p50", "e2e_p50", 50), ("p99", "e2e_p99", 99)):
        v = pct_ms(e2e.hist, q)
        out.append(
            Row(
                section,
                f"end-to-end {label}",
                fmt_ms(v),
                "budget (design.md, at 500/s)",
                fmt_ms(BUDGET[key]),
                fmt_ratio(v, BUDGET[key]),
            )
        )
    low = prof.open_rates[0]
    for label, q in (("p50", 50), ("p99", 99)):
        v, b = e2e.publish.pct(q), pub.latency[low].pct(q)
        out.append(
            Row(
                section,
                f"publish {label}, every role running",
                fmt_ms(v),
                f"API alone @ {low}/s",
                fmt_ms(b),
                fmt_ratio(v, b),
            )
        )
    return out


def notes(e2e: EndToEnd) -> list[str]:
    h = e2e.hist
    if h.get_total_count():
        joined = (
            f"e2e: {h.get_total_count()} joined by nonce, {e2e.missing} not received in "
            f"time, {e2e.negative} received before the ack; p90/p99.9/max "
            f"{pct_ms(h, 90):.1f}/{pct_ms(h, 99.9):.1f}/{h.get_max_value() / 1000:.1f} ms"
        )
    else:
        joined = f"e2e: nothing joined ({e2e.missing} not received in time)"
    return [joined, f"e2e hops: {e2e.hops}"]


def figures(e2e: EndToEnd, prof: Profile) -> Figures:
    out: Figures = {}
    for label, q in (("p50", 50), ("p99", 99), ("p999", 99.9)):
        out[rate_key(f"e2e_{label}_ms", prof.e2e_rate)] = number(pct_ms(e2e.hist, q))
    for label, q in (("p50", 50), ("p99", 99)):
        out[rate_key(f"e2e_publish_{label}_ms", prof.e2e_rate)] = number(e2e.publish.pct(q))
    out["e2e_acked"] = e2e.publish.ok
    out["e2e_missing"] = e2e.missing
    return out
