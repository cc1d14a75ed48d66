"""What every kafstash benchmark needs, shared by ``benchmarks.run`` and ``benchmarks.soak``.

- **Processes**: ``Procs`` stops every child of a run in reverse order (also on Ctrl-C, SIGTERM
  or an error, through ``child_processes``); ``ServerProcess`` starts one of the benchmark's
  uvicorn servers on a socket bound here; ``start_broker`` a LocalBroker unless
  KAFKA_BOOTSTRAP_SERVERS is set.
- **CPU accounting**: ``CpuMeter`` reads each process's CPU time from /proc at the start and
  the end of a phase, plus this process, its reaped children (wrk, py-spy) and the machine's
  busy time (to show load that is not ours).
- **The open-loop generator**: ``open_loop`` sends request i at ``t0 + i / rate`` whatever the
  earlier requests are doing, and counts every latency from that **intended** time, so a stall
  is charged to every request that should have gone out during it (no coordinated omission;
  reliability-notes §5).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, KeysView
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
_MAX_US = 600_000_000  # 10 min: anything slower is clamped, and shows as max


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


def terminate(
    proc: subprocess.Popen[bytes] | asyncio.subprocess.Process, timeout: float = 10
) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after ``timeout``."""
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


@contextlib.contextmanager
def child_processes(tmp_prefix: str) -> Iterator[tuple[Procs, Path]]:
    """Run from the repository root with a temp dir; every process added is stopped at the end.

    SIGTERM raises KeyboardInterrupt, so both end the run the same way; a second Ctrl-C during
    the clean-up is ignored, because cutting it short would leave a broker running.
    """

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    # The roles (python -m kafstash ...) and the servers must run this tree's code.
    os.chdir(ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    procs = Procs()
    workdir = Path(tempfile.mkdtemp(prefix=tmp_prefix))
    try:
        yield procs, workdir
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)


class ServerProcess:
    """``argv + [FD]`` serving HTTP on a socket bound here and passed by descriptor (no port race).

    Ready when ``GET ready_path`` answers.
    """

    def __init__(self, name: str, argv: list[str], ready_path: str, procs: Procs) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        sock.listen(2048)
        self.port: int = sock.getsockname()[1]
        self.proc = subprocess.Popen(
            [*argv, str(sock.fileno())], pass_fds=[sock.fileno()], start_new_session=True
        )
        sock.close()
        procs.add(name, lambda: terminate(self.proc))
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{self.base}{ready_path}", timeout=1)
                return
            except httpx.TransportError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} server did not start") from None
                time.sleep(0.1)

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"


def start_broker(workdir: Path, procs: Procs) -> tuple[str, str, Any]:
    """(bootstrap, a line saying which broker, the LocalBroker or None if external)."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        return external, f"external {external}", None
    from kafstash.infra.kafka import LocalBroker, ensure_jars  # noqa: PLC0415
    from kafstash.infra.kafka.broker import KAFKA_VERSION  # noqa: PLC0415

    ensure_jars()
    broker = LocalBroker(workdir / "kafka")
    procs.add("kafka", broker.stop)
    broker.start()
    took = broker.startup_seconds or 0.0
    note = f"LocalBroker {KAFKA_VERSION} at {broker.bootstrap} (started in {took:.1f}s)"
    return broker.bootstrap, note, broker


def delete_topics(bootstrap: str, prefix: str) -> None:
    """Delete this run's topics from an external broker (they all start with ``prefix``)."""
    from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415

    async def go() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if t.startswith(prefix)]
            if names:
                await admin.delete_topics(names)
        finally:
            await admin.close()

    asyncio.run(go())


# ----------------------------------------------------------------------------- CPU accounting


def cpu_ticks(pid: int | None) -> float | None:
    """utime+stime of a live process in seconds (all its threads), from /proc."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_MEM = ("VmRSS", "VmHWM")


def memory_mb(pid: int | None) -> tuple[float, float] | None:
    """(resident now, resident peak over the process's life) in MiB, from /proc: VmRSS and
    VmHWM. The kernel keeps the peak, so a short spike between two polls is not missed."""
    if pid is None:
        return None
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    kb = {k: int(v.split()[0]) for k, _, v in (ln.partition(":") for ln in lines) if k in _MEM}
    if len(kb) < len(_MEM):
        return None  # a zombie has no memory lines
    return kb["VmRSS"] / 1024, kb["VmHWM"] / 1024


def machine_busy() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat), to spot other load."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields)
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSpan:
    """CPU seconds each process spent over one phase of ``wall`` seconds."""

    wall: float
    seconds: dict[str, float]  # process name -> CPU seconds
    others: float  # machine busy seconds none of ours account for

    def describe(self) -> str:
        """As % of one core, processes under 1% left out, then ``not ours``."""
        if self.wall <= 0:
            return ""
        parts = [
            f"{name} {100 * s / self.wall:.0f}%"
            for name, s in self.seconds.items()
            if 100 * s / self.wall >= 1
        ]
        parts.append(f"not ours {100 * self.others / self.wall:.0f}%")
        return ", ".join(parts)


class CpuMeter:
    """CPU seconds per process over a phase: ``span(start())`` at its end."""

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

    def span(self, before: dict[str, Any]) -> CpuSpan:
        after = self.start()
        seconds: dict[str, float] = {}
        for name in {**before, **after}:
            a = after.get(name)
            if name.startswith("_") or a is None:
                continue
            seconds[name] = a - (before.get(name) or 0.0)  # None: started during the phase
        others = max(0.0, after["_busy"] - before["_busy"] - sum(seconds.values()))
        return CpuSpan(wall=after["_t"] - before["_t"], seconds=seconds, others=others)

    def stop(self, before: dict[str, Any]) -> str:
        return self.span(before).describe()


def machine_facts(bootstrap_note: str) -> list[str]:
    """The report's header: date, machine, versions, broker, commit, load average."""
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
        out = (p.stdout + p.stderr).strip()
        wrk_v = out.splitlines()[0] if out else "?"
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    # Files that differ from the commit (the roles run this tree, edits included).
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"],
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


# ------------------------------------------------------------------------ open-loop generator


def histogram() -> HdrHistogram:
    return HdrHistogram(1, _MAX_US, 3)


def record(h: HdrHistogram, ns: int) -> None:
    h.record_value(min(_MAX_US, max(1, ns // 1000)))


def pct_ms(h: HdrHistogram, p: float) -> float:
    return h.get_value_at_percentile(p) / 1000 if h.get_total_count() else float("nan")


@dataclass
class OpenLoopResult:
    rate: float
    seconds: float
    planned: int = 0
    sent: int = 0
    late: int = 0  # left more than 5 ms after the intended time: the generator fell behind
    max_late_ms: float = 0.0
    dropped: int = 0  # not sent: too many requests already in flight
    ok: int = 0  # answered 2xx
    intended: dict[str, int] = field(default_factory=dict)  # nonce -> intended monotonic ns
    acks: dict[str, int] = field(default_factory=dict)  # nonce -> monotonic ns of the 2xx
    outcomes: Counter[str] = field(default_factory=Counter)  # "201", "503", "ClientError", ...
    answer: HdrHistogram = field(default_factory=histogram)  # intended → 2xx answer, acked only
    # actual send → 2xx answer: the gap to ``answer`` is time lost before the request left
    answer_from_send: HdrHistogram = field(default_factory=histogram)
    first_intended_ns: int = 0
    last_sent_ns: int = 0

    @property
    def acked(self) -> KeysView[str]:
        return self.acks.keys()

    @property
    def errors(self) -> dict[str, int]:
        """Answers other than 2xx (``HTTP 503``) and exceptions by name; drops not included."""
        return {
            (f"HTTP {k}" if k.isdigit() else k): v
            for k, v in self.outcomes.items()
            if k != "dropped" and not (k.isdigit() and 200 <= int(k) < 300)
        }

    def pct(self, p: float, corrected: bool = True) -> float:
        """Latency percentile in ms, from the intended send time (or the actual one)."""
        return pct_ms(self.answer if corrected else self.answer_from_send, p)


async def open_loop(
    session: aiohttp.ClientSession,
    url: str,
    *,
    rate: float,
    seconds: float,
    body_bytes: int,
    headers: dict[str, str],
    prefix: str | None,
    max_in_flight: int = 5000,
    timeout_s: float = 30.0,
    finish_s: float | None = None,
) -> OpenLoopResult:
    """POST ``int(rate * seconds)`` bodies ``"<prefix><i> xxx..."`` to ``url`` on a timetable.

    Without ``prefix`` the bodies are ``body_bytes`` of padding and no nonce is kept. After the
    last send it waits for the requests in flight, at most ``finish_s`` seconds if given.
    """
    res = OpenLoopResult(rate=rate, seconds=seconds, planned=int(rate * seconds))
    interval_ns = round(1e9 / rate)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    pad = b"x" * body_bytes
    tasks: set[asyncio.Task[None]] = set()

    async def one(nonce: str | None, intended_ns: int) -> None:
        body = pad
        if nonce is not None:
            body = (nonce.encode() + b" " + pad)[: max(body_bytes, len(nonce) + 1)]
        started = time.monotonic_ns()
        try:
            async with session.post(url, data=body, headers=headers, timeout=timeout) as resp:
                await resp.read()
                status = resp.status
        except Exception as exc:  # counted by name; the timetable goes on
            res.outcomes[type(exc).__name__] += 1
            return
        res.outcomes[str(status)] += 1
        if 200 <= status < 300:
            done = time.monotonic_ns()
            record(res.answer, done - intended_ns)
            record(res.answer_from_send, done - started)
            res.ok += 1
            if nonce is not None:
                res.acks[nonce] = done

    t0 = time.monotonic_ns() + 50_000_000
    res.first_intended_ns = t0
    for i in range(res.planned):
        intended = t0 + i * interval_ns
        wait = intended - time.monotonic_ns()
        if wait > 0:
            await asyncio.sleep(wait / 1e9)
        elif -wait > 5_000_000:
            res.late += 1
            res.max_late_ms = max(res.max_late_ms, -wait / 1e6)
        nonce = f"{prefix}{i}" if prefix is not None else None
        if nonce is not None:
            res.intended[nonce] = intended
        if len(tasks) >= max_in_flight:
            res.dropped += 1
            res.outcomes["dropped"] += 1
            continue
        task = asyncio.create_task(one(nonce, intended))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        res.sent += 1
    res.last_sent_ns = time.monotonic_ns()
    if tasks:
        await asyncio.wait(tasks, timeout=finish_s)
    return res
