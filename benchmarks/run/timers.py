"""Timers at scale (issue #10, item 5): N delayed messages waiting in one stream worker.

Run alone, with ``--timers N``. A stack of its own (stream workers only: no API, no sender) gets
N ``PublishRequest`` records appended straight to ``<prefix>.requests`` by a raw aiokafka
producer, as a Kafka-native producer would. N - B of them are due over an hour that starts after
the run's time budget, so none of them fires while it is measured and every count below is
exact; B = min(10,000, N // 10) form a burst due in one second.

1. **Intake.** The stream worker starts with the N - B requests waiting; the figure is the time
   until the delay table's changelog holds a row for each (end offsets, read every 0.2 s), and
   its resident memory (/proc VmRSS, and VmHWM for the peak) at start-up and after.
2. **Burst.** Then the B requests are appended, due in the second that starts twice (B ÷ the
   intake rate just measured) from now (5 s at least), so that they are all in the table when
   they fall due. Lateness is read from the deliveries topic: each ``DeliveryDue``'s Kafka
   CreateTime (the stream worker's producer, wall clock, 1 ms) minus its message's
   ``not_before``. The counting sink only keeps first and last arrival per prefix, and no
   sender runs, so the lateness is the stream worker's alone.
3. **Recovery.** ``kill -9`` of the stream worker, a restart, and the time until its log says
   ``streams ready: delay table recovered, M messages pending`` with M the rows still waiting.

Every wait has a cap taken from the run's budget; a cut figure says CUT and its JSON key is null.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import msgspec
from aiokafka import ConsumerRecord

from benchmarks.harness import HOST, CpuMeter, memory_mb
from benchmarks.run.context import Bench
from benchmarks.run.drains import rate_of
from benchmarks.run.figures import Figures, number, per_message_us, quantiles, ratio
from benchmarks.run.kafka import produce_all, read_to_end
from benchmarks.run.report import Row, fmt_ms, fmt_rate, fmt_ratio
from kafstash.config import Settings
from kafstash.producers.api.publish import HeaderView, PublishLimits, build_request
from kafstash.provision import ensure_topics
from kafstash.schemas import codec
from kafstash.schemas.commands import DeliveryDue, PublishRequest
from kafstash.schemas.routing import request_key
from kafstash.schemas.users import DEV_USERS
from tests.stack import Stack

RECOVERED = re.compile(rb"streams ready: delay table recovered, (\d+) messages pending")
LATENESS_P99_TARGET_MS = 1000.0  # issue #10 item 5: p99 ≤ 1 s while the burst is due
BURST_MAX = 10_000
SPREAD_MS = 3_600_000  # the waiting set is due over an hour
FIRE_CAP_S = 60.0  # after the burst's due second, how long its deliveries are waited for
RECOVERY_CAP_S = 600.0  # restart → recovered, at most (within the budget)
RESERVE_S = 150.0  # what the burst and the recovery need after the intake, at most
NONCE = "tm"  # bodies start "tm.s.<i> " (the spread) or "tm.b.<i> " (the burst)


def burst_size(n: int) -> int:
    return min(BURST_MAX, n // 10)


def budget_s(n: int) -> float:
    """The run's default cap with ``--timers N``: 100 rows/s is a floor, not a forecast (the
    drains phase measures the stream worker well above it), plus start-up and recovery."""
    return 240 + n / 100


@dataclass(frozen=True)
class Timers:
    n: int
    burst: int
    window: str  # when the spread is due
    load_s: float  # raw producer appending N - B requests
    startup_s: float | None  # stream worker start → first "delay table recovered" (empty table)
    rss_ready_mb: float | None  # resident then: the empty-table baseline
    intake_s: float | None  # stream worker start → a row for each of the N - B; None: cut
    intake_rate: float | None  # rows/s from the first row on
    intake_rows: int
    rss_after_intake_mb: float | None  # all N rows in (the burst too), before it is due
    rss_peak_mb: float | None  # VmHWM of the first process, read just before kill -9
    lead_s: float  # burst appended → its due second
    burst_in_before_due: bool
    fired: int  # distinct burst messages with a DeliveryDue
    deliveries: int  # burst DeliveryDue records (fired + duplicates)
    lateness_ms: tuple[float, ...]  # CreateTime - not_before, one per fired burst message
    early: int  # spread messages delivered during the run (none is due: must be 0)
    expected_pending: int
    recovery_s: float | None  # restart → "delay table recovered, <expected> pending"; None: cut
    recovered_pending: int | None
    rss_after_recovery_mb: float | None
    rss_peak_recovery_mb: float | None
    intake_cpu: dict[str, float]  # CPU-µs per row taken in, start-up included
    burst_cpu: dict[str, float]  # CPU-µs per burst delivery, from its due second on

    @property
    def spread(self) -> int:
        return self.n - self.burst


async def run(bench: Bench, n: int) -> Timers:
    burst = burst_size(n)
    spread = n - burst
    bench.stack = stack = bench.new_stack("timers")
    settings = Settings.from_env(stack.env)
    await ensure_topics(settings)
    bench.topics = topics = settings.topics
    changelog = f"{settings.streams_app_id}-delay-changelog"
    assert bench.sink
    template = _template(f"{bench.sink.base}/{NONCE}/m")

    start_ms = int((time.time() + bench.left() + 60) * 1000)
    window = (
        f"{spread:,} due uniformly over {SPREAD_MS // 60_000} min from "
        f"{time.strftime('%H:%M:%S', time.gmtime(start_ms / 1000))} UTC (after the run's budget)"
    )
    bench.log(f"timers: {window}; burst of {burst:,}")
    t0 = time.monotonic()
    await bench.phase(
        f"timers: load {spread:,} delayed requests (raw aiokafka producer)",
        produce_all(
            bench.bootstrap, topics.requests, _records(template, "s", spread_dues(spread, start_ms))
        ),
    )
    load_s = time.monotonic() - t0
    name = f"timers: stream worker takes in {spread:,}"
    intake = await bench.phase(name, _intake(bench, stack, changelog, spread))
    intake_cpu = per_message_us(bench.spans[name].seconds, intake.rows)
    fire = await bench.phase(
        f"timers: burst of {burst:,} due in one second",
        _burst(bench, template, changelog, intake.rows, burst, intake.rate),
    )
    pid = stack.procs["streams"].pid
    peak = memory_mb(pid)
    expected = n - fire.fired - fire.early
    # Known only if every request was in the table before the kill; else any count will do.
    exact = intake.rows >= spread and fire.in_before_due
    # Killed outside the measured phase: the dead process's CPU would count as a reaped child.
    await asyncio.to_thread(stack.kill, "streams")
    recovery = await bench.phase(
        "timers: restart after kill -9, recovery", _recover(bench, stack, expected, exact)
    )
    await asyncio.to_thread(stack.stop, graceful=False)  # nothing reads it any more
    return Timers(
        n=n,
        burst=burst,
        window=window,
        load_s=load_s,
        startup_s=intake.startup_s,
        rss_ready_mb=intake.rss_ready,
        intake_s=intake.took if intake.rows >= spread else None,
        intake_rate=intake.rate,
        intake_rows=intake.rows,
        rss_after_intake_mb=fire.rss_after_intake,
        rss_peak_mb=peak[1] if peak else None,
        lead_s=fire.lead_s,
        burst_in_before_due=fire.in_before_due,
        fired=fire.fired,
        deliveries=fire.deliveries,
        lateness_ms=fire.lateness_ms,
        early=fire.early,
        expected_pending=expected,
        recovery_s=recovery.took if recovery.done else None,
        recovered_pending=recovery.pending,
        rss_after_recovery_mb=recovery.rss,
        rss_peak_recovery_mb=recovery.rss_peak,
        intake_cpu=intake_cpu,
        burst_cpu=fire.cpu,
    )


# -- the records


def _template(url: str) -> PublishRequest:
    """What the API would append for a text publish to ``url``; each record varies its ids,
    due time and body."""
    return build_request(
        user=DEV_USERS[0],
        url=url,
        view=HeaderView([("content-type", "text/plain")]),
        body=b"",
        now_ms=int(time.time() * 1000),
        limits=PublishLimits(),
        caller_ip=HOST,
    )


def spread_dues(count: int, start_ms: int) -> Iterator[int]:
    """Uniform over ``SPREAD_MS`` from ``start_ms``, in random order: a heap filled in due order
    would never sift, and real publishes do not arrive sorted by due time."""
    rng = random.Random(count)  # seeded: the same due times every run
    return (start_ms + rng.randrange(SPREAD_MS) for _ in range(count))


def burst_dues(count: int, second_ms: int) -> Iterator[int]:
    """Spread evenly over the one second that starts at ``second_ms``."""
    return (second_ms + (i * 1000) // count for i in range(count))


def _records(
    template: PublishRequest, kind: str, dues: Iterable[int]
) -> Iterator[tuple[bytes, bytes]]:
    # As long as the API's ids: the timer index holds one string per waiting message.
    head = f"msg_{NONCE}{kind}"
    width = max(1, len(template.message.message_id) - len(head))
    for i, due in enumerate(dues):
        mid = f"{head}{i:0{width}d}"
        message = msgspec.structs.replace(
            template.message, message_id=mid, not_before=due, body=f"{NONCE}.{kind}.{i} ".encode()
        )
        req = msgspec.structs.replace(template, request_id=f"req_{NONCE}{kind}{i}", message=message)
        yield request_key(req).encode(), codec.encode(req)


# -- the steps


def _log_size(stack: Stack) -> int:
    path = stack.logs.get("streams") or stack.home / "streams.log"
    return path.stat().st_size if path.exists() else 0


def _recovered(stack: Stack, since: int) -> list[int]:
    """The pending counts of every "delay table recovered" line after byte ``since``."""
    data = stack.logs["streams"].read_bytes()[since:]
    return [int(m.group(1)) for m in RECOVERED.finditer(data)]


def _alive(stack: Stack) -> int:
    proc = stack.procs["streams"]
    if proc.poll() is not None:
        raise RuntimeError(f"streams exited with {proc.returncode}:\n{stack.tail('streams')}")
    return proc.pid


@dataclass(frozen=True)
class _Intake:
    startup_s: float | None
    rss_ready: float | None
    took: float
    rows: int
    rate: float | None


async def _intake(bench: Bench, stack: Stack, changelog: str, target: int) -> _Intake:
    since = _log_size(stack)
    t0 = time.monotonic()
    stack.start_role("streams")
    deadline = t0 + max(30.0, bench.left() - RESERVE_S)
    startup = rss_ready = None
    samples: list[tuple[float, int]] = []
    while True:
        pid = _alive(stack)
        if startup is None and _recovered(stack, since):
            startup = time.monotonic() - t0
            mem = memory_mb(pid)
            rss_ready = mem[0] if mem else None
        rows = await bench.offsets.total(changelog)
        samples.append((time.monotonic(), rows))
        if rows >= target or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    took = samples[-1][0] - t0
    if rows < target:
        bench.log(f"timers: intake CUT at {rows:,}/{target:,}; log ends:\n{stack.tail('streams')}")
    return _Intake(startup, rss_ready, took, rows, rate_of(samples))


@dataclass(frozen=True)
class _Fire:
    lead_s: float
    in_before_due: bool
    rss_after_intake: float | None
    fired: int
    deliveries: int
    lateness_ms: tuple[float, ...]
    early: int
    cpu: dict[str, float]  # CPU-µs per burst delivery, due second → the last one appended


async def _burst(
    bench: Bench,
    template: PublishRequest,
    changelog: str,
    rows_before: int,
    burst: int,
    intake_rate: float | None,
) -> _Fire:
    assert bench.stack
    # Twice the time the intake just measured needs for the burst, so that every burst row is
    # in the table when the second comes; with no rate (intake cut) a generous fixed lead.
    lead = max(5.0, 2 * burst / intake_rate) if intake_rate else 30.0
    due_s = math.ceil(time.time() + lead)
    await produce_all(
        bench.bootstrap,
        bench.topics.requests,
        _records(template, "b", burst_dues(burst, due_s * 1000)),
    )
    until_due = due_s - time.time()
    _, in_before_due = await bench.wait_until(
        lambda: bench.offsets.total(changelog), rows_before + burst, until_due
    )
    mem = memory_mb(_alive(bench.stack))
    if not in_before_due:
        bench.log("timers: the burst was not all in the delay table when it fell due")
    cap = max(0.0, due_s - time.time()) + FIRE_CAP_S

    async def delivered() -> int:
        return await bench.offsets.total(bench.topics.deliveries)

    # The firing alone: from the due second's start (the burst is in the table by then) until
    # every burst delivery is appended; the profile (--py-spy) covers the same span.
    await asyncio.sleep(max(0.0, due_s - time.time()))
    meter = CpuMeter(bench.pids)
    cpu0 = meter.start()
    detach = await bench.pyspy.attach("streams-burst", _alive(bench.stack))
    samples, _ = await bench.wait_until(delivered, burst, cap, poll=0.5)
    fire_cpu = per_message_us(meter.span(cpu0).seconds, samples[-1][1])
    await detach()
    late: dict[str, float] = {}
    early = deliveries = 0

    def on_record(rec: ConsumerRecord) -> None:
        nonlocal early, deliveries
        due = codec.decode(rec.value, DeliveryDue)
        nonce = due.message.body.split(b" ", 1)[0].decode()
        if nonce.startswith(f"{NONCE}.b."):
            deliveries += 1
            # The first DeliveryDue of a message is its firing; a second would be a duplicate.
            late.setdefault(nonce, rec.timestamp - due.message.not_before)
        else:
            early += 1

    await read_to_end(bench.bootstrap, bench.topics.deliveries, on_record, deadline_s=30)
    return _Fire(
        lead_s=lead,
        in_before_due=in_before_due,
        rss_after_intake=mem[0] if mem else None,
        fired=len(late),
        deliveries=deliveries,
        lateness_ms=tuple(sorted(late.values())),
        early=early,
        cpu=fire_cpu,
    )


@dataclass(frozen=True)
class _Recovery:
    done: bool
    took: float
    pending: int | None  # the last count its log gave, None if no line
    rss: float | None
    rss_peak: float | None


async def _recover(bench: Bench, stack: Stack, expected: int, exact: bool) -> _Recovery:
    """Restart → the "delay table recovered" line with ``expected`` pending (any line when not
    ``exact``: after a cut intake nobody knows how many rows the table held)."""
    since = _log_size(stack)
    t0 = time.monotonic()
    stack.start_role("streams")
    deadline = t0 + max(60.0, min(RECOVERY_CAP_S, bench.left() - 10))
    # A rebalance may recover the partitions in more than one go: wait for the full count.
    while True:
        pid = _alive(stack)
        counts = _recovered(stack, since)
        done = expected in counts if exact else bool(counts)
        if done or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    took = time.monotonic() - t0
    mem = memory_mb(pid)
    if not done:
        bench.log(f"timers: recovery CUT (lines: {counts}); log ends:\n{stack.tail('streams')}")
    return _Recovery(
        done=done,
        took=took,
        pending=expected if done and exact else (counts[-1] if counts else None),
        rss=mem[0] if mem else None,
        rss_peak=mem[1] if mem else None,
    )


# -- the report


def _mb(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f} MiB"


def _s(x: float | None, cut: str) -> str:
    return f"CUT ({cut})" if x is None else f"{x:.1f} s"


def rows(t: Timers) -> list[Row]:
    section = f"Timers at scale ({t.n:,} delayed messages, {t.burst:,} due in one second)"
    p50, p99, worst = quantiles(t.lateness_ms)
    empty = "stream worker at start-up, empty table"

    def rss(label: str, mb: float | None) -> Row:
        """A memory row, next to the worker's own at start-up."""
        base = t.rss_ready_mb
        return Row(section, label, _mb(mb), empty, _mb(base), fmt_ratio(mb, base))

    return [
        Row(
            section, f"intake: delay-table rows/s ({t.spread:,} requests)", fmt_rate(t.intake_rate)
        ),
        Row(
            section,
            "  intake time, stream worker start → every row written",
            _s(t.intake_s, f"{t.intake_rows:,}/{t.spread:,}"),
            "start-up, empty table",
            _s(t.startup_s, "no ready line"),
            fmt_ratio(t.intake_s, t.startup_s),
        ),
        rss("stream-worker RSS, all N waiting", t.rss_after_intake_mb),
        rss("  peak (VmHWM, before kill -9)", t.rss_peak_mb),
        Row(
            section,
            f"burst fired (DeliveryDue appended), of {t.burst:,}",
            f"{t.fired:,}" if t.fired == t.burst else f"CUT ({t.fired:,})",
        ),
        Row(section, "burst lateness p50 (CreateTime - due)", fmt_ms(p50)),
        Row(
            section,
            "burst lateness p99",
            fmt_ms(p99),
            "target (issue #10)",
            fmt_ms(LATENESS_P99_TARGET_MS),
            fmt_ratio(p99, LATENESS_P99_TARGET_MS),
        ),
        Row(section, "burst lateness max", fmt_ms(worst)),
        Row(
            section,
            "recovery after kill -9: restart → table recovered",
            _s(t.recovery_s, f"{t.recovered_pending} of {t.expected_pending:,} pending"),
            "start-up, empty table",
            _s(t.startup_s, "no ready line"),
            fmt_ratio(t.recovery_s, t.startup_s),
        ),
        rss("  RSS after recovery", t.rss_after_recovery_mb),
    ]


def notes(t: Timers) -> list[str]:
    per = per_pending_bytes(t)
    return [
        f"timers: {t.window}; loaded by a raw aiokafka producer in {t.load_s:.2f} s",
        f"timers: burst appended {t.lead_s:.1f} s before its due second; "
        + (
            "all in the delay table before it was due"
            if t.burst_in_before_due
            else "NOT all in the delay table when due (its lateness includes intake)"
        )
        + f"; {t.deliveries:,} DeliveryDue records for {t.fired:,} messages; "
        f"{t.early} spread messages delivered early (none is due)",
        "timers: lateness from Kafka CreateTime of each DeliveryDue (wall clock, 1 ms) - the "
        "message's not_before; no sender ran, the sink was not involved",
        f"timers: recovery line says {t.recovered_pending} pending (expected "
        f"{t.expected_pending:,}); RSS peak during recovery {_mb(t.rss_peak_recovery_mb)}",
        "timers: RSS growth per waiting message after intake: "
        + ("n/a" if per is None else f"{per:,.0f} bytes"),
    ]


def per_pending_bytes(t: Timers) -> float | None:
    if t.rss_after_intake_mb is None or t.rss_ready_mb is None or t.n <= 0:
        return None
    return (t.rss_after_intake_mb - t.rss_ready_mb) * 1024 * 1024 / t.n


def figures(t: Timers) -> Figures:
    p50, p99, worst = quantiles(t.lateness_ms)
    return {
        "timers_n": t.n,
        "timers_burst_expected": t.burst,
        "timers_burst_fired": t.fired,
        "timers_burst_deliveries": t.deliveries,
        "timers_early_fired": t.early,
        "timers_load_s": number(t.load_s, 2),
        "timers_startup_s": number(t.startup_s, 2),
        "timers_intake_s": number(t.intake_s, 1),
        "timers_intake_rps": number(t.intake_rate, 1),
        "timers_rss_mb_ready": number(t.rss_ready_mb, 1),
        "timers_rss_mb_after_intake": number(t.rss_after_intake_mb, 1),
        "timers_rss_mb_peak": number(t.rss_peak_mb, 1),
        "timers_rss_bytes_per_pending": number(per_pending_bytes(t), 0),
        "timers_burst_lateness_p50_ms": number(p50, 1),
        "timers_burst_lateness_p99_ms": number(p99, 1),
        "timers_burst_lateness_max_ms": number(worst, 1),
        "timers_burst_p99_vs_target": ratio(p99, LATENESS_P99_TARGET_MS),
        "timers_recovery_s": number(t.recovery_s, 2),
        "timers_recovered_pending": t.recovered_pending,
        "timers_rss_mb_after_recovery": number(t.rss_after_recovery_mb, 1),
        "timers_rss_mb_peak_recovery": number(t.rss_peak_recovery_mb, 1),
        "cpu_us_per_msg_timers_intake": t.intake_cpu,
        "cpu_us_per_msg_timers_burst": t.burst_cpu,
    }
