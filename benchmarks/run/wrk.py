"""wrk, the C closed-loop load generator: ``WRK_CONNS`` keep-alive connections POSTing one body."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import signal
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import Procs, terminate

WRK_THREADS, WRK_CONNS = 2, 64


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
    procs.add("wrk", lambda: terminate(proc))
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
            terminate(proc)
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
