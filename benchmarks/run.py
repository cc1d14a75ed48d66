#!/usr/bin/env python
"""kafstash benchmarks on one machine, each figure a ratio to a baseline measured in the same run.

Usage: ``python benchmarks/run.py [--quick]`` (full run ≤ 5 min, ``--quick`` ≤ 90 s). See
``benchmarks/README.md`` for what is measured and how to read the table.

Everything runs on 127.0.0.1: a Kafka broker (LocalBroker in a temp dir, unless
KAFKA_BOOTSTRAP_SERVERS is set), the kafstash roles as processes (tests/stack.py, its own topic
prefix, KAFSTASH_PARTITIONS=4), a hello-world app and a counting sink (benchmarks/servers.py,
uvicorn), and ``wrk`` as the C load generator. Every process started here is stopped at the end,
also on Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import httpx  # noqa: E402
import uvloop  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]  # noqa: E402

from kafstash.config import Settings  # noqa: E402
from kafstash.producers.api.publish import HeaderView, PublishLimits, build_request  # noqa: E402
from kafstash.provision import ensure_topics  # noqa: E402
from kafstash.schemas import codec  # noqa: E402
from kafstash.schemas.commands import DeliveryDue  # noqa: E402
from kafstash.schemas.defaults import MAX_TOPIC_MESSAGE_BYTES  # noqa: E402
from kafstash.schemas.users import DEV_USERS  # noqa: E402
from tests.stack import Stack  # noqa: E402

HOST = "127.0.0.1"
TOKEN = DEV_USERS[0].token
PARTITIONS = 4
WRK_THREADS, WRK_CONNS = 2, 64

# Targets from /work/shared/design.md "Performance budget" (ms); printed next to the latencies.
BUDGET = {"publish_p50": 5.0, "publish_p99": 25.0, "e2e_p50": 50.0, "e2e_p99": 250.0}


@dataclass(frozen=True)
class Profile:
    name: str
    baseline_s: float  # each wrk baseline and each raw producer run
    publish_s: float  # wrk closed-loop publish (API alone)
    open_rates: tuple[int, ...]  # open-loop publish rates (API alone), also against hello-world
    open_s: float
    backlog: int  # messages published before the stream workers and the sender start
    pipeline_n: int  # messages wrk publishes with every role running
    e2e_rate: int
    e2e_s: float
    client_k: int  # requests per HTTP client in the client micro-benchmark
    client_conc: tuple[int, ...]
    client_cap_s: float  # each client run stops after this long even if k is not reached
    budget_s: float  # whole run, broker start included; drains are cut short to fit


FULL = Profile("full", 8, 10, (500, 1000), 10, 10_000, 6_000, 200, 10, 10_000, (256, 64), 8, 285)
QUICK = Profile("quick", 3, 3, (500,), 3, 2_500, 1_500, 200, 3, 2_000, (256,), 4, 85)


# ------------------------------------------------------------------------------- processes


class Procs:
    """Every child process of this run, stopped in reverse order by ``stop_all``."""

    def __init__(self) -> None:
        self._stops: list[tuple[str, Callable[[], None]]] = []

    def add(self, name: str, stop: Callable[[], None]) -> None:
        self._stops.append((name, stop))

    def stop_all(self) -> None:
        while self._stops:
            name, stop = self._stops.pop()
            try:
                stop()
            except Exception as exc:  # keep stopping the others
                print(f"warning: stopping {name} failed: {exc!r}", file=sys.stderr)


def _terminate(
    proc: subprocess.Popen[bytes] | asyncio.subprocess.Process, timeout: float = 10
) -> None:
    if proc.returncode is not None:
        return
    pid = proc.pid
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)  # started with start_new_session: pid is the group id
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return
            if done:
                return
            time.sleep(0.05)


def cpu_ticks(pid: int | None) -> float | None:
    """utime+stime of a live process in seconds (all its threads), from /proc."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds per process over a phase, printed as % of one core."""

    def __init__(self, pids: Callable[[], dict[str, int | None]]) -> None:
        self._pids = pids

    def start(self) -> dict[str, Any]:
        snap: dict[str, Any] = {name: cpu_ticks(pid) for name, pid in self._pids().items()}
        t = os.times()
        snap["bench"] = t.user + t.system
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        # Children reaped during a phase: wrk (and py-spy with --py-spy).
        snap["wrk"] = ch.ru_utime + ch.ru_stime
        snap["_t"] = time.monotonic()
        snap["_busy"] = machine_busy()
        return snap

    def stop(self, before: dict[str, Any]) -> str:
        after = self.start()
        wall = after["_t"] - before["_t"]
        parts = []
        ours = 0.0
        for name in {**before, **after}:
            b = before.get(name)
            a = after.get(name)
            if name.startswith("_") or a is None:
                continue
            if b is None:  # started during the phase
                b = 0.0
            ours += a - b
            pct = 100 * (a - b) / wall if wall > 0 else 0
            if pct >= 1:
                parts.append(f"{name} {pct:.0f}%")
        if wall > 0:
            others = max(0.0, after["_busy"] - before["_busy"] - ours)
            parts.append(f"not ours {100 * others / wall:.0f}%")
        return ", ".join(parts)


def machine_busy() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat), to spot other load."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields)
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------- servers


class Server:
    """benchmarks/servers.py (hello or sink) on a socket bound here and passed by descriptor."""

    def __init__(self, kind: str, procs: Procs) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        sock.listen(2048)
        self.port: int = sock.getsockname()[1]
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "servers.py"), kind, str(sock.fileno())],
            pass_fds=[sock.fileno()],
            start_new_session=True,
        )
        sock.close()
        procs.add(kind, lambda: _terminate(self.proc))
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{self.base}/_stats", timeout=1)
                break
            except httpx.TransportError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} server did not start") from None
                time.sleep(0.1)

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"


async def sink_stats(session: aiohttp.ClientSession, sink: Server) -> dict[str, list[int]]:
    async with session.get(f"{sink.base}/_stats") as resp:
        data: dict[str, list[int]] = await resp.json()
        return data


def sink_total(stats: dict[str, list[int]], prefixes: tuple[str, ...]) -> int:
    return sum(stats[p][0] for p in prefixes if p in stats)


# -------------------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests: int = 0
    seconds: float = 0.0
    non2xx: int = 0
    socket_errors: int = 0
    error: str | None = None

    @property
    def ok_rate(self) -> float:
        return (self.requests - self.non2xx) / self.seconds if self.seconds else 0.0


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


async def run_wrk(
    procs: Procs,
    url: str,
    path: str,
    *,
    seconds: float,
    body: bytes,
    headers: dict[str, str],
    workdir: Path,
    until: Callable[[], Awaitable[bool]] | None = None,
) -> WrkResult:
    """wrk (closed-loop, WRK_CONNS keep-alive connections) POSTing ``body`` to ``path``.

    With ``until`` wrk is interrupted (SIGINT: it stops and prints its figures for the time it
    ran) as soon as ``until()`` is true, polled every 50 ms; ``seconds`` is then only a bound.
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        return WrkResult(error="wrk not installed (apt-get install -y wrk)")
    lua = workdir / f"wrk-{uuid.uuid4().hex[:6]}.lua"
    lines = [
        'wrk.method = "POST"',
        f"wrk.path = {json.dumps(path)}",
        f"wrk.body = {json.dumps(body.decode())}",
        *(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()),
    ]
    lua.write_text("\n".join(lines) + "\n")
    secs = max(1, round(seconds))
    proc = await asyncio.create_subprocess_exec(
        wrk,
        f"-t{WRK_THREADS}",
        f"-c{WRK_CONNS}",
        f"-d{secs}s",
        "--timeout",
        "10s",
        "-s",
        str(lua),
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    procs.add("wrk", lambda: _terminate(proc))
    try:
        if until is not None:
            while proc.returncode is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(proc.wait()), 0.05)
                if proc.returncode is None and await until():
                    proc.send_signal(signal.SIGINT)
                    break
        out_b, _ = await asyncio.wait_for(proc.communicate(), secs + 30)
    finally:
        if proc.returncode is None:
            _terminate(proc)
    out = out_b.decode(errors="replace")
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", out)
    if not m:
        return WrkResult(error=f"could not parse wrk output: {out.strip()[:300]}")
    res = WrkResult(requests=int(m.group(1)), seconds=float(m.group(2)) * _UNITS[m.group(3)])
    if m2 := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        res.non2xx = int(m2.group(1))
    if m3 := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    ):
        res.socket_errors = sum(int(x) for x in m3.groups())
    return res


# ------------------------------------------------------------------------- open-loop client


@dataclass
class OpenLoopResult:
    offered_rate: float
    sent: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    dropped: int = 0  # not sent: too many in flight
    late: int = 0  # sent more than 5 ms after the intended time (generator could not keep up)
    max_late_ms: float = 0.0
    corrected: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, 120_000_000, 3))
    uncorrected: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, 120_000_000, 3))
    acks: dict[str, int] = field(default_factory=dict)  # nonce -> monotonic_ns of the 2xx

    def pct(self, p: float, corrected: bool = True) -> float:
        h = self.corrected if corrected else self.uncorrected
        return h.get_value_at_percentile(p) / 1000 if h.get_total_count() else float("nan")


async def open_loop(
    session: aiohttp.ClientSession,
    url: str,
    *,
    rate: float,
    seconds: float,
    body_size: int,
    headers: dict[str, str],
    nonce_prefix: str | None = None,
    max_in_flight: int = 2000,
) -> OpenLoopResult:
    """Send on a fixed timetable regardless of responses; latency counts from the intended time."""
    res = OpenLoopResult(offered_rate=rate)
    n = int(rate * seconds)
    interval = 1.0 / rate
    tasks: set[asyncio.Task[None]] = set()
    pad = b"x" * body_size
    timeout = aiohttp.ClientTimeout(total=15)

    async def one(i: int, intended: float) -> None:
        nonce = f"{nonce_prefix}{i}" if nonce_prefix else None
        body = pad if nonce is None else (nonce.encode() + b" " + pad)[:body_size]
        started = time.monotonic()
        try:
            async with session.post(url, data=body, headers=headers, timeout=timeout) as resp:
                await resp.read()
                status = resp.status
        except Exception as exc:
            res.errors[type(exc).__name__] += 1
            return
        done_ns = time.monotonic_ns()
        done = done_ns / 1e9
        if 200 <= status < 300:
            res.ok += 1
            res.corrected.record_value(max(1, int((done - intended) * 1e6)))
            res.uncorrected.record_value(max(1, int((done - started) * 1e6)))
            if nonce is not None:
                res.acks[nonce] = done_ns
        else:
            res.errors[f"HTTP {status}"] += 1

    t0 = time.monotonic() + 0.05
    for i in range(n):
        intended = t0 + i * interval
        delay = intended - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif -delay > 0.005:
            res.late += 1
            res.max_late_ms = max(res.max_late_ms, -delay * 1000)
        if len(tasks) >= max_in_flight:
            res.dropped += 1
            continue
        task = asyncio.create_task(one(i, intended))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        res.sent += 1
    if tasks:
        await asyncio.wait(tasks, timeout=20)
    return res


# ------------------------------------------------------------------------------- raw Kafka


def sample_record(sink_url: str, body_size: int) -> tuple[bytes, bytes]:
    """The key and value the API appends for a publish of ``body_size`` bytes (same size)."""
    req = build_request(
        user=DEV_USERS[0],
        url=sink_url,
        view=HeaderView([("content-type", "text/plain")]),
        body=b"x" * body_size,
        now_ms=int(time.time() * 1000),
        limits=PublishLimits(),
        caller_ip=HOST,
    )
    return req.message.message_id.encode(), codec.encode(req)


def raw_producer(bootstrap: str) -> AIOKafkaProducer:
    # The API's producer settings (producers/kafka_log.py): idempotent (acks=all), linger 1 ms.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        linger_ms=1,
        max_batch_size=256 * 1024,
        max_request_size=MAX_TOPIC_MESSAGE_BYTES,
        compression_type=None,
    )


async def raw_pipelined(bootstrap: str, topic: str, value: bytes, seconds: float) -> float:
    """Records/s of one producer sending without waiting (up to 5,000 unacknowledged)."""
    p = raw_producer(bootstrap)
    await p.start()
    try:
        for _ in range(200):  # warm-up: metadata, connections, producer id
            await p.send_and_wait(topic, value=value, key=uuid.uuid4().hex.encode())
        n = 0
        pending: list[asyncio.Future[Any]] = []
        t0 = time.monotonic()
        deadline = t0 + seconds
        while time.monotonic() < deadline:
            for _ in range(500):
                pending.append(await p.send(topic, value=value, key=uuid.uuid4().hex.encode()))
            n += 500
            if len(pending) >= 5000:
                await asyncio.gather(*pending[:2500])
                del pending[:2500]
        await asyncio.gather(*pending)
        return n / (time.monotonic() - t0)
    finally:
        await p.stop()


async def raw_concurrent(
    bootstrap: str, topic: str, value: bytes, seconds: float, concurrency: int
) -> float:
    """Records/s of ``concurrency`` tasks, each awaiting its ack before sending (as the API)."""
    p = raw_producer(bootstrap)
    await p.start()
    try:
        await p.send_and_wait(topic, value=value, key=b"warm")
        count = 0
        t0 = time.monotonic()
        deadline = t0 + seconds

        async def worker() -> None:
            nonlocal count
            while time.monotonic() < deadline:
                await p.send_and_wait(topic, value=value, key=uuid.uuid4().hex.encode())
                count += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.monotonic() - t0)
    finally:
        await p.stop()


class Offsets:
    """Sum of the end offsets of a topic's partitions (how many records it holds)."""

    def __init__(self, bootstrap: str) -> None:
        self._c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)

    async def __aenter__(self) -> Offsets:
        await self._c.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._c.stop()

    async def total(self, topic: str) -> int:
        ends = await self._c.end_offsets(await partitions(self._c, topic))
        return sum(ends.values())


async def partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(parts)]


# ------------------------------------------------------------------------------ HTTP clients


async def client_aiohttp(
    url: str, k: int, conc: int, cap_s: float, body: bytes
) -> tuple[int, float]:
    # Configured as sinks/http/sender.py configures it.
    connector = aiohttp.TCPConnector(limit=conc, ttl_dns_cache=30)
    async with aiohttp.ClientSession(
        connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
    ) as s:

        async def one() -> None:
            async with s.post(url, data=body, headers={"Content-Type": "text/plain"}) as r:
                await r.content.read(1024)

        return await _drive(one, k, conc, cap_s)


async def client_httpx(url: str, k: int, conc: int, cap_s: float, body: bytes) -> tuple[int, float]:
    async with httpx.AsyncClient() as c:  # default transport and pool limits

        async def one() -> None:
            r = await c.post(url, content=body, headers={"Content-Type": "text/plain"})
            r.raise_for_status()

        return await _drive(one, k, conc, cap_s)


async def _drive(
    one: Callable[[], Awaitable[None]], k: int, conc: int, cap_s: float
) -> tuple[int, float]:
    """Run ``one`` k times with ``conc`` workers, stopping early after ``cap_s`` seconds."""
    for _ in range(20):  # warm-up: open connections
        await one()
    done = 0
    next_i = 0
    t0 = time.monotonic()
    deadline = t0 + cap_s

    async def worker() -> None:
        nonlocal done, next_i
        while next_i < k and time.monotonic() < deadline:
            next_i += 1
            await one()
            done += 1

    await asyncio.gather(*(worker() for _ in range(conc)))
    return done, time.monotonic() - t0


# ----------------------------------------------------------------------------------- report


@dataclass
class Row:
    section: str
    measure: str
    value: str
    baseline: str = ""
    base_value: str = ""
    ratio: str = ""


def fmt_rate(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{x:,.0f}/s"


def fmt_ratio(a: float | None, b: float | None) -> str:
    if not a or not b or a != a or b != b:
        return "n/a"
    return f"{a / b:.3f}" if a / b < 0.1 else f"{a / b:.2f}"


def fmt_ms(x: float) -> str:
    return "n/a" if x != x else (f"{x:.1f} ms" if x < 100 else f"{x:.0f} ms")


def render(rows: list[Row]) -> str:
    head = Row("", "measure", "value", "baseline (same run)", "baseline value", "ratio")
    cols = ["measure", "value", "baseline", "base_value", "ratio"]
    widths = {c: max(len(getattr(r, c)) for r in [head, *rows]) for c in cols}
    out = []

    def line(r: Row) -> str:
        return "| " + " | ".join(getattr(r, c).ljust(widths[c]) for c in cols) + " |"

    out.append(line(head))
    out.append("|" + "|".join("-" * (widths[c] + 2) for c in cols) + "|")
    section = None
    for r in rows:
        if r.section != section:
            section = r.section
            out.append(line(Row("", f"**{section}**", "", "", "", "")))
        out.append(line(r))
    return "\n".join(out)


def machine_facts(bootstrap_note: str) -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    wrk = shutil.which("wrk")
    wrk_v = "not installed"
    if wrk:
        p = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
        wrk_v = (
            (p.stdout + p.stderr).strip().splitlines()[0] if (p.stdout + p.stderr).strip() else "?"
        )
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    # Files that differ from the commit (the roles run this tree, edits included).
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    if commit and dirty:
        commit += f" + uncommitted changes in {len(dirty)} files"
    from importlib.metadata import version  # noqa: PLC0415

    libs = ", ".join(
        f"{n} {version(n)}" for n in ("aiokafka", "aiohttp", "httpx", "uvicorn", "faust-streaming")
    )
    return [
        f"date:    {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}",
        f"machine: nproc={os.cpu_count()}, cpu={cpu}, kernel={platform.release()}",
        f"python:  {platform.python_version()} ({sys.executable})",
        f"libs:    {libs}; {wrk_v}",
        f"kafka:   {bootstrap_note}; kafstash commit {commit or '?'}",
        f"load:    {Path('/proc/loadavg').read_text().strip()} (1/5/15-min load average at start)",
    ]


# ------------------------------------------------------------------------------------- main


class PySpy:
    """``py-spy record`` attached to a role while a phase runs (``--py-spy DIR``); optional."""

    def __init__(self, outdir: Path | None, procs: Procs) -> None:
        self.outdir = outdir
        self.procs = procs
        self.exe = shutil.which("py-spy")
        self.summaries: list[str] = []

    async def attach(self, name: str, pid: int) -> Callable[[], Awaitable[None]]:
        async def nothing() -> None:
            return None

        if self.outdir is None or self.exe is None:
            if self.outdir is not None:
                self.summaries.append("py-spy not installed (pip install py-spy)")
            return nothing
        self.outdir.mkdir(parents=True, exist_ok=True)
        out = self.outdir / f"{name}.txt"
        proc = await asyncio.create_subprocess_exec(
            self.exe,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
            "--duration",
            "600",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.add("py-spy", lambda: _terminate(proc))

        async def detach() -> None:
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 15)
            self.summaries.append(self.summarize(name, out))

        return detach

    @staticmethod
    def summarize(name: str, path: Path, top: int = 8) -> str:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            return f"{name}: no py-spy profile written"
        leaf: Counter[str] = Counter()
        incl: Counter[str] = Counter()
        total = 0
        for ln in lines:
            stack, _, n = ln.rpartition(" ")
            if not n.isdigit():
                continue
            frames = stack.split(";")
            count = int(n)
            total += count
            leaf[frames[-1]] += count
            for f in set(frames):
                incl[f] += count
        if not total:
            return f"{name}: empty py-spy profile"

        def short(frame: str) -> str:
            return re.sub(r"\(/.*?(site-packages|main)/", "(", frame)

        def fmt(c: Counter[str], skip_frames: bool) -> str:
            items = [
                (f, k) for f, k in c.most_common(80) if not (skip_frames and _FRAMEWORK.search(f))
            ]
            return "; ".join(f"{100 * k / total:.0f}% {short(f)}" for f, k in items[:top])

        return (
            f"{name} ({total} CPU samples at 250/s, {path}):\n  self: {fmt(leaf, False)}\n"
            f"  inclusive: {fmt(incl, True)}"
        )


# Frames every stack passes through (process start, event loop, role entry): not informative.
_FRAMEWORK = re.compile(
    r"runpy|<module>|asyncio/(base_events|events|runners|tasks)\.py|uvloop/__init__|"
    r"kafstash/(__main__|cli|roles)\.py|mode/(worker|services|utils)|Thread\.|threading\.py"
)


class Bench:
    def __init__(
        self, prof: Profile, args: argparse.Namespace, procs: Procs, workdir: Path
    ) -> None:
        self.prof = prof
        self.args = args
        self.procs = procs
        self.workdir = workdir
        self.began = time.monotonic()
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.cpu_lines: list[str] = []
        self.facts: list[str] = []
        self.broker: Any = None
        self.bootstrap = ""
        self.external = False
        self.pub_stack: Stack | None = None  # API only: publish throughput and latency
        self.stack: Stack | None = None  # every role: backlog drains, pipeline, end-to-end
        self.hello: Server | None = None
        self.sink: Server | None = None
        self.body = b"x" * args.body_bytes
        self.e2e_hops = ""
        self.pyspy = PySpy(args.py_spy, procs)
        self.auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"}

    # -- helpers

    def left(self) -> float:
        return self.prof.budget_s - (time.monotonic() - self.began)

    def log(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.began:6.1f}s] {msg}", file=sys.stderr, flush=True)

    def pids(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for tag, stack in (("pub-", self.pub_stack), ("", self.stack)):
            if stack is not None:
                for role, p in stack.procs.items():
                    out[tag + role] = p.pid if p.poll() is None else None
        if self.broker is not None:
            out["kafka"] = self.broker.pid
        if self.sink:
            out["sink"] = self.sink.proc.pid
        if self.hello:
            out["hello"] = self.hello.proc.pid
        return out

    def publish_path(self, prefix: str) -> str:
        assert self.sink
        return f"/v2/publish/{self.sink.base}/{prefix}/m"

    async def phase(self, name: str, coro: Awaitable[Any]) -> Any:
        meter = CpuMeter(self.pids)
        before = meter.start()
        self.log(f"{name} ...")
        result = await coro
        self.cpu_lines.append(f"{name}: {meter.stop(before)}")
        return result

    def new_stack(self, name: str) -> Stack:
        stack = Stack(self.bootstrap, self.workdir / name, partitions=PARTITIONS)
        stack.home.mkdir(parents=True, exist_ok=True)
        self.procs.add(f"kafstash {name}", stack.stop)
        if self.external:
            self.procs.add(f"topics {stack.prefix}", lambda: self._delete_topics(stack.prefix))
        return stack

    async def start_api(self, stack: Stack) -> None:
        await ensure_topics(Settings.from_env(stack.env))
        stack.start_role("api")
        await asyncio.to_thread(stack.wait_api, 60)
        self.log(f"kafstash api up (prefix {stack.prefix})")

    # -- setup (synchronous, before the event loop)

    def setup(self) -> None:
        # Other processes on the machine skew every figure; measure how busy it is before we start.
        busy0, t0 = machine_busy(), time.monotonic()
        time.sleep(2)
        self.background = 100 * (machine_busy() - busy0) / (time.monotonic() - t0)
        external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if external:
            self.bootstrap, self.external = external, True
            note = f"external {external}"
        else:
            from kafstash.infra.kafka import LocalBroker, ensure_jars  # noqa: PLC0415
            from kafstash.infra.kafka.broker import KAFKA_VERSION  # noqa: PLC0415

            ensure_jars()
            self.broker = LocalBroker(self.workdir / "kafka")
            self.procs.add("kafka", self.broker.stop)
            self.log("starting Kafka (LocalBroker)")
            self.broker.start()
            self.bootstrap = self.broker.bootstrap
            note = (
                f"LocalBroker {KAFKA_VERSION} at {self.bootstrap} "
                f"(started in {self.broker.startup_seconds:.1f}s)"
            )
        self.facts = machine_facts(note)
        self.facts.append(
            f"idle:    before the run the machine was {self.background:.0f}% busy "
            "(% of one core, processes not started by this run)"
        )
        print("\n".join(self.facts), flush=True)
        self.hello = Server("hello", self.procs)
        self.sink = Server("sink", self.procs)

    def _delete_topics(self, prefix: str) -> None:
        async def go() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                names = [t for t in await admin.list_topics() if t.startswith(prefix)]
                if names:
                    await admin.delete_topics(names)
            finally:
                await admin.close()

        asyncio.run(go())

    # -- the measurements

    async def run(self) -> None:
        p = self.prof
        assert self.sink
        assert self.hello
        plain = {"Content-Type": "text/plain"}
        connector = aiohttp.TCPConnector(limit=512)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            Offsets(self.bootstrap) as offsets,
        ):
            # 1. Baselines: wrk against hello-world and against the sink; raw aiokafka producer.
            wrk_hello = await self.phase(
                "baseline: wrk → hello-world",
                run_wrk(
                    self.procs,
                    self.hello.base,
                    "/hello",
                    seconds=p.baseline_s,
                    body=self.body,
                    headers=plain,
                    workdir=self.workdir,
                ),
            )
            wrk_sink = await self.phase(
                "baseline: wrk → sink",
                run_wrk(
                    self.procs,
                    self.sink.base,
                    "/wrk/m",
                    seconds=p.baseline_s,
                    body=self.body,
                    headers=plain,
                    workdir=self.workdir,
                ),
            )
            raw_topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                await admin.create_topics([NewTopic(raw_topic, PARTITIONS, 1)])
            finally:
                await admin.close()
            if self.external:
                self.procs.add("raw topic", lambda: self._delete_topics(raw_topic))
            _key, value = sample_record(f"{self.sink.base}/raw/m", len(self.body))
            raw_rate = await self.phase(
                "baseline: raw aiokafka producer, pipelined",
                raw_pipelined(self.bootstrap, raw_topic, value, p.baseline_s),
            )
            raw_conc = await self.phase(
                f"baseline: raw aiokafka producer, {WRK_CONNS} tasks x send_and_wait",
                raw_concurrent(self.bootstrap, raw_topic, value, p.baseline_s, WRK_CONNS),
            )
            hello_lat: dict[int, OpenLoopResult] = {}
            for rate in p.open_rates:
                hello_lat[rate] = await self.phase(
                    f"baseline: open-loop {rate}/s → hello-world",
                    open_loop(
                        session,
                        f"{self.hello.base}/hello",
                        rate=rate,
                        seconds=p.open_s,
                        body_size=len(self.body),
                        headers=plain,
                    ),
                )

            # 2. Publish throughput and latency, API alone, on a stack of its own whose records
            # nobody consumes (so this backlog never reaches the phases after it).
            self.pub_stack = pub = self.new_stack("pub")
            await self.start_api(pub)
            pub_url = f"{pub.base_url}{self.publish_path('pub')}"
            warm = await open_loop(
                session, pub_url, rate=200, seconds=1.0, body_size=len(self.body), headers=self.auth
            )
            if warm.ok == 0:
                raise RuntimeError(
                    f"warm-up publishes failed: {dict(warm.errors)}\n{pub.tail('api')}"
                )
            wrk_pub = await self.phase(
                "publish: wrk → kafstash (API alone)",
                run_wrk(
                    self.procs,
                    pub.base_url,
                    self.publish_path("pub"),
                    seconds=p.publish_s,
                    body=self.body,
                    headers=self.auth,
                    workdir=self.workdir,
                ),
            )
            pub_lat: dict[int, OpenLoopResult] = {}
            for rate in p.open_rates:
                pub_lat[rate] = await self.phase(
                    f"publish: open-loop {rate}/s → kafstash (API alone)",
                    open_loop(
                        session,
                        pub_url,
                        rate=rate,
                        seconds=p.open_s,
                        body_size=len(self.body),
                        headers=self.auth,
                    ),
                )
            await asyncio.to_thread(pub.stop)

            # 3. A fixed backlog, then each stage alone drains it: stream workers, then sender.
            self.stack = stack = self.new_stack("main")
            await self.start_api(stack)
            topics = Settings.from_env(stack.env).topics
            self.topics = topics
            bl = await self.phase(
                f"backlog: wrk publishes {p.backlog:,} (API alone)",
                run_wrk(
                    self.procs,
                    stack.base_url,
                    self.publish_path("bl"),
                    seconds=60,
                    body=self.body,
                    headers=self.auth,
                    workdir=self.workdir,
                    until=self.reached(offsets, topics.requests, p.backlog),
                ),
            )
            await asyncio.sleep(0.3)  # requests wrk left in flight are still appended
            backlog = await offsets.total(topics.requests)
            self.log(f"{backlog} publish requests waiting in {topics.requests}")
            streams_rate, streams_note = await self.phase(
                "streams: drain backlog (stream workers alone)",
                self.drain_streams(offsets, backlog),
            )
            sender_rate, sender_note = await self.phase(
                "delivery: drain backlog (sender alone)", self.drain_sender(session, backlog)
            )
            # 4. Pipeline: every role running, wrk publishes N as fast as it can; arrivals/s.
            pipe_pub, pipe_rate, pipe_note = await self.phase(
                f"pipeline: wrk publishes {p.pipeline_n:,}, every role running",
                self.pipeline(session, offsets),
            )
            # 5. End-to-end latency: publish ack → sink receipt, delay 0, open loop.
            e2e = await self.phase(
                f"end-to-end: open-loop {p.e2e_rate}/s", self.end_to_end(session)
            )
        # 6. HTTP client micro-benchmark (kafstash stopped, so only client and sink compete).
        await asyncio.to_thread(stack.stop)
        clients = await self.phase("sender HTTP client: aiohttp vs httpx", self.clients())

        # -- table
        R, rows = Row, self.rows
        S1 = f"1. Publish (POST /v2/publish/<sink>, {len(self.body)} B body)"
        pub_rate = wrk_pub.ok_rate if not wrk_pub.error else None
        hello_rate = wrk_hello.ok_rate if not wrk_hello.error else None
        sink_rate = wrk_sink.ok_rate if not wrk_sink.error else None
        rows += [
            R(
                S1,
                f"publishes/s, wrk -c{WRK_CONNS} (API alone)",
                fmt_rate(pub_rate),
                "wrk → uvicorn hello-world",
                fmt_rate(hello_rate),
                fmt_ratio(pub_rate, hello_rate),
            ),
            R(
                S1,
                "  same",
                fmt_rate(pub_rate),
                f"raw aiokafka, pipelined ({len(value)} B records)",
                fmt_rate(raw_rate),
                fmt_ratio(pub_rate, raw_rate),
            ),
            R(
                S1,
                "  same",
                fmt_rate(pub_rate),
                f"raw aiokafka, {WRK_CONNS} tasks x send_and_wait",
                fmt_rate(raw_conc),
                fmt_ratio(pub_rate, raw_conc),
            ),
        ]
        for rate in p.open_rates:
            for label, key, q in (("p50", "publish_p50", 50), ("p99", "publish_p99", 99)):
                v, b = pub_lat[rate].pct(q), hello_lat[rate].pct(q)
                rows.append(
                    R(
                        S1,
                        f"latency {label} @ {rate}/s open-loop (API alone)",
                        fmt_ms(v),
                        "same generator → hello-world",
                        fmt_ms(b),
                        fmt_ratio(v, b),
                    )
                )
                rows.append(
                    R(
                        S1,
                        "",
                        "",
                        "budget (design.md, at 1,000/s)",
                        fmt_ms(BUDGET[key]),
                        fmt_ratio(v, BUDGET[key]),
                    )
                )
        S2 = "2. Delivery (to a counting uvicorn sink)"
        rows += [
            R(
                S2,
                "stream workers alone: requests → deliveries/s",
                fmt_rate(streams_rate),
                "publishes/s (API alone)",
                fmt_rate(pub_rate),
                fmt_ratio(streams_rate, pub_rate),
            ),
            R(
                S2,
                "sender alone: deliveries/s (backlog drain)",
                fmt_rate(sender_rate),
                "wrk → same sink",
                fmt_rate(sink_rate),
                fmt_ratio(sender_rate, sink_rate),
            ),
            R(
                S2,
                "pipeline: arrivals/s, all roles, wrk publishing",
                fmt_rate(pipe_rate),
                "wrk → same sink",
                fmt_rate(sink_rate),
                fmt_ratio(pipe_rate, sink_rate),
            ),
            R(
                S2,
                "  publishes/s meanwhile",
                fmt_rate(pipe_pub),
                "publishes/s (API alone)",
                fmt_rate(pub_rate),
                fmt_ratio(pipe_pub, pub_rate),
            ),
        ]
        S3 = f"3. End-to-end (publish ack → sink receipt, delay 0, {p.e2e_rate}/s open-loop)"
        e2e_res, e2e_hist, e2e_missing, e2e_neg = e2e
        for label, key, q in (("p50", "e2e_p50", 50), ("p99", "e2e_p99", 99)):
            v = (
                e2e_hist.get_value_at_percentile(q) / 1000
                if e2e_hist.get_total_count()
                else float("nan")
            )
            rows.append(
                R(
                    S3,
                    f"end-to-end {label}",
                    fmt_ms(v),
                    "budget (design.md, at 500/s)",
                    fmt_ms(BUDGET[key]),
                    fmt_ratio(v, BUDGET[key]),
                )
            )
        for label, q in (("p50", 50), ("p99", 99)):
            low = p.open_rates[0]
            v, b = e2e_res.pct(q), pub_lat[low].pct(q)
            rows.append(
                R(
                    S3,
                    f"publish {label}, every role running",
                    fmt_ms(v),
                    f"API alone @ {low}/s",
                    fmt_ms(b),
                    fmt_ratio(v, b),
                )
            )
        S4 = f"4. Sender HTTP client ({p.client_k:,} POSTs each, same sink)"
        by: dict[tuple[str, int], float] = {}
        for (name, conc), (n_done, secs) in clients.items():
            by[(name, conc)] = n_done / secs if secs else 0.0
        for conc in p.client_conc:
            a_rate, x_rate = by[("aiohttp", conc)], by[("httpx", conc)]
            rows += [
                R(
                    S4,
                    f"aiohttp.ClientSession, concurrency {conc}",
                    fmt_rate(a_rate),
                    "wrk → same sink",
                    fmt_rate(sink_rate),
                    fmt_ratio(a_rate, sink_rate),
                ),
                R(
                    S4,
                    f"httpx.AsyncClient (defaults), concurrency {conc}",
                    fmt_rate(x_rate),
                    "wrk → same sink",
                    fmt_rate(sink_rate),
                    fmt_ratio(x_rate, sink_rate),
                ),
                R(
                    S4,
                    "  httpx ÷ aiohttp",
                    fmt_rate(x_rate),
                    "aiohttp, same concurrency",
                    fmt_rate(a_rate),
                    fmt_ratio(x_rate, a_rate),
                ),
            ]

        # -- details
        n = self.notes
        for name, w in (
            ("wrk hello", wrk_hello),
            ("wrk sink", wrk_sink),
            ("wrk publish", wrk_pub),
            ("wrk backlog", bl),
        ):
            n.append(
                f"{name}: {w.requests} responses in {w.seconds:.1f}s, non-2xx {w.non2xx}, "
                f"socket errors {w.socket_errors}" + (f", {w.error}" if w.error else "")
            )
        for name, r in (
            *((f"open-loop hello {k}/s", v) for k, v in hello_lat.items()),
            *((f"open-loop publish {k}/s", v) for k, v in pub_lat.items()),
            ("e2e publish", e2e_res),
        ):
            n.append(
                f"{name}: offered {r.offered_rate:.0f}/s, sent {r.sent}, 2xx {r.ok}, "
                f"errors {dict(r.errors) or 0}, dropped {r.dropped}, late sends {r.late} "
                f"(max {r.max_late_ms:.0f} ms); from intended send time p50/p90/p99/p99.9/max "
                f"{r.pct(50):.1f}/{r.pct(90):.1f}/{r.pct(99):.1f}/{r.pct(99.9):.1f}/"
                f"{r.corrected.get_max_value() / 1000:.1f} ms; from actual send p50/p99 "
                f"{r.pct(50, False):.1f}/{r.pct(99, False):.1f} ms"
            )
        if e2e_hist.get_total_count():
            n.append(
                f"e2e: {e2e_hist.get_total_count()} joined by nonce, {e2e_missing} not received in "
                f"time, {e2e_neg} received before the ack; p90/p99.9/max "
                f"{e2e_hist.get_value_at_percentile(90) / 1000:.1f}/"
                f"{e2e_hist.get_value_at_percentile(99.9) / 1000:.1f}/"
                f"{e2e_hist.get_max_value() / 1000:.1f} ms"
            )
        else:
            n.append(f"e2e: nothing joined ({e2e_missing} not received in time)")
        n.append(f"e2e hops: {self.e2e_hops}")
        n.append(f"backlog of {backlog} messages: {streams_note}; {sender_note}")
        n.append(f"pipeline: {pipe_note}")
        n.append(
            "clients: "
            + ", ".join(
                f"{name} c={conc} {k} in {s:.1f}s" for (name, conc), (k, s) in clients.items()
            )
            + f" (each stops at {p.client_k} requests or {p.client_cap_s:.0f}s)"
        )

    async def wait_until(
        self, what: Callable[[], Awaitable[int]], target: int, cap_s: float, poll: float = 0.2
    ) -> tuple[list[tuple[float, int]], bool]:
        """Poll ``what`` until it reaches ``target`` or ``cap_s`` passes (returns samples)."""
        samples: list[tuple[float, int]] = []
        deadline = time.monotonic() + max(1.0, cap_s)
        while True:
            v = await what()
            samples.append((time.monotonic(), v))
            if v >= target:
                return samples, True
            if time.monotonic() > deadline:
                return samples, False
            await asyncio.sleep(poll)

    @staticmethod
    def reached(offsets: Offsets, topic: str, target: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return await offsets.total(topic) >= target

        return check

    @staticmethod
    def rate_of(samples: list[tuple[float, int]]) -> float | None:
        """Rate from the last sample still at zero (the start) to the last sample."""
        zero = [t for t, v in samples if v == 0]
        moving = [(t, v) for t, v in samples if v > 0]
        if not moving:
            return None
        t0 = zero[-1] if zero else samples[0][0]
        t1, v1 = moving[-1]
        return v1 / (t1 - t0) if t1 > t0 else None

    def drain_cap(self, reserve_s: float) -> float:
        return max(3.0, self.left() - reserve_s)

    def _reserve(self) -> float:
        """Seconds the phases after the drains need (pipeline, end-to-end, clients, teardown)."""
        p = self.prof
        return p.pipeline_n / 400 + p.e2e_s + 5 + len(p.client_conc) * (p.client_cap_s + 3) + 10

    async def drain_streams(self, offsets: Offsets, backlog: int) -> tuple[float | None, str]:
        assert self.stack
        started = time.monotonic()
        self.stack.start_role("streams")

        async def got() -> int:
            return await offsets.total(self.topics.deliveries)

        cap = self.drain_cap(self._reserve() + backlog / 400)
        samples, _ = await self.wait_until(got, 1, cap)  # start-up, not profiled
        detach = await self.pyspy.attach("streams", self.stack.procs["streams"].pid)
        more, done = await self.wait_until(got, backlog, cap - (time.monotonic() - started))
        samples += more
        await detach()
        first = next((t for t, v in samples if v > 0), None)
        note = (
            f"stream workers: first delivery {first - started:.1f}s after start"
            if first
            else "stream workers: no delivery"
        )
        if not done:
            note += f", CUT at {samples[-1][1]}/{backlog} (time budget)"
            self.log(f"stream workers did not finish; log ends:\n{self.stack.tail('streams')}")
        return self.rate_of(samples), note

    async def drain_sender(
        self, session: aiohttp.ClientSession, backlog: int
    ) -> tuple[float | None, str]:
        assert self.stack
        assert self.sink
        sink = self.sink
        started = time.monotonic()
        self.stack.start_role("sender")

        async def got() -> int:
            return sink_total(await sink_stats(session, sink), ("bl",))

        cap = self.drain_cap(self._reserve())
        samples, _ = await self.wait_until(got, 1, cap)  # start-up, not profiled
        detach = await self.pyspy.attach("sender", self.stack.procs["sender"].pid)
        more, done = await self.wait_until(got, backlog, cap - (time.monotonic() - started))
        samples += more
        await detach()
        first = next((t for t, v in samples if v > 0), None)
        note = (
            f"sender: first arrival {first - started:.1f}s after start"
            if first
            else "sender: no arrival"
        )
        if not done:
            note += f", CUT at {samples[-1][1]}/{backlog} (time budget)"
            self.log(f"sender did not finish; its log ends:\n{self.stack.tail('sender')}")
        # The sink's own first/last arrival stamps bound the drain window more precisely.
        count, t_first, t_last = (await sink_stats(session, sink)).get("bl", [0, 0, 0])
        if count > 1 and t_last > t_first:
            return (count - 1) / ((t_last - t_first) / 1e9), note
        return self.rate_of(samples), note

    async def pipeline(
        self, session: aiohttp.ClientSession, offsets: Offsets
    ) -> tuple[float | None, float | None, str]:
        assert self.stack
        assert self.sink
        sink = self.sink
        p = self.prof
        before = await offsets.total(self.topics.requests)
        t0_ns = time.monotonic_ns()
        w = await run_wrk(
            self.procs,
            self.stack.base_url,
            self.publish_path("pipe"),
            seconds=60,
            body=self.body,
            headers=self.auth,
            workdir=self.workdir,
            until=self.reached(offsets, self.topics.requests, before + p.pipeline_n),
        )
        await asyncio.sleep(0.3)
        published = await offsets.total(self.topics.requests) - before

        async def got() -> int:
            return sink_total(await sink_stats(session, sink), ("pipe",))

        _s, done = await self.wait_until(
            got,
            published,
            self.drain_cap(p.e2e_s + 5 + len(p.client_conc) * (p.client_cap_s + 3) + 10),
        )
        count, _first, last = (await sink_stats(session, sink)).get("pipe", [0, 0, 0])
        window = (last - t0_ns) / 1e9 if count else 0.0
        rate = count / window if window > 0 else None
        note = (
            f"{published} published by wrk in {w.seconds:.1f}s, {count} arrived, the last "
            f"{window:.1f}s after wrk started" + ("" if done else " (CUT by the time budget)")
        )
        return (w.ok_rate if not w.error else None), rate, note

    async def end_to_end(
        self, session: aiohttp.ClientSession
    ) -> tuple[OpenLoopResult, HdrHistogram, int, int]:
        assert self.stack
        assert self.sink
        p = self.prof
        url = f"{self.stack.base_url}{self.publish_path('e2e')}"
        res = await open_loop(
            session,
            url,
            rate=p.e2e_rate,
            seconds=p.e2e_s,
            body_size=len(self.body),
            headers=self.auth,
            nonce_prefix="n",
        )
        deadline = time.monotonic() + min(15.0, max(3.0, self.left() - 25))
        while True:
            async with session.get(f"{self.sink.base}/_e2e") as resp:
                recv: dict[str, list[int]] = await resp.json()
            if all(k in recv for k in res.acks) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        hist = HdrHistogram(1, 120_000_000, 3)
        missing = neg = 0
        for nonce, t_ack in res.acks.items():
            got = recv.get(nonce)
            if got is None:
                missing += 1
                continue
            if got[0] < t_ack:
                neg += 1
            hist.record_value(max(1, (got[0] - t_ack) // 1000))
        self.e2e_hops = await self.hops({k: v[1] for k, v in recv.items()})
        return res, hist, missing, neg

    async def hops(self, recv_wall_ns: dict[str, int]) -> str:
        """Where end-to-end time goes, from Kafka record timestamps (wall clock, ms).

        created (API accepted) → DeliveryDue record (stream workers' producer) → sink receipt.
        """
        assert self.stack
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        a_hops: list[float] = []
        b_hops: list[float] = []
        try:
            tps = await partitions(consumer, self.topics.deliveries)
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            pending = {tp for tp in tps if ends[tp] > 0}
            deadline = time.monotonic() + 20
            while pending and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batch.items():
                    for rec in records:
                        if rec.value and b"/e2e/m" in rec.value:
                            due = codec.decode(rec.value, DeliveryDue)
                            nonce = due.message.body.split(b" ", 1)[0].decode()
                            if nonce in recv_wall_ns:
                                a_hops.append(rec.timestamp - due.message.created_at)
                                b_hops.append(recv_wall_ns[nonce] / 1e6 - rec.timestamp)
                    if records and records[-1].offset + 1 >= ends[tp]:
                        pending.discard(tp)
        finally:
            await consumer.stop()
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

    async def clients(self) -> dict[tuple[str, int], tuple[int, float]]:
        p = self.prof
        assert self.sink
        url = f"{self.sink.base}/client/m"
        out: dict[tuple[str, int], tuple[int, float]] = {}
        for conc in p.client_conc:
            out[("aiohttp", conc)] = await client_aiohttp(
                url, p.client_k, conc, p.client_cap_s, self.body
            )
            out[("httpx", conc)] = await client_httpx(
                url, p.client_k, conc, p.client_cap_s, self.body
            )
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter phases (≤ 90 s in all)")
    parser.add_argument("--body-bytes", type=int, default=1024, help="publish body size")
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="profile the stream workers and the sender while they drain the backlog "
        "(needs py-spy; raw profiles go to DIR, a summary is printed)",
    )
    args = parser.parse_args(argv)
    prof = QUICK if args.quick else FULL

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    # The roles (python -m kafstash ...) must run this tree's code, not an installed copy.
    os.chdir(ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    procs = Procs()
    workdir = Path(tempfile.mkdtemp(prefix="kafstash-bench-"))
    bench = Bench(prof, args, procs, workdir)
    code = 0
    try:
        bench.setup()
        uvloop.run(bench.run())
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything", file=sys.stderr)
        code = 130
    except Exception:
        import traceback  # noqa: PLC0415

        traceback.print_exc()
        for stack in (bench.pub_stack, bench.stack):
            if stack is None:
                continue
            for role in stack.procs:
                print(f"--- {stack.prefix} {role} log ---\n{stack.tail(role)}", file=sys.stderr)
        code = 1
    finally:
        signal.signal(
            signal.SIGINT, signal.SIG_IGN
        )  # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if code == 0:
        total = time.monotonic() - bench.began
        print()
        print(
            f"kafstash benchmarks ({prof.name} run, {total:.0f} s, all on 127.0.0.1; "
            f"ratio = value ÷ baseline value)"
        )
        print()
        print(render(bench.rows))
        print()
        print("Details:")
        for line in bench.notes:
            print(f"- {line}")
        print()
        print("CPU per process during each phase (% of one core; 2 cores = 200%):")
        for line in bench.cpu_lines:
            print(f"- {line}")
        if bench.pyspy.summaries:
            print()
            print("py-spy (CPU samples while draining the backlog):")
            for line in bench.pyspy.summaries:
                print(f"- {line}")
    return code


if __name__ == "__main__":
    sys.exit(main())
