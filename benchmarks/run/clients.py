"""Phase 6, the sender's HTTP client: aiohttp (as the sender configures it) against httpx.

kafstash is stopped first, so only the client and the sink compete for the machine. K POSTs go
to the same sink at concurrency C with each client; the figure is each one's rate against wrk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx

from benchmarks.run.baselines import Baselines
from benchmarks.run.context import Bench, Profile
from benchmarks.run.figures import Figures, number, ratio
from benchmarks.run.report import Row, fmt_rate, fmt_ratio
from kafstash.sinks.http.sender import SenderConfig

Runs = dict[tuple[str, int], tuple[int, float]]  # (client, concurrency) -> (done, seconds)


async def run(bench: Bench) -> Runs:
    return await bench.phase("sender HTTP client: aiohttp vs httpx", _measure(bench))


async def _measure(bench: Bench) -> Runs:
    p = bench.prof
    assert bench.sink
    url = f"{bench.sink.base}/client/m"
    out: Runs = {}
    for conc in p.client_conc:
        out[("aiohttp", conc)] = await client_aiohttp(
            url, p.client_k, conc, p.client_cap_s, bench.body
        )
        out[("httpx", conc)] = await client_httpx(url, p.client_k, conc, p.client_cap_s, bench.body)
    return out


async def client_aiohttp(
    url: str, k: int, conc: int, cap_s: float, body: bytes
) -> tuple[int, float]:
    # Configured as sinks/http/sender.py configures it.
    connector = aiohttp.TCPConnector(limit=conc, ttl_dns_cache=30)
    async with aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
        cookie_jar=aiohttp.DummyCookieJar(),
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


def at_sender_concurrency(runs: Runs) -> float | None:
    """The bare aiohttp client's rate at the sender's own concurrency, if it was measured."""
    return rates(runs).get(("aiohttp", SenderConfig.concurrency))


def rates(runs: Runs) -> dict[tuple[str, int], float]:
    return {key: (n / secs if secs else 0.0) for key, (n, secs) in runs.items()}


def rows(runs: Runs, base: Baselines, prof: Profile) -> list[Row]:
    section = f"4. Sender HTTP client ({prof.client_k:,} POSTs each, same sink)"
    by = rates(runs)
    out = []
    for conc in prof.client_conc:
        a_rate, x_rate = by[("aiohttp", conc)], by[("httpx", conc)]
        out += [
            Row(
                section,
                f"aiohttp.ClientSession, concurrency {conc}",
                fmt_rate(a_rate),
                "wrk → same sink",
                fmt_rate(base.sink_rate),
                fmt_ratio(a_rate, base.sink_rate),
            ),
            Row(
                section,
                f"httpx.AsyncClient (defaults), concurrency {conc}",
                fmt_rate(x_rate),
                "wrk → same sink",
                fmt_rate(base.sink_rate),
                fmt_ratio(x_rate, base.sink_rate),
            ),
            Row(
                section,
                "  httpx ÷ aiohttp",
                fmt_rate(x_rate),
                "aiohttp, same concurrency",
                fmt_rate(a_rate),
                fmt_ratio(x_rate, a_rate),
            ),
        ]
    return out


def note(runs: Runs, prof: Profile) -> str:
    return (
        "clients: "
        + ", ".join(f"{name} c={conc} {k} in {s:.1f}s" for (name, conc), (k, s) in runs.items())
        + f" (each stops at {prof.client_k} requests or {prof.client_cap_s:.0f}s)"
    )


def figures(runs: Runs, base: Baselines) -> Figures:
    out: Figures = {}
    by = rates(runs)
    for (name, conc), rate in by.items():
        out[f"{name}_rps_c{conc}"] = number(rate, 1)
        out[f"{name}_vs_wrk_sink_c{conc}"] = ratio(rate, base.sink_rate)
        if name == "httpx":
            out[f"httpx_vs_aiohttp_c{conc}"] = ratio(rate, by.get(("aiohttp", conc)))
    return out
