"""until_handled: an agent's event is handled again after a failure, never dropped."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from kafstash.streams.handled import LONGEST_PAUSE_S, until_handled


@dataclass(frozen=True)
class _At:
    topic: str = "t"
    partition: int = 0
    offset: int = 5


async def test_a_failing_handler_runs_again_after_growing_pauses_until_it_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []
    pauses: list[float] = []

    async def handle() -> None:
        calls.append(len(calls))
        if len(calls) < 8:
            raise RuntimeError("the producer gave up")

    async def sleep(s: float) -> None:
        pauses.append(s)

    await until_handled(handle, what="request", at=_At(), sleep=sleep)

    assert len(calls) == 8
    assert pauses == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, LONGEST_PAUSE_S]
    failures = [r for r in caplog.records if "request t/0@5" in r.getMessage()]
    assert len(failures) == 7
    assert all(r.exc_info is not None for r in failures)


async def test_a_handler_that_succeeds_runs_once_without_a_pause() -> None:
    calls = 0
    pauses: list[float] = []

    async def handle() -> None:
        nonlocal calls
        calls += 1

    async def sleep(s: float) -> None:
        pauses.append(s)

    await until_handled(handle, what="x", at=_At(), sleep=sleep)

    assert (calls, pauses) == (1, [])


async def test_cancellation_goes_through_at_once() -> None:
    started = asyncio.Event()

    async def handle() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(until_handled(handle, what="x", at=_At()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
