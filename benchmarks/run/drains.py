"""Phase 3, each stage alone drains a fixed backlog: the stream workers, then the sender.

With only the API up on the main stack, wrk publishes the backlog. The raw aiokafka
pass-through (``kafka.raw_passthrough``) reads it first, in a group of its own: the same-run
ceiling of a Python stage between two topics. Then the stream workers
start (requests → DeliveryDue records/s, from the deliveries topic's end offsets), then the
sender (deliveries/s, from the sink's first and last arrival). Each rate counts from the first
record out, so start-up (faust rebalance, consumer join) is left out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.harness import CpuMeter
from benchmarks.run.baselines import Baselines
from benchmarks.run.context import PARTITIONS, Bench
from benchmarks.run.figures import Figures, number, per_message_us, ratio
from benchmarks.run.kafka import raw_passthrough
from benchmarks.run.publish import Publish
from benchmarks.run.report import Row, fmt_rate, fmt_ratio
from benchmarks.run.sink import sink_stats, sink_total
from benchmarks.run.wrk import WrkResult, run_wrk
from kafstash.config import Settings
from kafstash.sinks.http.sender import SenderConfig

SECTION = "2. Delivery (to a counting uvicorn sink)"


@dataclass(frozen=True)
class Drains:
    wrk: WrkResult  # publishing the backlog
    backlog: int
    passthrough_rate: float | None  # raw aiokafka pass-through over the same backlog
    passthrough_note: str
    streams_rate: float | None
    streams_note: str
    sender_rate: float | None
    sender_note: str
    # CPU-µs per message by process: pass-through per record, stream workers per DeliveryDue,
    # sender per delivery (the last two from their first output on: start-up left out).
    passthrough_cpu: dict[str, float]
    streams_cpu: dict[str, float]
    sender_cpu: dict[str, float]

    def note(self) -> str:
        return (
            f"backlog of {self.backlog} messages: {self.passthrough_note}; {self.streams_note}; "
            f"{self.sender_note}"
        )


def rate_of(samples: list[tuple[float, int]]) -> float | None:
    """Rate from the last sample still at zero (the start) to the last sample."""
    zero = [t for t, v in samples if v == 0]
    moving = [(t, v) for t, v in samples if v > 0]
    if not moving:
        return None
    t0 = zero[-1] if zero else samples[0][0]
    t1, v1 = moving[-1]
    return v1 / (t1 - t0) if t1 > t0 else None


async def run(bench: Bench) -> Drains:
    p = bench.prof
    bench.stack = stack = bench.new_stack("main")
    await bench.start_api(stack)
    bench.topics = topics = Settings.from_env(stack.env).topics
    wrk = await bench.phase(
        f"backlog: wrk publishes {p.backlog:,} (API alone)",
        run_wrk(
            bench.procs,
            stack.base_url,
            bench.publish_path("bl"),
            seconds=60,
            body_bytes=len(bench.body),
            nonce_prefix="bl.",
            headers=bench.auth,
            workdir=bench.workdir,
            until=bench.reached(topics.requests, p.backlog),
        ),
    )
    await asyncio.sleep(0.3)  # requests wrk left in flight are still appended
    backlog = await bench.offsets.total(topics.requests)
    bench.log(f"{backlog} publish requests waiting in {topics.requests}")
    name = "baseline: raw aiokafka pass-through (requests → a topic)"
    passthrough_rate, passthrough_note, passed = await bench.phase(
        name, passthrough(bench, backlog)
    )
    passthrough_cpu = per_message_us(bench.spans[name].seconds, passed)
    streams_rate, streams_note, streams_cpu = await bench.phase(
        "streams: drain backlog (stream workers alone)", drain_streams(bench, backlog)
    )
    sender_rate, sender_note, sender_cpu = await bench.phase(
        "delivery: drain backlog (sender alone)", drain_sender(bench, backlog)
    )
    return Drains(
        wrk,
        backlog,
        passthrough_rate,
        passthrough_note,
        streams_rate,
        streams_note,
        sender_rate,
        sender_note,
        passthrough_cpu,
        streams_cpu,
        sender_cpu,
    )


async def passthrough(bench: Bench, backlog: int) -> tuple[float | None, str, int]:
    """The same backlog through ``raw_passthrough``, into a topic of this stack's prefix."""
    assert bench.stack
    target = f"{bench.stack.prefix}.bench-passthrough"
    admin = AIOKafkaAdminClient(bootstrap_servers=bench.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(target, PARTITIONS, 1)])
    finally:
        await admin.close()
    cap = bench.drain_cap(bench.reserve() + 2 * backlog / 400)
    rate, done = await raw_passthrough(bench.bootstrap, bench.topics.requests, target, backlog, cap)
    note = f"raw pass-through: {done} records"
    if done < backlog:
        note += f", CUT at {done}/{backlog} (time budget)"
    return rate, note, done


async def _drain(
    bench: Bench, role: str, got: Callable[[], Awaitable[int]], target: int, cap: float
) -> tuple[list[tuple[float, int]], bool, float | None, dict[str, float]]:
    """Start ``role``, wait for its first output (start-up, not profiled), then for ``target``.

    Returns the samples, whether ``target`` was reached, when the first output came, and the
    CPU-µs per output of each process from then on.
    """
    assert bench.stack
    started = time.monotonic()
    bench.stack.start_role(role)
    samples, _ = await bench.wait_until(got, 1, cap)
    meter = CpuMeter(bench.pids)
    cpu0, out0 = meter.start(), samples[-1][1]
    detach = await bench.pyspy.attach(role, bench.stack.procs[role].pid)
    more, done = await bench.wait_until(got, target, cap - (time.monotonic() - started))
    samples += more
    cpu = per_message_us(meter.span(cpu0).seconds, samples[-1][1] - out0)
    await detach()
    first = next((t - started for t, v in samples if v > 0), None)
    return samples, done, first, cpu


async def drain_streams(bench: Bench, backlog: int) -> tuple[float | None, str, dict[str, float]]:
    assert bench.stack

    async def got() -> int:
        return await bench.offsets.total(bench.topics.deliveries)

    cap = bench.drain_cap(bench.reserve() + backlog / 400)
    samples, done, first, cpu = await _drain(bench, "streams", got, backlog, cap)
    note = (
        f"stream workers: first delivery {first:.1f}s after start"
        if first is not None
        else "stream workers: no delivery"
    )
    if not done:
        note += f", CUT at {samples[-1][1]}/{backlog} (time budget)"
        bench.log(f"stream workers did not finish; log ends:\n{bench.stack.tail('streams')}")
    return rate_of(samples), note, cpu


async def drain_sender(bench: Bench, backlog: int) -> tuple[float | None, str, dict[str, float]]:
    assert bench.stack
    assert bench.sink
    sink = bench.sink

    async def got() -> int:
        return sink_total(await sink_stats(bench.session, sink), ("bl",))

    samples, done, first, cpu = await _drain(
        bench, "sender", got, backlog, bench.drain_cap(bench.reserve())
    )
    note = (
        f"sender: first arrival {first:.1f}s after start"
        if first is not None
        else "sender: no arrival"
    )
    if not done:
        note += f", CUT at {samples[-1][1]}/{backlog} (time budget)"
        bench.log(f"sender did not finish; its log ends:\n{bench.stack.tail('sender')}")
    # The sink's own first/last arrival stamps bound the drain window more precisely.
    count, t_first, t_last = (await sink_stats(bench.session, sink)).get("bl", [0, 0, 0])
    if count > 1 and t_last > t_first:
        return (count - 1) / ((t_last - t_first) / 1e9), note, cpu
    return rate_of(samples), note, cpu


def rows(d: Drains, pub: Publish, base: Baselines, aiohttp_rate: float | None) -> list[Row]:
    return [
        Row(
            SECTION,
            "stream workers alone: requests → deliveries/s",
            fmt_rate(d.streams_rate),
            "publishes/s (API alone)",
            fmt_rate(pub.rate),
            fmt_ratio(d.streams_rate, pub.rate),
        ),
        Row(
            SECTION,
            "  same",
            fmt_rate(d.streams_rate),
            "raw aiokafka pass-through (getmany → send → commit)",
            fmt_rate(d.passthrough_rate),
            fmt_ratio(d.streams_rate, d.passthrough_rate),
        ),
        Row(
            SECTION,
            "sender alone: deliveries/s (backlog drain)",
            fmt_rate(d.sender_rate),
            "wrk → same sink",
            fmt_rate(base.sink_rate),
            fmt_ratio(d.sender_rate, base.sink_rate),
        ),
        Row(
            SECTION,
            "  same",
            fmt_rate(d.sender_rate),
            f"bare aiohttp client, same sink, c={SenderConfig.concurrency}",
            fmt_rate(aiohttp_rate),
            fmt_ratio(d.sender_rate, aiohttp_rate),
        ),
    ]


def figures(d: Drains, pub: Publish, base: Baselines, aiohttp_rate: float | None) -> Figures:
    """``aiohttp_rate``: the bare aiohttp client at the sender's concurrency, same sink."""
    return {
        "backlog": d.backlog,
        "streams_rps": number(d.streams_rate, 1),
        "streams_vs_publish": ratio(d.streams_rate, pub.rate),
        "passthrough_rps": number(d.passthrough_rate, 1),
        "streams_vs_passthrough": ratio(d.streams_rate, d.passthrough_rate),
        "sender_rps": number(d.sender_rate, 1),
        "sender_vs_wrk_sink": ratio(d.sender_rate, base.sink_rate),
        "sender_vs_aiohttp": ratio(d.sender_rate, aiohttp_rate),
        "cpu_us_per_msg_passthrough": d.passthrough_cpu,
        "cpu_us_per_msg_streams_alone": d.streams_cpu,
        "cpu_us_per_msg_sender_alone": d.sender_cpu,
    }
