"""One benchmark run's shared state: the profile, the processes, the stacks, and how a phase runs.

The phase modules (``baselines``, ``publish``, ``drains``, ``pipeline``, ``end_to_end``,
``clients``) take a ``Bench`` and return their figures; ``__main__`` calls them in order.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from benchmarks.harness import (
    HOST,
    ROOT,
    CpuMeter,
    CpuSpan,
    OpenLoopResult,
    Procs,
    ServerProcess,
    delete_topics,
    machine_busy,
    machine_facts,
    open_loop,
    start_broker,
)
from benchmarks.run.kafka import Offsets
from benchmarks.run.pyspy import PySpy
from benchmarks.run.wrk import WRK_CONNS
from kafstash.config import Settings
from kafstash.provision import ensure_topics
from kafstash.schemas.topics import Topics
from kafstash.schemas.users import DEV_USERS
from tests.stack import Stack

T = TypeVar("T")
TOKEN = DEV_USERS[0].token
PARTITIONS = 4

# Targets from /work/shared/design.md "Performance budget" (ms); printed next to the latencies.
BUDGET = {"publish_p50": 5.0, "publish_p99": 25.0, "e2e_p50": 50.0, "e2e_p99": 250.0}

__all__ = ["BUDGET", "FULL", "HOST", "PARTITIONS", "QUICK", "WRK_CONNS", "Bench", "Profile"]


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


FULL = Profile("full", 8, 10, (500, 1000), 10, 10_000, 6_000, 200, 10, 10_000, (256, 64), 8, 360)
QUICK = Profile("quick", 3, 3, (500,), 3, 2_500, 1_500, 200, 3, 2_000, (256,), 4, 130)


class Bench:
    def __init__(
        self, prof: Profile, args: argparse.Namespace, procs: Procs, workdir: Path
    ) -> None:
        self.prof = prof
        self.args = args
        self.procs = procs
        self.workdir = workdir
        self.began = time.monotonic()
        self.cpu_lines: list[str] = []
        self.spans: dict[str, CpuSpan] = {}  # phase name -> CPU per process over it
        self.facts: list[str] = []
        self.broker: Any = None
        self.bootstrap = ""
        self.external = False
        self.pub_stack: Stack | None = None  # API only: publish throughput and latency
        self.stack: Stack | None = None  # every role: backlog drains, pipeline, end-to-end
        self.scale_stack: Stack | None = None  # one, then two processes of each role
        self.hello: ServerProcess | None = None
        self.sink: ServerProcess | None = None
        self.body = b"x" * args.body_bytes
        self.pyspy = PySpy(args.py_spy, procs)
        self.auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"}
        self.topics = Topics("unset")  # the main stack's, set when it starts
        self._session: aiohttp.ClientSession | None = None
        self._offsets: Offsets | None = None

    # -- what the phases share

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "inside Bench.connected() only"
        return self._session

    @property
    def offsets(self) -> Offsets:
        assert self._offsets is not None, "inside Bench.connected() only"
        return self._offsets

    def connected(self) -> _Connected:
        """``async with bench.connected():`` one HTTP session and one offsets reader."""
        return _Connected(self)

    def left(self) -> float:
        return self.prof.budget_s - (time.monotonic() - self.began)

    def log(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.began:6.1f}s] {msg}", file=sys.stderr, flush=True)

    def pids(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for tag, stack in (("pub-", self.pub_stack), ("", self.stack), ("so-", self.scale_stack)):
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

    async def phase(self, name: str, coro: Awaitable[T]) -> T:
        meter = CpuMeter(self.pids)
        before = meter.start()
        self.log(f"{name} ...")
        result = await coro
        span = meter.span(before)
        self.spans[name] = span
        self.cpu_lines.append(f"{name}: {span.describe()}")
        return result

    async def open_loop(
        self,
        url: str,
        *,
        rate: float,
        headers: dict[str, str],
        seconds: float | None = None,
        prefix: str,
    ) -> OpenLoopResult:
        """The run's open-loop generator: ≤ 2,000 in flight, 15 s per request, 20 s to finish."""
        return await open_loop(
            self.session,
            url,
            rate=rate,
            seconds=self.prof.open_s if seconds is None else seconds,
            body_bytes=len(self.body),
            headers=headers,
            prefix=prefix,
            max_in_flight=2000,
            timeout_s=15,
            finish_s=20,
        )

    def new_stack(self, name: str) -> Stack:
        stack = Stack(self.bootstrap, self.workdir / name, partitions=PARTITIONS)
        stack.home.mkdir(parents=True, exist_ok=True)
        self.procs.add(f"kafstash {name}", stack.stop)
        if self.external:
            self.procs.add(
                f"topics {stack.prefix}", lambda: delete_topics(self.bootstrap, stack.prefix)
            )
        return stack

    async def start_api(self, stack: Stack) -> None:
        await ensure_topics(Settings.from_env(stack.env))
        stack.start_role("api")
        await asyncio.to_thread(stack.wait_api, 60)
        self.log(f"kafstash api up (prefix {stack.prefix})")

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

    def reached(self, topic: str, target: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return await self.offsets.total(topic) >= target

        return check

    def drain_cap(self, reserve_s: float) -> float:
        return max(3.0, self.left() - reserve_s)

    def reserve(self) -> float:
        """Seconds the phases after the drains need (pipeline, end-to-end, clients, teardown)."""
        p = self.prof
        return p.pipeline_n / 400 + self.reserve_after_pipeline()

    def reserve_after_pipeline(self) -> float:
        p = self.prof
        scale_out = 2 * p.pipeline_n / 400 + 40  # two pipelines, roles starting and joining
        return p.e2e_s + 5 + len(p.client_conc) * (p.client_cap_s + 3) + 10 + scale_out

    # -- setup (synchronous, before the event loop)

    def setup(self) -> None:
        # Other processes on the machine skew every figure; measure how busy it is before we start.
        busy0, t0 = machine_busy(), time.monotonic()
        time.sleep(2)
        background = 100 * (machine_busy() - busy0) / (time.monotonic() - t0)
        if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            self.log("starting Kafka (LocalBroker)")
        self.bootstrap, note, self.broker = start_broker(self.workdir, self.procs)
        self.external = self.broker is None
        self.facts = machine_facts(note)
        self.facts.append(
            f"idle:    before the run the machine was {background:.0f}% busy "
            "(% of one core, processes not started by this run)"
        )
        print("\n".join(self.facts), flush=True)
        servers = [sys.executable, str(ROOT / "benchmarks" / "servers.py")]
        self.hello = ServerProcess("hello", [*servers, "hello"], "/_stats", self.procs)
        self.sink = ServerProcess("sink", [*servers, "sink"], "/_stats", self.procs)


class _Connected:
    def __init__(self, bench: Bench) -> None:
        self._bench = bench

    async def __aenter__(self) -> Bench:
        b = self._bench
        b._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))
        b._offsets = Offsets(b.bootstrap)
        await b._offsets.__aenter__()
        return b

    async def __aexit__(self, *exc: object) -> None:
        b = self._bench
        if b._offsets is not None:
            await b._offsets.__aexit__(*exc)
        if b._session is not None:
            await b._session.close()
        b._session = b._offsets = None
