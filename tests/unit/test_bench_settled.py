"""Issue 10 item 7: the "63 duplicates" of the pipeline phase were publishes wrk still had in
flight when it was stopped, appended after the phase had counted what it published. The phase
now counts the requests topic once it stopped growing; this pins that rule (no broker: the
offsets reader is a stand-in that grows like the topic did)."""

import asyncio
from types import SimpleNamespace

from benchmarks.run.pipeline import settled


class _GrowingTopic:
    """End offsets read over time: wrk's last in-flight publishes land after the first read."""

    def __init__(self, totals: list[int]) -> None:
        self._totals = totals
        self.reads = 0

    async def total(self, topic: str) -> int:
        assert topic == "p.requests"
        value = self._totals[min(self.reads, len(self._totals) - 1)]
        self.reads += 1
        return value


def _bench(totals: list[int]) -> SimpleNamespace:
    return SimpleNamespace(offsets=_GrowingTopic(totals))


def test_counts_what_was_appended_after_wrk_stopped() -> None:
    # 6,002 when wrk was stopped, then the 63 it still had in flight.
    bench = _bench([6_002, 6_040, 6_065, 6_065])
    assert asyncio.run(settled(bench, "p.requests", quiet_s=0.001)) == 6_065  # type: ignore[arg-type]
    assert bench.offsets.reads == 4


def test_a_topic_that_keeps_growing_is_read_until_the_cap() -> None:
    bench = _bench(list(range(0, 10_000, 7)))
    got = asyncio.run(settled(bench, "p.requests", quiet_s=0.001, cap_s=0.05))  # type: ignore[arg-type]
    # bounded, and the answer is the newest count it read
    assert 2 < bench.offsets.reads < 1_000
    assert got == 7 * (bench.offsets.reads - 1)
