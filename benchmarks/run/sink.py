"""What the counting sink (``benchmarks/servers.py sink``) has received, read over HTTP."""

from __future__ import annotations

import aiohttp

from benchmarks.harness import ServerProcess


async def sink_stats(session: aiohttp.ClientSession, sink: ServerProcess) -> dict[str, list[int]]:
    """First path segment -> [count, first arrival ns, last arrival ns]."""
    async with session.get(f"{sink.base}/_stats") as resp:
        data: dict[str, list[int]] = await resp.json()
        return data


def sink_total(stats: dict[str, list[int]], prefixes: tuple[str, ...]) -> int:
    return sum(stats[p][0] for p in prefixes if p in stats)
