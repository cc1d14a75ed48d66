"""F11: one Upstash-Deduplication-Id, many publishes → one message id, one delivery.

Three races: 20 publishes at once, 20 one after another, and publishes on either side of (and
during) a kill -9 of the stream workers that hold the dedup table, whose local state is deleted
so the restarted worker must rebuild it from the changelog.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
import uuid
from collections.abc import Callable

import httpx
import pytest

from tests.faults.ledger import Attempt, Ledger, check, client, drain, publish
from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker

TIMES = 20
READY = re.compile(r"streams ready: delay table recovered")


def _dedup(key: str) -> dict[str, str]:
    return {"Upstash-Deduplication-Id": key}


def _one_id(attempts: list[Attempt]) -> str:
    """All acked answers name one message id: exactly one 201, the rest 202."""
    acked = [a for a in attempts if a.outcome == "acked"]
    ids = {a.message_id for a in acked}
    assert len(ids) == 1, f"one message id per deduplication id, got {ids}"
    statuses = sorted(a.status or 0 for a in acked)
    assert statuses.count(201) <= 1, statuses
    assert set(statuses) <= {201, 202}, statuses
    (mid,) = ids
    assert mid is not None
    return mid


def _restart_streams_without_state(stack: Stack) -> None:
    before = len(READY.findall(stack.logs["streams"].read_text(errors="replace")))
    stack.kill("streams")
    shutil.rmtree(stack.home / "streams")  # the dedup table must come from Kafka
    time.sleep(2)
    stack.restart("streams")
    deadline = time.monotonic() + 60
    while len(READY.findall(stack.logs["streams"].read_text(errors="replace"))) <= before:
        assert time.monotonic() < deadline, stack.tail("streams")
        time.sleep(0.2)


async def _across_crash(
    stack: Stack, ledger: Ledger, url: str, key: str, *, settle_s: float
) -> list[Attempt]:
    """Publish once; ``settle_s`` later kill -9 the stream workers (and their local state);
    publish again while they are down and three times after they recovered."""

    async def one(c: httpx.AsyncClient) -> Attempt:
        return await publish(c, ledger, url, key, headers=_dedup(key))

    async with client(stack.base_url, stack.token, timeout=20) as c:
        first = await one(c)
        assert first.status == 201, (first.status, first.detail)
        await asyncio.sleep(settle_s)
        crash = asyncio.create_task(asyncio.to_thread(_restart_streams_without_state, stack))
        await asyncio.sleep(0.5)
        during = await one(c)  # waits for a decision that only the restarted worker makes
        await crash
        after = [await one(c) for _ in range(3)]
    return [first, during, *after]


def _check_crash_answers(attempts: list[Attempt]) -> None:
    mid = _one_id(attempts)
    during = attempts[1]
    assert during.status in (202, 503), (during.status, during.detail)  # never a second 201
    assert [a.status for a in attempts[2:]] == [202] * 3
    assert all(a.message_id == mid for a in attempts[2:])


def test_dedup_races(stack: Stack, sink: Sink, route: Callable[[str], str]) -> None:
    path = route("ok")
    url = sink.url(path)
    ledger = Ledger()
    tag = uuid.uuid4().hex[:8]
    par, seq, crash = f"par-{tag}", f"seq-{tag}", f"crash-{tag}"

    async def parallel_and_sequential() -> tuple[list[Attempt], list[Attempt]]:
        async with client(stack.base_url, stack.token) as c:
            p = await asyncio.gather(
                *(publish(c, ledger, url, par, headers=_dedup(par)) for _ in range(TIMES))
            )
            s = [await publish(c, ledger, url, seq, headers=_dedup(seq)) for _ in range(TIMES)]
            return list(p), s

    p, s = asyncio.run(parallel_and_sequential())
    assert all(a.outcome == "acked" for a in p + s), [(a.status, a.detail) for a in p + s]
    _one_id(p)
    assert sorted(a.status for a in p) == [201] + [202] * (TIMES - 1)
    _one_id(s)
    assert [a.status for a in s] == [201] + [202] * (TIMES - 1)

    c_attempts = asyncio.run(_across_crash(stack, ledger, url, crash, settle_s=3.0))
    _check_crash_answers(c_attempts)
    receipts = drain(sink, path, ledger, timeout=60, quiet_s=5)
    report = check(ledger, receipts)
    print(
        report.summary("dedup-races")
        + f" attempts={len(ledger.attempts)} during_crash={c_attempts[1].status}"
    )
    report.assert_rule()
    assert report.delivered == 3
    assert report.duplicates == 0, "one delivery per deduplication id"
    assert len({r.message_id for r in receipts}) == 3


def test_dedup_kill_streams_right_after_publish(
    stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    path = route("ok")
    url = sink.url(path)
    ledger = Ledger()
    key = f"now-{uuid.uuid4().hex[:8]}"
    attempts = asyncio.run(_across_crash(stack, ledger, url, key, settle_s=0.0))
    _check_crash_answers(attempts)
    receipts = drain(sink, path, ledger, timeout=60, quiet_s=5)
    report = check(ledger, receipts)
    print(report.summary("dedup-kill-now"))
    report.assert_rule()
    assert report.delivered == 1
    assert report.duplicates == 0, "one delivery per deduplication id, even across a crash"
