"""``python -m benchmarks.run [--quick] [--body-bytes N] [--py-spy DIR] [--timers N]``: each phase,
a report."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import uvloop

from benchmarks.harness import child_processes
from benchmarks.run import __doc__ as package_doc
from benchmarks.run import (
    baselines,
    clients,
    drains,
    duplicates,
    end_to_end,
    pipeline,
    publish,
    scale_out,
    timers,
)
from benchmarks.run.context import FULL, QUICK, Bench, Profile
from benchmarks.run.figures import Figures, merge
from benchmarks.run.report import Row, open_loop_note, render, wrk_note


@dataclass(frozen=True)
class Results:
    base: baselines.Baselines
    pub: publish.Publish
    drains: drains.Drains
    pipe: pipeline.Pipeline
    e2e: end_to_end.EndToEnd
    dups: dict[str, duplicates.PhaseCount]
    clients: clients.Runs
    scale: scale_out.ScaleOut


async def measure(bench: Bench) -> Results:
    async with bench.connected():
        base = await baselines.run(bench)
        pub = await publish.run(bench)
        drained = await drains.run(bench)
        pipe = await pipeline.run(bench)
        e2e = await end_to_end.run(bench)
        bench.log("duplicates: the sink's receipts and the deliveries topic, by nonce")
        appended = {"bl": drained.backlog, "pipe": pipe.published, "e2e": e2e.publish.ok}
        dups = await duplicates.count(bench, appended)
        # Then the main stack stops: the scale-out phase runs a stack of its own.
        assert bench.stack
        await asyncio.to_thread(bench.stack.stop)
        scale = await scale_out.run(bench)
    # kafstash stopped, so only the HTTP client and the sink compete.
    runs = await clients.run(bench)
    return Results(base, pub, drained, pipe, e2e, dups, runs, scale)


@dataclass(frozen=True)
class PublishOnly:
    """``--only publish``: the baselines and the publish phase, nothing after them."""

    base: baselines.Baselines
    pub: publish.Publish


async def measure_publish(bench: Bench) -> PublishOnly:
    async with bench.connected():
        return PublishOnly(await baselines.run(bench), await publish.run(bench))


async def measure_timers(bench: Bench, n: int) -> timers.Timers:
    """``--timers N``: that phase alone (it needs the broker and the sink's address only)."""
    async with bench.connected():
        return await timers.run(bench, n)


def table(r: Results, bench: Bench) -> list[Row]:
    return [
        *publish.rows(r.pub, r.base, len(bench.body)),
        *drains.rows(r.drains, r.pub, r.base, clients.at_sender_concurrency(r.clients)),
        *pipeline.rows(r.pipe, r.pub, r.base),
        *scale_out.rows(r.scale),
        *end_to_end.rows(r.e2e, r.pub, bench.prof),
        *clients.rows(r.clients, r.base, bench.prof),
        *duplicates.rows(r.dups),
    ]


def details(r: Results, bench: Bench) -> list[str]:
    out = [
        wrk_note(name, w)
        for name, w in (
            ("wrk hello", r.base.wrk_hello),
            ("wrk sink", r.base.wrk_sink),
            ("wrk publish", r.pub.wrk),
            ("wrk backlog", r.drains.wrk),
        )
    ]
    out += [open_loop_note(f"open-loop hello {k}/s", v) for k, v in r.base.hello_lat.items()]
    out += [open_loop_note(f"open-loop publish {k}/s", v) for k, v in r.pub.latency.items()]
    out.append(open_loop_note("e2e publish", r.e2e.publish))
    out += end_to_end.notes(r.e2e)
    out.append(r.drains.note())
    out.append(f"pipeline: {r.pipe.note}")
    out += [f"scale-out: {run.note}" for run in r.scale.runs]
    out.append(duplicates.note(r.dups))
    out.append(clients.note(r.clients, bench.prof))
    return out


def figures(r: Results | PublishOnly | timers.Timers, bench: Bench) -> Figures:
    """Every figure of the table (and a few more) as one flat object, for ``--json FILE``."""
    meta = {
        "profile": bench.prof.name,
        # The timers phase's bodies are just their nonces: --body-bytes does not apply.
        "body_bytes": None if isinstance(r, timers.Timers) else len(bench.body),
        "date": bench.facts[0].split(":", 1)[1].strip() if bench.facts else None,
        "seconds": round(time.monotonic() - bench.began, 1),
    }
    if isinstance(r, PublishOnly):
        return merge(meta, baselines.figures(r.base), publish.figures(r.pub, r.base))
    if isinstance(r, timers.Timers):
        return merge(meta, timers.figures(r))
    return merge(
        meta,
        baselines.figures(r.base),
        publish.figures(r.pub, r.base),
        drains.figures(r.drains, r.pub, r.base, clients.at_sender_concurrency(r.clients)),
        pipeline.figures(r.pipe, r.pub, r.base),
        end_to_end.figures(r.e2e, bench.prof),
        duplicates.figures(r.dups),
        clients.figures(r.clients, r.base),
        scale_out.figures(r.scale),
    )


def cpu_per_message(r: Results | PublishOnly | timers.Timers) -> list[str]:
    def us(cpu: dict[str, float]) -> str:
        ranked = sorted(cpu.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{name} {v:,.0f}" for name, v in ranked) or "n/a (no message)"

    if isinstance(r, timers.Timers):
        return [f"timers intake (per delay-table row, start-up included): {us(r.intake_cpu)}"]
    first = f"publish, API alone (wrk; per accepted publish): {us(r.pub.cpu)}"
    if isinstance(r, PublishOnly):
        return [first]
    return [
        first,
        f"raw aiokafka pass-through (per record): {us(r.drains.passthrough_cpu)}",
        f"stream workers alone (per DeliveryDue, after start-up): {us(r.drains.streams_cpu)}",
        f"sender alone (per delivery, after start-up): {us(r.drains.sender_cpu)}",
        f"pipeline, every role running (per arrival): {us(r.pipe.cpu)}",
        *(
            f"scale-out, {run.processes} process(es) of each role (per arrival): {us(run.cpu)}"
            for run in r.scale.runs
        ),
    ]


def report(r: Results | PublishOnly | timers.Timers, bench: Bench) -> None:
    total = time.monotonic() - bench.began
    if isinstance(r, timers.Timers):
        rows, notes, cpu = timers.rows(r), timers.notes(r), cpu_per_message(r)
    elif isinstance(r, PublishOnly):
        rows = publish.rows(r.pub, r.base, len(bench.body))
        notes = [
            wrk_note("wrk hello", r.base.wrk_hello),
            wrk_note("wrk publish", r.pub.wrk),
            *(open_loop_note(f"open-loop hello {k}/s", v) for k, v in r.base.hello_lat.items()),
            *(open_loop_note(f"open-loop publish {k}/s", v) for k, v in r.pub.latency.items()),
        ]
        cpu = [cpu_per_message(r)[0]]
    else:
        rows, notes, cpu = table(r, bench), details(r, bench), cpu_per_message(r)
    print()
    print(
        f"kafstash benchmarks ({bench.prof.name} run, {total:.0f} s, all on 127.0.0.1; "
        f"ratio = value ÷ baseline value)"
    )
    print()
    print(render(rows))
    print()
    print("Details:")
    for line in notes:
        print(f"- {line}")
    print()
    print("CPU per process during each phase (% of one core; 2 cores = 200%):")
    for line in bench.cpu_lines:
        print(f"- {line}")
    print()
    print("CPU-µs per message, per process (its CPU time over the phase ÷ messages through it):")
    for line in cpu:
        print(f"- {line}")
    if bench.pyspy.summaries:
        print()
        what = "during the publish wrk run" if bench.args.only else "while draining the backlog"
        print(f"py-spy (CPU samples {what}):")
        for line in bench.pyspy.summaries:
            print(f"- {line}")


def profile(args: argparse.Namespace) -> Profile:
    prof = QUICK if args.quick else FULL
    if args.budget is not None:
        prof = dataclasses.replace(prof, budget_s=args.budget)
    elif args.timers is not None:
        prof = dataclasses.replace(prof, name="timers", budget_s=timers.budget_s(args.timers))
    if args.e2e_rate is not None:
        prof = dataclasses.replace(prof, e2e_rate=args.e2e_rate)
    return prof


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=(package_doc or "").splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="shorter phases (≤ 90 s in all)")
    parser.add_argument("--body-bytes", type=int, default=1024, help="publish body size")
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="profile the stream workers and the sender while they drain the backlog, or the "
        "API during the publish wrk run with --only publish "
        "(needs py-spy; raw profiles go to DIR, a summary is printed)",
    )
    parser.add_argument(
        "--only",
        choices=["publish"],
        help="run the baselines and this phase only (to iterate on it)",
    )
    parser.add_argument(
        "--timers",
        type=int,
        metavar="N",
        help="run only the timers-at-scale phase with N delayed messages waiting (a tenth of "
        "them, at most 10,000, due in one second); its default budget grows with N",
    )
    parser.add_argument(
        "--budget",
        type=float,
        metavar="S",
        help="time budget of the whole run in seconds (360 full, 130 quick); a loaded machine "
        "needs more, or the drains are cut",
    )
    parser.add_argument(
        "--e2e-rate", type=int, metavar="N", help="end-to-end open-loop rate (default 200/s)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="FILE",
        help="also write every figure as one flat JSON object (keys: benchmarks/README.md)",
    )
    args = parser.parse_args(argv)
    if args.timers is not None and (args.timers < 10 or args.only):
        parser.error("--timers N needs N ≥ 10 (a tenth is the burst) and no --only")
    results: Results | PublishOnly | timers.Timers
    with child_processes("kafstash-bench-") as (procs, workdir):
        bench = Bench(profile(args), args, procs, workdir)
        try:
            bench.setup()
            if args.timers is not None:
                results = uvloop.run(measure_timers(bench, args.timers))
            elif args.only == "publish":
                results = uvloop.run(measure_publish(bench))
            else:
                results = uvloop.run(measure(bench))
        except KeyboardInterrupt:
            print("\ninterrupted; stopping everything", file=sys.stderr)
            return 130
        except Exception:
            traceback.print_exc()
            for stack in (bench.pub_stack, bench.stack):
                if stack is None:
                    continue
                for role in stack.procs:
                    print(f"--- {stack.prefix} {role} log ---\n{stack.tail(role)}", file=sys.stderr)
            return 1
    report(results, bench)
    if args.json is not None:
        args.json.write_text(json.dumps(figures(results, bench), indent=2, allow_nan=False) + "\n")
        print(f"\nfigures written to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
