"""Phase 2, publish with the API alone: sustained publishes/s (wrk) and open-loop latency.

A stack of its own runs only the ``api`` role; nobody consumes its records, so this backlog
never reaches the phases after it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from benchmarks.harness import OpenLoopResult
from benchmarks.run.baselines import Baselines
from benchmarks.run.context import BUDGET, WRK_CONNS, Bench
from benchmarks.run.figures import Figures, number, per_message_us, rate_key, ratio
from benchmarks.run.report import Row, fmt_ms, fmt_rate, fmt_ratio
from benchmarks.run.wrk import WrkResult, run_wrk


@dataclass(frozen=True)
class Publish:
    wrk: WrkResult
    latency: dict[int, OpenLoopResult]  # open-loop rate -> result
    cpu: dict[str, float]  # CPU-µs per accepted publish by process, during the wrk run

    @property
    def rate(self) -> float | None:
        return self.wrk.ok_rate if not self.wrk.error else None


async def run(bench: Bench) -> Publish:
    p = bench.prof
    bench.pub_stack = pub = bench.new_stack("pub")
    await bench.start_api(pub)
    url = f"{pub.base_url}{bench.publish_path('pub')}"
    warm = await bench.open_loop(url, rate=200, seconds=1.0, headers=bench.auth, prefix="warm.")
    if warm.ok == 0:
        raise RuntimeError(f"warm-up publishes failed: {warm.errors}\n{pub.tail('api')}")
    name = "publish: wrk → kafstash (API alone)"
    # Only with --only publish: the whole run profiles the stages that drain, not the API.
    profiled = bench.args.only == "publish"
    detach = await bench.pyspy.attach("api", pub.procs["api"].pid) if profiled else None
    wrk = await bench.phase(
        name,
        run_wrk(
            bench.procs,
            pub.base_url,
            bench.publish_path("pub"),
            seconds=p.publish_s,
            body_bytes=len(bench.body),
            nonce_prefix="pub.",
            headers=bench.auth,
            workdir=bench.workdir,
        ),
    )
    if detach is not None:
        await detach()
    latency: dict[int, OpenLoopResult] = {}
    for rate in p.open_rates:
        latency[rate] = await bench.phase(
            f"publish: open-loop {rate}/s → kafstash (API alone)",
            bench.open_loop(url, rate=rate, headers=bench.auth, prefix=f"pub{rate}."),
        )
    await asyncio.to_thread(pub.stop)
    cpu = per_message_us(bench.spans[name].seconds, wrk.requests - wrk.non2xx)
    return Publish(wrk, latency, cpu)


def rows(pub: Publish, base: Baselines, body_bytes: int) -> list[Row]:
    section = f"1. Publish (POST /v2/publish/<sink>, {body_bytes} B body)"
    out = [
        Row(
            section,
            f"publishes/s, wrk -c{WRK_CONNS} (API alone)",
            fmt_rate(pub.rate),
            "wrk → uvicorn hello-world",
            fmt_rate(base.hello_rate),
            fmt_ratio(pub.rate, base.hello_rate),
        ),
        Row(
            section,
            "  same",
            fmt_rate(pub.rate),
            f"raw aiokafka, pipelined ({base.record_bytes} B records)",
            fmt_rate(base.raw_rate),
            fmt_ratio(pub.rate, base.raw_rate),
        ),
        Row(
            section,
            "  same",
            fmt_rate(pub.rate),
            f"raw aiokafka, {WRK_CONNS} tasks x send_and_wait",
            fmt_rate(base.raw_conc),
            fmt_ratio(pub.rate, base.raw_conc),
        ),
    ]
    for rate, lat in pub.latency.items():
        for label, key, q in (("p50", "publish_p50", 50), ("p99", "publish_p99", 99)):
            v, b = lat.pct(q), base.hello_lat[rate].pct(q)
            out.append(
                Row(
                    section,
                    f"latency {label} @ {rate}/s open-loop (API alone)",
                    fmt_ms(v),
                    "same generator → hello-world",
                    fmt_ms(b),
                    fmt_ratio(v, b),
                )
            )
            out.append(
                Row(
                    section,
                    "",
                    "",
                    "budget (design.md, at 1,000/s)",
                    fmt_ms(BUDGET[key]),
                    fmt_ratio(v, BUDGET[key]),
                )
            )
    return out


def figures(pub: Publish, base: Baselines) -> Figures:
    out: Figures = {
        "publish_rps": number(pub.rate, 1),
        "publish_vs_wrk_hello": ratio(pub.rate, base.hello_rate),
        "publish_vs_raw_producer": ratio(pub.rate, base.raw_rate),
        "publish_vs_raw_producer_tasks": ratio(pub.rate, base.raw_conc),
        "cpu_us_per_msg_publish_alone": pub.cpu,
    }
    for rate, lat in pub.latency.items():
        for label, q in (("p50", 50), ("p99", 99), ("p999", 99.9)):
            out[rate_key(f"publish_{label}_ms", rate)] = number(lat.pct(q))
        out[rate_key("publish_p99_vs_hello", rate)] = ratio(
            lat.pct(99), base.hello_lat[rate].pct(99)
        )
    return out
