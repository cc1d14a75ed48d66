"""An in-memory index of due times over the delay table (which lives in RocksDB).

The table is the truth; this heap only says when to look. It holds (due, message id) pairs, is
rebuilt from the table after every partition recovery, and may hold stale pairs: a Fire for a
stale pair is ignored by the partition owner.
"""

import asyncio
import heapq
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol


class DueIndex(Protocol):
    """What the firing loops need of an index of due times (this heap, or the delay table's
    on-disk index in disk_timer_index.py)."""

    def __len__(self) -> int: ...
    def add(self, due_ms: int, message_id: str) -> None: ...
    def replace_all(self, pairs: Iterable[tuple[int, str]]) -> None: ...
    def pop_due(self, now_ms: int, limit: int = 10_000) -> list[tuple[int, str]]: ...
    def next_due(self) -> int | None: ...
    async def wait(self, timeout_s: float) -> None: ...


class TimerIndex:
    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, due_ms: int, message_id: str) -> None:
        earliest = self._heap[0][0] if self._heap else None
        heapq.heappush(self._heap, (due_ms, message_id))
        if earliest is None or due_ms < earliest:
            self._changed.set()

    def replace_all(self, pairs: Iterable[tuple[int, str]]) -> None:
        heap = list(pairs)
        heapq.heapify(heap)
        self._heap = heap
        self._changed.set()

    def pop_due(self, now_ms: int, limit: int = 10_000) -> list[tuple[int, str]]:
        # Cleared here, not in wait(): an add() while the caller is busy must still wake it.
        self._changed.clear()
        out: list[tuple[int, str]] = []
        while self._heap and self._heap[0][0] <= now_ms and len(out) < limit:
            out.append(heapq.heappop(self._heap))
        return out

    def next_due(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    async def wait(self, timeout_s: float) -> None:
        """Sleep until ``timeout_s`` passes or an earlier due time is added."""
        await wait_for(self._changed, timeout_s)


async def wait_for(changed: asyncio.Event, timeout_s: float) -> None:
    """Until ``changed`` is set or ``timeout_s`` passes (every index's ``wait``)."""
    try:
        async with asyncio.timeout(max(0.0, timeout_s)):
            await changed.wait()
    except TimeoutError:
        pass


async def run_due(
    index: DueIndex,
    now_ms: Callable[[], int],
    send: Callable[[int, str], Awaitable[object]],
) -> None:
    """Forever: hand every due ``(time, key)`` to ``send`` (which routes it through the partition
    owner), then sleep until the next one is due, or a second, or an earlier key is added."""

    async def send_each(pairs: list[tuple[int, str]]) -> None:
        for due, key in pairs:
            await send(due, key)

    await run_due_batches(index, now_ms, send_each)


async def run_due_batches(
    index: DueIndex,
    now_ms: Callable[[], int],
    send: Callable[[list[tuple[int, str]]], Awaitable[object]],
    gather_s: float = 0.0,
) -> None:
    """``run_due``, handing ``send`` each pop's due pairs at once (at most 10,000, due order).

    After a pop that found pairs it waits ``gather_s`` before the next: the first pair due after
    a quiet spell goes at once, and while pairs keep falling due each pop gathers ``gather_s`` of
    them instead of the one or two that fall due per millisecond."""
    while True:
        now = now_ms()
        pairs = index.pop_due(now)
        if pairs:
            await send(pairs)
            if gather_s > 0:
                await asyncio.sleep(gather_s)
        nxt = index.next_due()
        await index.wait(1.0 if nxt is None else min(1.0, (nxt - now_ms()) / 1000))
