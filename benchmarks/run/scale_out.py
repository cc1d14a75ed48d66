"""Phase 6, scale-out: the pipeline with one, then two, processes of each role on one cluster.

A stack of its own starts one API, one stream worker and one sender; wrk publishes a fixed
number and the sink's arrival rate is the figure, as in the pipeline phase. Then a second API,
stream worker and sender join (the stream workers and senders share their groups' partitions;
wrk splits its connections between the two APIs) and the same count is published again. On a
2-core box the second processes add no CPU, so the figure shows what the split costs (group
joins, more consumers), not a speed-up; with more cores it is the scale-out rate.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

from benchmarks.run.context import Bench
from benchmarks.run.drains import SECTION
from benchmarks.run.figures import Figures, number, per_message_us, ratio
from benchmarks.run.pipeline import settled
from benchmarks.run.report import Row, fmt_rate, fmt_ratio
from benchmarks.run.sink import sink_stats
from benchmarks.run.wrk import run_wrk
from kafstash.schemas.topics import Topics
from tests.stack import Stack

ROLES = ("streams", "sender")  # started by hand; the API first, through Bench.start_api
_RECOVERED = "streams ready: delay table recovered"


@dataclass(frozen=True)
class Run:
    processes: int  # of each role
    published: int
    arrived: int
    duplicates: int  # sink receipts beyond the first, by nonce
    rate: float | None  # arrivals/s
    note: str
    cpu: dict[str, float] = field(default_factory=dict)  # CPU-µs per arrival, per process


@dataclass(frozen=True)
class ScaleOut:
    runs: tuple[Run, ...]

    def rate(self, processes: int) -> float | None:
        return next((r.rate for r in self.runs if r.processes == processes), None)


async def run(bench: Bench) -> ScaleOut:
    stack = bench.scale_stack = bench.new_stack("scale")
    await bench.start_api(stack)
    for role in ROLES:
        stack.start_role(role)
    await asyncio.to_thread(stack.wait_log, "streams", _RECOVERED, 90)
    await asyncio.to_thread(stack.wait_log, "sender", "sender ready", 60)
    one = await _measure(bench, stack, [stack.base_url], "so1", 1)

    recovered = _count(stack, "streams", _RECOVERED)
    for role in ("api", *ROLES):
        stack.start_second(role)
    await asyncio.to_thread(stack.wait_log, "api2", "api ready", 60)
    await asyncio.to_thread(stack.wait_log, "streams2", _RECOVERED, 90)
    # The first worker gave half its partitions away and recovered the rest again.
    await _until_recovered_again(stack, recovered, 90)
    await asyncio.to_thread(stack.wait_log, "sender2", "sender assigned", 60)
    two = await _measure(bench, stack, [stack.base_url, stack.second_api_url], "so2", 2)
    await asyncio.to_thread(stack.stop)
    return ScaleOut((one, two))


async def _measure(bench: Bench, stack: Stack, urls: list[str], prefix: str, n: int) -> Run:
    requests = Topics(stack.prefix).requests
    name = f"scale-out: pipeline, {n} process{'es' if n > 1 else ''} of each role"
    result = await bench.phase(name, _pipeline(bench, requests, urls, prefix, n))
    cpu = per_message_us(bench.spans[name].seconds, result.arrived)
    return Run(result.processes, result.published, result.arrived, result.duplicates,
               result.rate, result.note, cpu)  # fmt: skip


async def _pipeline(bench: Bench, requests: str, urls: list[str], prefix: str, n: int) -> Run:
    assert bench.sink
    before = await bench.offsets.total(requests)
    target = before + bench.prof.pipeline_n
    t0_ns = time.monotonic_ns()
    runs = await asyncio.gather(
        *(
            run_wrk(
                bench.procs,
                url,
                bench.publish_path(prefix),
                seconds=60,
                body_bytes=len(bench.body),
                nonce_prefix=f"{prefix}.{i}",
                headers=bench.auth,
                workdir=bench.workdir,
                until=bench.reached(requests, target),
            )
            for i, url in enumerate(urls)
        )
    )
    published = await settled(bench, requests) - before

    sink = bench.sink

    async def got() -> int:
        return (await sink_stats(bench.session, sink)).get(prefix, [0])[0]

    _s, done = await bench.wait_until(got, published, max(10.0, published / 200))
    count, _first, last = (await sink_stats(bench.session, sink)).get(prefix, [0, 0, 0])
    receipts = await _receipts(bench, prefix)
    window = (last - t0_ns) / 1e9 if count else 0.0
    rate = count / window if window > 0 else None
    errors = [w.error for w in runs if w.error]
    note = (
        f"{n} process(es) of each role: {published} published by {len(runs)} wrk in "
        f"{max(w.seconds for w in runs):.1f}s, {count} arrived, the last {window:.1f}s after wrk "
        f"started" + ("" if done else " (CUT)") + (f"; wrk: {errors}" if errors else "")
    )
    return Run(n, published, count, receipts[0] - receipts[1], rate, note)


async def _receipts(bench: Bench, prefix: str) -> tuple[int, int]:
    assert bench.sink
    async with bench.session.get(f"{bench.sink.base}/_receipts") as resp:
        data: dict[str, list[int]] = await resp.json()
    receipts, distinct = data.get(prefix, [0, 0])
    return receipts, distinct


def _count(stack: Stack, role: str, text: str) -> int:
    return len(re.findall(re.escape(text), stack.logs[role].read_text(errors="replace")))


async def _until_recovered_again(stack: Stack, before: int, cap_s: float) -> None:
    deadline = time.monotonic() + cap_s
    while _count(stack, "streams", _RECOVERED) <= before:
        if time.monotonic() > deadline:
            raise TimeoutError("the first stream worker did not recover after the join")
        await asyncio.sleep(0.2)


def rows(s: ScaleOut) -> list[Row]:
    one = s.rate(1)
    out = []
    for r in s.runs:
        label = f"scale-out: arrivals/s, {r.processes} process(es) of each role"
        base = ("1 process of each role", fmt_rate(one)) if r.processes > 1 else ("", "")
        ratio_ = fmt_ratio(r.rate, one) if r.processes > 1 else ""
        out.append(Row(SECTION, label, fmt_rate(r.rate), *base, ratio_))
    return out


def figures(s: ScaleOut) -> Figures:
    out: Figures = {}
    for r in s.runs:
        key = f"scaleout_{r.processes}"
        out[f"{key}_rps"] = number(r.rate, 1)
        out[f"{key}_duplicates"] = r.duplicates
        out[f"{key}_not_received"] = max(0, r.published - (r.arrived - r.duplicates))
    out["scaleout_2_vs_1"] = ratio(s.rate(2), s.rate(1))
    return out
