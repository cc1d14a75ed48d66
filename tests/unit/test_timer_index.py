"""TimerIndex and DiskTimerIndex: due-time order, bounded pops, waking the firing loop early."""

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafstash.streams.disk_timer_index import DiskTimerIndex
from kafstash.streams.timer_index import DueIndex, TimerIndex, run_due, run_due_batches

NOW = 1_700_000_000_000


@pytest.fixture(params=["heap", "disk"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DueIndex]:
    """Both implementations keep one contract: the heap (schedules, gates, waits) and the
    on-disk index (the delay table's, which may hold millions)."""
    if request.param == "heap":
        yield TimerIndex()
        return
    disk = DiskTimerIndex(tmp_path / "timers")
    yield disk
    disk.close()


def test_empty_index(index: DueIndex) -> None:

    assert len(index) == 0
    assert index.next_due() is None
    assert index.pop_due(NOW) == []


def test_pops_due_pairs_in_due_order_and_keeps_the_rest(index: DueIndex) -> None:
    for due, mid in [(NOW + 30, "c"), (NOW - 10, "a"), (NOW + 5, "x"), (NOW, "b")]:
        index.add(due, mid)

    assert len(index) == 4
    assert index.next_due() == NOW - 10
    assert index.pop_due(NOW) == [(NOW - 10, "a"), (NOW, "b")]
    assert len(index) == 2
    assert index.next_due() == NOW + 5
    assert index.pop_due(NOW + 100) == [(NOW + 5, "x"), (NOW + 30, "c")]
    assert index.next_due() is None


def test_same_due_ordered_by_message_id(index: DueIndex) -> None:
    index.add(NOW, "msg_b")
    index.add(NOW, "msg_a")

    assert index.pop_due(NOW) == [(NOW, "msg_a"), (NOW, "msg_b")]


def test_stale_duplicates_are_kept(index: DueIndex) -> None:
    # A rescheduled message leaves its old pair; the partition owner ignores its Fire.
    index.add(NOW, "m")
    index.add(NOW + 10, "m")

    assert index.pop_due(NOW + 10) == [(NOW, "m"), (NOW + 10, "m")]


def test_pop_due_respects_the_limit(index: DueIndex) -> None:
    for i in range(5):
        index.add(NOW + i, f"m{i}")

    assert index.pop_due(NOW + 10, limit=2) == [(NOW, "m0"), (NOW + 1, "m1")]
    assert len(index) == 3
    assert index.next_due() == NOW + 2
    assert index.pop_due(NOW + 10, limit=2) == [(NOW + 2, "m2"), (NOW + 3, "m3")]
    assert index.pop_due(NOW + 10, limit=2) == [(NOW + 4, "m4")]
    assert len(index) == 0


def test_replace_all_discards_the_old_pairs(index: DueIndex) -> None:
    index.add(NOW - 1, "old")

    index.replace_all([(NOW + 20, "b"), (NOW + 10, "a"), (NOW + 30, "c")])

    assert len(index) == 3
    assert index.next_due() == NOW + 10
    assert index.pop_due(NOW) == []
    assert index.pop_due(NOW + 25) == [(NOW + 10, "a"), (NOW + 20, "b")]


def test_replace_all_with_nothing_empties_the_index(index: DueIndex) -> None:
    index.add(NOW, "a")

    index.replace_all([])

    assert len(index) == 0
    assert index.next_due() is None


def test_a_due_below_the_last_popped_one_is_still_found(index: DueIndex) -> None:
    # A retry or a Cancel marker can be due before what the loop popped last.
    index.add(NOW + 10, "b")
    assert index.pop_due(NOW + 10) == [(NOW + 10, "b")]
    index.add(NOW, "late")

    assert index.next_due() == NOW
    assert index.pop_due(NOW + 20) == [(NOW, "late")]
    assert len(index) == 0


def test_the_disk_index_starts_empty_over_an_old_one(tmp_path: Path) -> None:
    # A cache of the delay table: what a killed worker left is wiped, recovery rebuilds it.
    first = DiskTimerIndex(tmp_path / "t")
    first.add(NOW, "left over")
    first.close()
    again = DiskTimerIndex(tmp_path / "t")

    assert len(again) == 0
    assert again.next_due() is None
    again.close()


def test_the_disk_index_rebuilds_from_a_generator_in_batches(tmp_path: Path) -> None:
    index = DiskTimerIndex(tmp_path / "t")
    index.replace_all((NOW + i, f"m{i:06d}") for i in range(25_000))

    assert len(index) == 25_000
    assert index.pop_due(NOW + 2) == [(NOW, "m000000"), (NOW + 1, "m000001"), (NOW + 2, "m000002")]
    assert len(index.pop_due(NOW + 30_000, limit=30_000)) == 24_997
    assert index.next_due() is None
    index.close()


# --- wait() --------------------------------------------------------------------------------
# Wall-clock bounds below are deliberately generous: they only tell "woke early" from "slept
# until the timeout" (several seconds apart).


async def _wait_with_add(index: DueIndex, due: int, *, timeout_s: float) -> float:
    """Seconds that ``index.wait(timeout_s)`` takes when another task adds ``due`` meanwhile."""

    async def add_soon() -> None:
        await asyncio.sleep(0.01)
        index.add(due, "new")

    adder = asyncio.create_task(add_soon())
    start = time.monotonic()
    await index.wait(timeout_s)
    elapsed = time.monotonic() - start
    await adder
    return elapsed


async def test_wait_returns_early_when_an_earlier_due_is_added(index: DueIndex) -> None:
    index.add(NOW + 60_000, "later")
    assert index.pop_due(NOW) == []  # the firing loop's turn: it then waits for NOW + 60 s

    elapsed = await _wait_with_add(index, NOW + 1_000, timeout_s=10.0)

    assert elapsed < 5.0
    assert index.next_due() == NOW + 1_000


async def test_wait_returns_early_when_a_due_is_added_to_an_empty_index(index: DueIndex) -> None:
    index.pop_due(NOW)

    elapsed = await _wait_with_add(index, NOW + 1_000, timeout_s=10.0)

    assert elapsed < 5.0


async def test_wait_does_not_return_early_for_a_later_due(index: DueIndex) -> None:
    index.add(NOW + 1_000, "sooner")
    index.pop_due(NOW)

    elapsed = await _wait_with_add(index, NOW + 60_000, timeout_s=0.3)

    assert elapsed >= 0.25  # slept to the timeout
    assert index.next_due() == NOW + 1_000


async def test_add_while_the_loop_is_busy_still_wakes_the_next_wait(index: DueIndex) -> None:
    # pop_due clears the signal, not wait(): an add between the two must not be lost.
    index.add(NOW + 60_000, "later")
    index.pop_due(NOW)
    index.add(NOW + 1_000, "sooner")

    start = time.monotonic()
    await index.wait(10.0)

    assert time.monotonic() - start < 5.0


async def test_wait_after_pop_due_sleeps_until_the_timeout(index: DueIndex) -> None:
    index.add(NOW, "a")
    index.pop_due(NOW)

    start = time.monotonic()
    await index.wait(0.2)

    assert time.monotonic() - start >= 0.15


async def test_wait_with_a_negative_timeout_returns_at_once(index: DueIndex) -> None:
    index.pop_due(NOW)

    start = time.monotonic()
    await index.wait(-5.0)

    assert time.monotonic() - start < 5.0


async def test_replace_all_wakes_the_waiter(index: DueIndex) -> None:
    index.pop_due(NOW)

    async def rebuild_soon() -> None:
        await asyncio.sleep(0.01)
        index.replace_all([(NOW + 5, "m")])

    task = asyncio.create_task(rebuild_soon())
    start = time.monotonic()
    await index.wait(10.0)
    await task

    assert time.monotonic() - start < 5.0


async def test_run_due_sends_what_is_due_and_wakes_for_an_earlier_key(index: DueIndex) -> None:
    clock = {"now": 1_000}
    index.add(900, "past")
    index.add(10_000_000, "far")
    sent: list[tuple[int, str]] = []

    async def send(due: int, key: str) -> None:
        sent.append((due, key))

    task = asyncio.create_task(run_due(index, lambda: clock["now"], send))
    try:
        await asyncio.sleep(0.05)
        assert sent == [(900, "past")]
        clock["now"] = 2_000
        index.add(1_500, "added")  # wakes the sleeping loop at once
        await asyncio.sleep(0.05)
        assert sent == [(900, "past"), (1_500, "added")]
    finally:
        task.cancel()


async def test_run_due_batches_hands_over_each_pop_at_once(index: DueIndex) -> None:
    for i in range(5):
        index.add(900 + i, f"k{i}")
    index.add(10_000_000, "far")
    batches: list[list[tuple[int, str]]] = []

    async def send(pairs: list[tuple[int, str]]) -> None:
        batches.append(pairs)

    task = asyncio.create_task(run_due_batches(index, lambda: 1_000, send))
    try:
        await asyncio.sleep(0.05)
        assert batches == [[(900 + i, f"k{i}") for i in range(5)]]
    finally:
        task.cancel()


async def test_run_due_batches_gathers_pairs_that_keep_falling_due(index: DueIndex) -> None:
    index.add(900, "first")
    batches: list[list[tuple[int, str]]] = []

    async def send(pairs: list[tuple[int, str]]) -> None:
        batches.append(pairs)
        if len(batches) == 1:  # more fall due right after the first pop
            index.add(950, "a")
            index.add(960, "b")

    task = asyncio.create_task(run_due_batches(index, lambda: 1_000, send, gather_s=0.2))
    try:
        await asyncio.sleep(0.05)
        assert batches == [[(900, "first")]]  # the first went at once; the next pop waits
        await asyncio.sleep(0.3)
        assert batches == [[(900, "first")], [(950, "a"), (960, "b")]]
    finally:
        task.cancel()
