"""The stream workers' faust consumer reads a record fetched again after a seek back."""

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from kafstash.streams.refetch import guard


class _Consumer:
    """The two attributes of faust's Consumer that the guard wraps, nothing else."""

    def __init__(self, batches: list[list[tuple[str, int]]]) -> None:
        self._read_offset: dict[str, int | None] = {"p1": 7}
        self._batches = batches

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[str, Any]]:
        for tp, offset in self._batches.pop(0):
            yield tp, SimpleNamespace(offset=offset)


def _fetch_loop(consumer: Any) -> list[int]:
    """faust's drop rule (Consumer._drain_messages), over one getmany: the offsets it keeps."""
    kept: list[int] = []
    get_read_offset = consumer._read_offset.__getitem__
    set_read_offset = consumer._read_offset.__setitem__

    async def run() -> None:
        async for tp, message in consumer.getmany(timeout=1.0):
            r_offset = get_read_offset(tp)
            if r_offset is None or message.offset >= r_offset:
                kept.append(message.offset)
                set_read_offset(tp, message.offset)

    asyncio.run(run())
    return kept


def test_records_below_the_remembered_offset_are_read_not_dropped() -> None:
    # p0 was read up to 85 from a batch fetched before a rebalance; the seek back to its
    # committed offset 63 fetches 63..90 again.
    consumer = guard(_Consumer([[("p0", o) for o in range(63, 91)]]))
    consumer._read_offset["p0"] = 85
    assert _fetch_loop(consumer) == list(range(63, 91))


def test_forward_reading_and_other_partitions_are_unchanged() -> None:
    consumer = guard(_Consumer([[("p0", 3), ("p0", 4), ("p1", 8), ("p0", 9)]]))
    consumer._read_offset["p0"] = 2
    assert _fetch_loop(consumer) == [3, 4, 8, 9]
    assert consumer._read_offset["p0"] == 9
    assert consumer._read_offset["p1"] == 8  # kept what faust had before the guard


def test_without_the_guard_faust_drops_them() -> None:
    # The bug the guard is for, shown on the same loop: without it the records are lost.
    consumer = _Consumer([[("p0", o) for o in range(63, 91)]])
    consumer._read_offset["p0"] = 85
    assert _fetch_loop(consumer) == list(range(85, 91))
