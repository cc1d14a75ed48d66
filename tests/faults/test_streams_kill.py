"""F3: kill -9 the stream workers while they hold delayed messages; restart them with no disk.

150 messages are published with delays spread over 3-15 s. The streams role is killed at ~4 s,
its local RocksDB state (``<home>/streams``) is deleted, and it is restarted at ~7 s: the delay
table can only come back from its Kafka changelog. Every message arrives, none before its
not-before, none later than downtime + recovery + 10 s past its due time.
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import time
import uuid
from collections.abc import Callable

import pytest

from tests.faults.ledger import Ledger, check, client, drain, publish
from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker

N = 150
DELAY_MIN_S, DELAY_MAX_S = 3.0, 15.0
KILL_AT_S, RESTART_AT_S = 4.0, 7.0
SLACK_S = 10.0
RECOVERY_LIMIT_S = 30.0
READY = re.compile(r"streams ready: delay table recovered, (\d+) messages pending")


def _ready_lines(stack: Stack) -> list[int]:
    text = stack.logs["streams"].read_text(errors="replace")
    return [int(m.group(1)) for m in READY.finditer(text)]


def test_kill_streams_holding_delays(stack: Stack, sink: Sink, route: Callable[[str], str]) -> None:
    path = route("ok")
    url = sink.url(path)
    ledger = Ledger()
    rnd = random.Random(5)
    delays = [round(rnd.uniform(DELAY_MIN_S, DELAY_MAX_S), 3) for _ in range(N)]
    tag = uuid.uuid4().hex[:6]

    async def publish_all() -> None:
        sem = asyncio.Semaphore(30)
        async with client(stack.base_url, stack.token) as c:

            async def one(i: int) -> None:
                async with sem:
                    await publish(c, ledger, url, f"d{i}-{tag}", delay_s=delays[i])

            await asyncio.gather(*(one(i) for i in range(N)))

    # The stack answers before its stream worker is ready (seconds more on a busy machine); the
    # worker to kill must hold the delays, so publishing starts once it has recovered its table.
    deadline = time.monotonic() + 60
    while not _ready_lines(stack):
        assert time.monotonic() < deadline, f"streams never ready:\n{stack.tail('streams')}"
        time.sleep(0.1)
    t0 = time.time()
    asyncio.run(publish_all())
    assert len(ledger.acked) == N
    # The kill comes after every ack: at ~4 s, or later when a busy machine slowed publishing
    # (the delays count from each ack, so most messages are still pending; asserted below).
    shift = max(0.0, time.time() - (t0 + KILL_AT_S))

    time.sleep(max(0.0, t0 + shift + KILL_AT_S - time.time()))
    before = len(_ready_lines(stack))
    killed_at = time.time()
    stack.kill("streams")
    shutil.rmtree(stack.home / "streams")  # no local state: it must come from the changelog
    time.sleep(max(0.0, t0 + shift + RESTART_AT_S - time.time()))
    restarted_at = time.time()
    stack.restart("streams")
    deadline = time.monotonic() + 60
    while len(_ready_lines(stack)) <= before:
        assert time.monotonic() < deadline, f"streams did not recover:\n{stack.tail('streams')}"
        assert stack.procs["streams"].poll() is None, stack.tail("streams")
        time.sleep(0.1)
    ready_at = time.time()
    pending_after_restart = _ready_lines(stack)[before]

    receipts = drain(sink, path, ledger, timeout=90)
    report = check(ledger, receipts)
    # A message can have left the table by the kill only if its not-before had passed; that time
    # counts from when the API took the request, which is no earlier than the client sent it
    # (``earliest``). Counting from the ack undercounts when a busy machine answers slowly.
    due_by_kill = sum(1 for a in ledger.acked if a.earliest <= killed_at)
    recovery = ready_at - restarted_at
    downtime = restarted_at - killed_at
    print(
        report.summary("streams-kill")
        + f" due_before_kill={due_by_kill} pending_after_restart={pending_after_restart}"
        f" downtime={downtime:.1f}s recovery={recovery:.1f}s"
    )
    report.assert_rule()
    # The restarted worker found the undelivered messages in the changelog, not on disk.
    assert pending_after_restart >= N - due_by_kill - 5 > 0
    assert report.max_lateness_s <= downtime + recovery + SLACK_S
    # The restarted worker rejoins once its dead predecessor's session (10 s) expires, then
    # restores the changelog: faust's 60 s default once made every delayed message a minute late.
    assert recovery <= RECOVERY_LIMIT_S, f"streams took {recovery:.1f}s to recover"
    # Replays after the kill re-fire only what was due around it: bounded by what was in flight.
    around_kill = sum(1 for a in ledger.acked if abs(a.t_start + a.delay_s - killed_at) <= 5)
    assert report.duplicates <= around_kill
