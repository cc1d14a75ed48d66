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


# Each wrk thread runs its own Lua state: setup() (main state) numbers the threads, request()
# (per thread) builds one body per request around the thread's counter.
_NONCE_LUA = """
local size = {size}
local prefix = {prefix}
local pad = string.rep("x", size)
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  n = 0
end
function request()
  n = n + 1
  local nonce = prefix .. tid .. "." .. n
  return wrk.format(nil, nil, nil, string.sub(nonce .. " " .. pad, 1, math.max(size, #nonce + 1)))
end
"""


def script(path: str, headers: dict[str, str], body_bytes: int, nonce_prefix: str) -> str:
    lines = [
        'wrk.method = "POST"',
        f"wrk.path = {json.dumps(path)}",
        *(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()),
        _NONCE_LUA.format(size=body_bytes, prefix=json.dumps(nonce_prefix)),
    ]
    return "\n".join(lines)


async def run_wrk(
    procs: Procs,
    url: str,
    path: str,
    *,
    seconds: float,
    body_bytes: int,
    nonce_prefix: str,
    headers: dict[str, str],
    workdir: Path,
    until: Callable[[], Awaitable[bool]] | None = None,
) -> WrkResult:
    """wrk (closed-loop, WRK_CONNS keep-alive connections) POSTing to ``path``.

    Each body is ``body_bytes`` long and starts with a nonce of its own and a space,
    ``<nonce_prefix><thread>.<n>``, so the sink can count receipts per message.

    With ``until`` wrk is interrupted (SIGINT: it stops and prints its figures for the time it
    ran) as soon as ``until()`` is true, polled every 50 ms; ``seconds`` is then only a bound.
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        return WrkResult(error="wrk not installed (apt-get install -y wrk)")
    lua = workdir / f"wrk-{uuid.uuid4().hex[:6]}.lua"
    lua.write_text(script(path, headers, body_bytes, nonce_prefix))
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
