"""F7: a schedule across a kill -9 of the stream workers, then across a restart of every role.

An every-2-seconds schedule (kafstash's seconds extension) delivers to the sink. The streams role
is killed half a second before a tick, its local state is deleted (the cron table can only come
back from its changelog) and it is restarted. Message ids of a firing are derived from
(user, schedule, tick, target), so each receipt names its tick. Then:

- no message is delivered twice and every delivery belongs to a tick of the cron;
- every tick before the kill and every tick after recovery was delivered (none missed);
- the tick that was due while the worker was down fired exactly once, late, and the other ticks
  of the downtime did not fire in a burst after it;
- after all three roles are stopped and started again, the schedule is still listed (the API's
  view is rebuilt from the state topic) and keeps firing every tick.
"""

from __future__ import annotations

import re
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable

import pytest
from qstash import QStash

from kafstash.schemas.schedules import tick_message_id
from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker

EVERY_2S = "*/2 * * * * *"
PERIOD_MS = 2000
READY = re.compile(r"streams ready: cron table recovered, (\d+) schedules")


def _ready_count(stack: Stack) -> int:
    return len(READY.findall(stack.logs["streams"].read_text(errors="replace")))


def _wait_ready(stack: Stack, before: int, timeout: float = 90) -> float:
    deadline = time.monotonic() + timeout
    while _ready_count(stack) <= before:
        assert time.monotonic() < deadline, f"streams did not recover:\n{stack.tail('streams')}"
        assert stack.procs["streams"].poll() is None, stack.tail("streams")
        time.sleep(0.1)
    return time.time()


def _ticks(first_ms: int, last_ms: int) -> list[int]:
    start = first_ms - first_ms % PERIOD_MS
    return list(range(start, last_ms + 1, PERIOD_MS))


def _sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


def test_schedule_fires_once_per_tick_across_kills_and_restarts(
    stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    path = route("ok")
    url = sink.url(path)
    client = QStash(stack.token, base_url=stack.base_url)
    created_at = time.time()
    sid = client.schedule.create(destination=url, cron=EVERY_2S, body="k")
    sink.wait_count(path, 3, timeout=60)

    # -- kill -9 the stream worker half a second before a tick, with no local state left
    next_tick_s = (int(time.time() * 1000) // PERIOD_MS + 2) * PERIOD_MS / 1000
    _sleep_until(next_tick_s - 0.5)
    killed_at = time.time()
    before = _ready_count(stack)
    stack.kill("streams")
    shutil.rmtree(stack.home / "streams", ignore_errors=True)
    time.sleep(3)
    stack.restart("streams")
    ready_at = _wait_ready(stack, before)
    time.sleep(8)

    # -- stop every role (SIGTERM) and start them again: the schedule survives, keeps firing
    client.http._client.close()
    restart_at = time.time()
    before = _ready_count(stack)
    for role in ("api", "sender", "streams"):
        stack.procs[role].send_signal(signal.SIGTERM)
    for role in ("api", "sender", "streams"):
        stack.procs[role].wait(30)
        stack.start_role(role)
    stack.wait_api()
    client = QStash(stack.token, base_url=stack.base_url)
    [listed] = client.schedule.list()
    assert (listed.schedule_id, listed.cron, listed.destination) == (sid, EVERY_2S, url)
    assert listed.last_schedule_time is not None
    assert listed.last_schedule_time >= int(ready_at * 1000)
    restarted_ready_at = _wait_ready(stack, before)
    time.sleep(8)
    client.schedule.delete(sid)
    deleted_at = time.time()
    time.sleep(3)  # a firing published just before the delete may still be on its way
    client.http._client.close()

    receipts = sink.received(path)
    ids = Counter(r.message_id for r in receipts)
    tick_of = {
        tick_message_id(stack.user.user_id, sid, t, 0, url): t
        for t in _ticks(int(created_at * 1000), int(deleted_at * 1000) + PERIOD_MS)
    }
    delivered = sorted(tick_of[mid] for mid in ids if mid in tick_of)
    summary = (
        f"kill={killed_at:.1f} ready={ready_at:.1f} restart={restart_at:.1f}"
        f" ready2={restarted_ready_at:.1f} deleted={deleted_at:.1f} ticks={delivered}"
    )
    print(summary)
    assert all(r.signature_ok for r in receipts)
    assert all(r.headers["Upstash-Schedule-Id"] == sid for r in receipts)
    assert [m for m, n in ids.items() if n > 1] == [], summary  # no doubled tick
    assert set(ids) <= set(tick_of), summary  # every delivery is a tick of the cron

    def window(lo_s: float, hi_s: float) -> list[int]:
        return [t for t in _ticks(int(lo_s * 1000), int(hi_s * 1000)) if lo_s * 1000 < t]

    # No missed tick while a worker ran (a tick right at a boundary is given 0.5 s either way).
    first = delivered[0]
    for lo, hi in ((first / 1000 - 0.1, killed_at - 0.5), (ready_at + 1.0, restart_at - 0.5)):
        missing = [t for t in window(lo, hi) if t not in delivered]
        assert missing == [], (lo, hi, summary)
    missing = [t for t in window(restarted_ready_at + 1.0, deleted_at - 0.5) if t not in delivered]
    assert missing == [], summary
    # The tick due while the worker was down fired once, late; the rest of the downtime is
    # skipped rather than fired in a burst.
    pending = window(killed_at, killed_at + 2)[0]
    assert pending in delivered, summary
    assert [t for t in window(pending / 1000, ready_at - 0.5) if t in delivered] == [], summary
    late = [r for r in receipts if tick_of.get(r.message_id) == pending]
    assert late[0].at >= ready_at - 1.0, summary
