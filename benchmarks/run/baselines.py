"""Phase 1, the baselines: what the same machine does without kafstash, measured in this run.

``wrk`` against the hello-world app and against the sink (the HTTP ceilings), the raw aiokafka
producer with the API's settings and records of the API's size (pipelined, then as the API
uses it: ``WRK_CONNS`` tasks that each await their ack), and the open-loop generator against
hello-world (the latency floor of generator + HTTP).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.harness import OpenLoopResult, delete_topics
from benchmarks.run.context import PARTITIONS, WRK_CONNS, Bench
from benchmarks.run.figures import Figures, number, rate_key
from benchmarks.run.kafka import raw_concurrent, raw_pipelined, sample_record
from benchmarks.run.wrk import WrkResult, run_wrk

PLAIN = {"Content-Type": "text/plain"}


@dataclass(frozen=True)
class Baselines:
    wrk_hello: WrkResult
    wrk_sink: WrkResult
    raw_rate: float  # raw producer, pipelined, records/s
    raw_conc: float  # raw producer, WRK_CONNS tasks x send_and_wait, records/s
    record_bytes: int  # size of the records the raw producer sent (the API's)
    hello_lat: dict[int, OpenLoopResult]  # open-loop rate -> result against hello-world

    @property
    def hello_rate(self) -> float | None:
        return self.wrk_hello.ok_rate if not self.wrk_hello.error else None

    @property
    def sink_rate(self) -> float | None:
        return self.wrk_sink.ok_rate if not self.wrk_sink.error else None


async def wrk_to(bench: Bench, base: str, path: str, seconds: float, nonce: str) -> WrkResult:
    return await run_wrk(
        bench.procs, base, path, seconds=seconds, body_bytes=len(bench.body), nonce_prefix=nonce,
        headers=PLAIN, workdir=bench.workdir,
    )  # fmt: skip


async def run(bench: Bench) -> Baselines:
    p = bench.prof
    assert bench.sink
    assert bench.hello
    wrk_hello = await bench.phase(
        "baseline: wrk → hello-world",
        wrk_to(bench, bench.hello.base, "/hello", p.baseline_s, "wh."),
    )
    wrk_sink = await bench.phase(
        "baseline: wrk → sink", wrk_to(bench, bench.sink.base, "/wrk/m", p.baseline_s, "wrk.")
    )
    raw_topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bench.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(raw_topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    if bench.external:
        bench.procs.add("raw topic", lambda: delete_topics(bench.bootstrap, raw_topic))
    _key, value = sample_record(f"{bench.sink.base}/raw/m", len(bench.body))
    raw_rate = await bench.phase(
        "baseline: raw aiokafka producer, pipelined",
        raw_pipelined(bench.bootstrap, raw_topic, value, p.baseline_s),
    )
    raw_conc = await bench.phase(
        f"baseline: raw aiokafka producer, {WRK_CONNS} tasks x send_and_wait",
        raw_concurrent(bench.bootstrap, raw_topic, value, p.baseline_s, WRK_CONNS),
    )
    hello_lat: dict[int, OpenLoopResult] = {}
    for rate in p.open_rates:
        hello_lat[rate] = await bench.phase(
            f"baseline: open-loop {rate}/s → hello-world",
            bench.open_loop(
                f"{bench.hello.base}/hello", rate=rate, headers=PLAIN, prefix=f"oh{rate}."
            ),
        )
    return Baselines(wrk_hello, wrk_sink, raw_rate, raw_conc, len(value), hello_lat)


def figures(base: Baselines) -> Figures:
    out: Figures = {
        "wrk_hello_rps": number(base.hello_rate, 1),
        "wrk_sink_rps": number(base.sink_rate, 1),
        "raw_producer_rps": number(base.raw_rate, 1),
        "raw_producer_tasks_rps": number(base.raw_conc, 1),
    }
    for rate, lat in base.hello_lat.items():
        for label, q in (("p50", 50), ("p99", 99), ("p999", 99.9)):
            out[rate_key(f"hello_{label}_ms", rate)] = number(lat.pct(q))
    return out
