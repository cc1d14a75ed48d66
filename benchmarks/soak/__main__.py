"""``python -m benchmarks.soak [--rate 200] [--duration 180]``: a kafstash soak on one machine.

1. Starts a Kafka broker (LocalBroker in a temp dir, unless KAFKA_BOOTSTRAP_SERVERS is set; then
   this run's topics are deleted at the end), the soak sink (``benchmarks/soak/sink.py``) and
   kafstash's three roles (tests/stack.py, ``--partitions`` per topic) from this tree.
2. Warm-up: one message published and waited for at the sink, so the stream workers' and the
   sender's group joins stay out of the figures. Then the baseline, same run: the same
   open-loop generator POSTs straight to the sink at the same rate for ``--baseline`` seconds
   (one HTTP hop, no kafstash).
3. Soak: it publishes ``/v2/publish/<sink>/soak/m`` (delay 0) at ``--rate`` for ``--duration``
   seconds, open loop, every latency counted from the intended send time.
4. Drain: it waits until every acknowledged nonce has arrived (or nothing arrives for
   ``--quiet`` seconds, or ``--drain-timeout`` passes), then ``--settle`` more seconds for late
   duplicates.
5. Prints acknowledged, delivered, duplicated, lost, end-to-end latency p50/p99/p99.9/max
   (intended send → first arrival) with the baseline ratio, per-window latency, and CPU per
   process. Exit code 1 if an acknowledged message was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import aiohttp
import uvloop

from benchmarks.harness import (
    CpuMeter,
    OpenLoopResult,
    Procs,
    ServerProcess,
    child_processes,
    delete_topics,
    machine_busy,
    machine_facts,
    open_loop,
    pct_ms,
    start_broker,
)
from benchmarks.soak.load import Tally, tally
from kafstash.schemas.users import DEV_USERS
from tests.stack import Stack

WARM_UP_LIMIT_S = 120


def log(msg: str, began: float) -> None:
    print(f"[{time.monotonic() - began:6.1f}s] {msg}", file=sys.stderr, flush=True)


def start_sink(procs: Procs) -> ServerProcess:
    """benchmarks/soak/sink.py, ready when ``/_count`` answers."""
    argv = [sys.executable, "-m", "benchmarks.soak.sink"]
    return ServerProcess("sink", argv, "/_count", procs)


async def sink_get(session: aiohttp.ClientSession, sink: ServerProcess, what: str) -> dict:  # type: ignore[type-arg]
    async with session.get(f"{sink.base}/{what}") as resp:
        data: dict = await resp.json()  # type: ignore[type-arg]
        return data


async def warm_up(
    session: aiohttp.ClientSession,
    stack: Stack,
    sink: ServerProcess,
    auth: dict[str, str],
    began: float,
) -> None:
    """Publish one message and wait until it arrives: the API is up when /healthz answers, but
    the stream workers and the sender join their groups later; the soak must not time that."""
    async with session.post(
        f"{stack.base_url}/v2/publish/{sink.base}/warm/m", data=b"w0 warm", headers=auth
    ) as resp:
        if resp.status >= 300:
            raise RuntimeError(f"warm-up publish answered {resp.status}: {await resp.text()}")
    t0 = time.monotonic()
    while not (await sink_get(session, sink, "_count"))["distinct"].get("w"):
        if time.monotonic() - t0 > WARM_UP_LIMIT_S:
            raise RuntimeError(f"the warm-up message did not arrive in {WARM_UP_LIMIT_S} s")
        await asyncio.sleep(0.2)
    log(f"pipeline ready: warm-up message delivered in {time.monotonic() - t0:.1f} s", began)


async def drain(
    session: aiohttp.ClientSession,
    sink: ServerProcess,
    want: int,
    kind: str,
    args: argparse.Namespace,
    began: float,
) -> float:
    """Wait for ``want`` distinct nonces starting with ``kind``; returns seconds waited."""
    start = time.monotonic()
    seen, since = -1, start
    while True:
        got = (await sink_get(session, sink, "_count"))["distinct"].get(kind, 0)
        now = time.monotonic()
        if got != seen:
            seen, since = got, now
        if got >= want:
            break
        if now - since >= args.quiet or now - start >= args.drain_timeout:
            log(f"drain cut: {got} of {want} acknowledged arrived", began)
            break
        await asyncio.sleep(0.5)
    waited = time.monotonic() - start
    await asyncio.sleep(args.settle)
    return waited


def fmt_ms(x: float) -> str:
    return "n/a" if x != x else (f"{x:.1f} ms" if x < 100 else f"{x:,.0f} ms")


def ratio(a: float, b: float) -> str:
    return "n/a" if not (a == a and b == b and b > 0) else f"{a / b:.2f}"


def report(
    args: argparse.Namespace,
    facts: list[str],
    base: OpenLoopResult,
    base_t: Tally,
    load: OpenLoopResult,
    t: Tally,
    drain_s: float,
    cpu: str,
) -> str:
    lines = [*facts, ""]
    lines.append(
        f"kafstash soak: {args.rate:g}/s for {args.duration:g} s open loop, "
        f"{args.body_bytes} B bodies, delay 0, {args.partitions} partitions, all on 127.0.0.1"
    )
    lines.append("")
    lines.append("| figure | value |")
    lines.append("|---|---|")
    late_worst = fmt_ms(load.max_late_ms)
    span_s = (t.last_arrival_ns - load.first_intended_ns) / 1e9
    rate = t.delivered / span_s if span_s > 0 else float("nan")
    not_acked = ", ".join(f"{k}: {v}" for k, v in sorted(load.outcomes.items()) if k != "201")
    rows = [
        ("planned publishes", f"{load.planned:,}"),
        ("sent", f"{load.sent:,}"),
        ("late sends (> 5 ms behind the timetable)", f"{load.late:,}, worst {late_worst}"),
        ("dropped (too many in flight)", f"{load.dropped:,}"),
        ("acknowledged (2xx)", f"{t.acked:,}"),
        ("not acknowledged", not_acked or "0"),
        ("delivered (acknowledged, distinct)", f"{t.delivered:,}"),
        ("lost (acknowledged, never delivered)", f"{t.lost:,}"),
        ("duplicated (receipts beyond the first)", f"{t.duplicated:,}"),
        ("delivered though not acknowledged", f"{t.recovered:,}"),
        ("delivered, never sent", f"{t.unexpected:,}"),
        ("drain after the last send", f"{drain_s:.1f} s"),
        ("delivery rate, first send → last first-arrival", f"{rate:,.0f}/s"),
    ]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines.append("")
    lines.append(
        "Latency from the INTENDED send time. Baseline: the same generator POSTing straight to "
        f"the sink at {args.rate:g}/s for {args.baseline:g} s in this run (one HTTP hop)."
    )
    lines.append("")
    lines.append(
        "| latency | p50 | p99 | p99.9 | max | baseline p50 / p99 / p99.9 | ratio p50 / p99 |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for name, h, b in (
        ("end to end (→ first arrival at the sink)", t.e2e, base_t.e2e),
        ("publish (→ 2xx answer)", load.answer, base.answer),
        ("publish, from the ACTUAL send", load.answer_from_send, base.answer_from_send),
    ):
        p = [pct_ms(h, q) for q in (50, 99, 99.9)]
        bp = [pct_ms(b, q) for q in (50, 99, 99.9)]
        mx = h.get_max_value() / 1000 if h.get_total_count() else float("nan")
        lines.append(
            f"| {name} | {fmt_ms(p[0])} | {fmt_ms(p[1])} | {fmt_ms(p[2])} | {fmt_ms(mx)} | "
            f"{' / '.join(fmt_ms(x) for x in bp)} | {ratio(p[0], bp[0])} / {ratio(p[1], bp[1])} |"
        )
    lines.append("")
    lines.append(f"End to end per {args.window:g} s window of intended send time:")
    lines.append("")
    lines.append("| window | delivered | p50 | p99 | max |")
    lines.append("|---|---|---|---|---|")
    for start, n, p50, p99, mx in t.windows:
        lines.append(f"| {start:g}-{start + args.window:g} s | {n:,} | {fmt_ms(p50)} | "
                     f"{fmt_ms(p99)} | {fmt_ms(mx)} |")  # fmt: skip
    lines.append("")
    lines.append(f"CPU during the soak (% of one core; 2 cores = 200%): {cpu}")
    base_lost = base_t.lost
    lines.append(
        f"Baseline run: {base.sent:,} sent, {base_t.acked:,} answered 2xx, {base_lost} not received"
    )
    return "\n".join(lines)


async def run(args: argparse.Namespace, procs: Procs, workdir: Path, began: float) -> int:
    busy0, t0 = machine_busy(), time.monotonic()
    await asyncio.sleep(2)
    background = 100 * (machine_busy() - busy0) / (time.monotonic() - t0)
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    bootstrap, note, broker = await asyncio.to_thread(start_broker, workdir, procs)
    log(f"broker: {note}", began)
    facts = machine_facts(note)
    facts.append(f"idle:    before the run the machine was {background:.0f}% busy (% of one core)")
    sink = start_sink(procs)
    stack = Stack(bootstrap, workdir / "home", partitions=args.partitions)
    stack.home.mkdir(parents=True)
    procs.add("kafstash", stack.stop)
    if external:
        procs.add("topics", lambda: delete_topics(bootstrap, stack.prefix))
    await asyncio.to_thread(stack.start, 90)
    log(f"kafstash up (prefix {stack.prefix})", began)

    def pids() -> dict[str, int | None]:
        out: dict[str, int | None] = {
            role: (p.pid if p.poll() is None else None) for role, p in stack.procs.items()
        }
        out["sink"] = sink.proc.pid
        if broker is not None:
            out["kafka"] = broker.pid
        return out

    auth = {"Authorization": f"Bearer {DEV_USERS[0].token}", "Content-Type": "text/plain"}
    conn = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=conn) as session:
        await warm_up(session, stack, sink, auth, began)
        log(f"baseline: {args.rate:g}/s straight to the sink for {args.baseline:g} s", began)
        base = await open_loop(session, f"{sink.base}/base/m", rate=args.rate,
                               seconds=args.baseline, body_bytes=args.body_bytes,
                               headers={"Content-Type": "text/plain"}, prefix="b")  # fmt: skip
        await asyncio.sleep(1)
        arrivals = await sink_get(session, sink, "_arrivals")
        base_t = tally(base, {n: v for n, v in arrivals.items() if n.startswith("b")}, args.window)
        log(f"soak: {args.rate:g}/s for {args.duration:g} s", began)
        meter = CpuMeter(pids)
        cpu0 = meter.start()
        load = await open_loop(session, f"{stack.base_url}/v2/publish/{sink.base}/soak/m",
                               rate=args.rate, seconds=args.duration, body_bytes=args.body_bytes,
                               headers=auth, prefix="s")  # fmt: skip
        cpu = meter.stop(cpu0)
        log(f"sent {load.sent}, acked {len(load.acked)}; draining", began)
        drain_s = await drain(session, sink, len(load.acked), "s", args, began)
        arrivals = await sink_get(session, sink, "_arrivals")
    soak = {n: v for n, v in arrivals.items() if n.startswith("s")}
    t = tally(load, soak, args.window)
    print(report(args, facts, base, base_t, load, t, drain_s, cpu))
    for role in ("api", "streams", "sender"):
        if stack.procs[role].poll() is not None:
            print(f"warning: {role} exited during the run:\n{stack.tail(role)}", file=sys.stderr)
    return 1 if t.lost else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--rate", type=float, default=200, help="publishes per second")
    parser.add_argument("--duration", type=float, default=180, help="seconds of load")
    parser.add_argument("--body-bytes", type=int, default=1024, help="publish body size")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic")
    parser.add_argument("--baseline", type=float, default=20, help="seconds of baseline load")
    parser.add_argument("--window", type=float, default=30, help="seconds per latency window")
    parser.add_argument("--quiet", type=float, default=30, help="drain gives up after this "
                        "many seconds without a new arrival")  # fmt: skip
    parser.add_argument("--drain-timeout", type=float, default=300, help="drain cap, seconds")
    parser.add_argument("--settle", type=float, default=3, help="wait for late duplicates")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.baseline <= 0:
        parser.error("--rate, --duration and --baseline must be positive")

    began = time.monotonic()
    code = 0
    with child_processes("kafstash-soak-") as (procs, workdir):
        try:
            code = uvloop.run(run(args, procs, workdir, began))
        except KeyboardInterrupt:
            print("\ninterrupted; stopping everything", file=sys.stderr)
            code = 130
    log(f"done (exit {code})", began)
    return code


if __name__ == "__main__":
    sys.exit(main())
