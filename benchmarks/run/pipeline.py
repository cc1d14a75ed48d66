"""Phase 4, the pipeline: every role running, wrk publishes a fixed number as fast as it can.

The figure is the arrival rate at the sink: count ÷ (last arrival - wrk start), with the
publish rate meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass

from benchmarks.run.baselines import Baselines
from benchmarks.run.context import Bench
from benchmarks.run.drains import SECTION
from benchmarks.run.figures import Figures, number, per_message_us, ratio
from benchmarks.run.publish import Publish
from benchmarks.run.report import Row, fmt_rate, fmt_ratio
from benchmarks.run.sink import sink_stats, sink_total
from benchmarks.run.wrk import run_wrk


@dataclass(frozen=True)
class Pipeline:
    published: int  # requests the API appended in the phase
    publish_rate: float | None  # wrk's 2xx/s while every role ran
    rate: float | None  # arrivals/s at the sink
    note: str
    arrived: int
    cpu: dict[str, float] = dataclasses.field(default_factory=dict)  # CPU-µs per arrival


async def run(bench: Bench) -> Pipeline:
    name = f"pipeline: wrk publishes {bench.prof.pipeline_n:,}, every role running"
    pipe = await bench.phase(name, _measure(bench))
    cpu = per_message_us(bench.spans[name].seconds, pipe.arrived)
    return dataclasses.replace(pipe, cpu=cpu)


async def _measure(bench: Bench) -> Pipeline:
    assert bench.stack
    assert bench.sink
    sink = bench.sink
    p = bench.prof
    requests = bench.topics.requests
    before = await bench.offsets.total(requests)
    t0_ns = time.monotonic_ns()
    w = await run_wrk(
        bench.procs,
        bench.stack.base_url,
        bench.publish_path("pipe"),
        seconds=60,
        body_bytes=len(bench.body),
        nonce_prefix="pipe.",
        headers=bench.auth,
        workdir=bench.workdir,
        until=bench.reached(requests, before + p.pipeline_n),
    )
    # wrk is interrupted with up to its connection count of publishes in flight, which the API
    # still appends (and the sender delivers) after wrk's exit: count them too, or they read as
    # extra arrivals (the "63 duplicates" of issue 10 were these).
    published = await settled(bench, requests) - before

    async def got() -> int:
        return sink_total(await sink_stats(bench.session, sink), ("pipe",))

    _s, done = await bench.wait_until(
        got, published, bench.drain_cap(bench.reserve_after_pipeline())
    )
    count, _first, last = (await sink_stats(bench.session, sink)).get("pipe", [0, 0, 0])
    window = (last - t0_ns) / 1e9 if count else 0.0
    rate = count / window if window > 0 else None
    note = (
        f"{published} published by wrk in {w.seconds:.1f}s, {count} arrived, the last "
        f"{window:.1f}s after wrk started" + ("" if done else " (CUT by the time budget)")
    )
    return Pipeline(published, w.ok_rate if not w.error else None, rate, note, count)


async def settled(bench: Bench, topic: str, quiet_s: float = 1.0, cap_s: float = 15.0) -> int:
    """The topic's record count once it stopped growing for ``quiet_s`` (at most ``cap_s``)."""
    deadline = time.monotonic() + cap_s
    last = await bench.offsets.total(topic)
    while time.monotonic() < deadline:
        await asyncio.sleep(quiet_s)
        now = await bench.offsets.total(topic)
        if now == last:
            break
        last = now
    return last


def rows(pipe: Pipeline, pub: Publish, base: Baselines) -> list[Row]:
    return [
        Row(
            SECTION,
            "pipeline: arrivals/s, all roles, wrk publishing",
            fmt_rate(pipe.rate),
            "wrk → same sink",
            fmt_rate(base.sink_rate),
            fmt_ratio(pipe.rate, base.sink_rate),
        ),
        Row(
            SECTION,
            "  publishes/s meanwhile",
            fmt_rate(pipe.publish_rate),
            "publishes/s (API alone)",
            fmt_rate(pub.rate),
            fmt_ratio(pipe.publish_rate, pub.rate),
        ),
    ]


def figures(pipe: Pipeline, pub: Publish, base: Baselines) -> Figures:
    return {
        "pipeline_rps": number(pipe.rate, 1),
        "pipeline_vs_wrk_sink": ratio(pipe.rate, base.sink_rate),
        "pipeline_publish_rps": number(pipe.publish_rate, 1),
        "pipeline_publish_vs_publish": ratio(pipe.publish_rate, pub.rate),
        "cpu_us_per_msg": pipe.cpu,
    }
