"""F2: SIGSTOP one of two senders past its session timeout with deliveries in flight, SIGCONT it.

Two sender processes share the 2 partitions. Messages go to /slow/300/ at 40/s; at ~2 s one
sender is frozen for 14 s (its session timeout is 10 s), so the group moves its partition to the
other sender, which re-delivers what the frozen one had not committed. Nothing is lost; the
zombie's late deliveries are duplicates, and only of messages published before it froze.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.faults.ledger import Ledger, Report, check, client, drain, nonce_of, publish, steady
from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker

RATE = 40.0
PUBLISH_S = 6.0
PAUSE_AT_S = 2.0
PAUSE_S = 14.0  # > session_timeout_ms=10000 of the sender's consumer


def _start_second_sender(stack: Stack) -> None:
    log_path = stack.home / "sender2.log"
    stack.logs["sender2"] = log_path
    with log_path.open("ab") as out:
        stack.procs["sender2"] = subprocess.Popen(
            [sys.executable, "-m", "kafstash", "sender"],
            env=stack.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _assigned_one(stack: Stack, role: str) -> bool:
    lines = stack.logs[role].read_text(errors="replace").splitlines()
    assigned = [line for line in lines if "sender assigned" in line]
    return bool(assigned) and assigned[-1].endswith("assigned 1 partitions")


@dataclass
class PauseRun:
    report: Report
    timeline: dict[str, float]
    duplicated: set[str]
    before_pause: set[str]
    attempts: int
    both_alive: bool


@pytest.fixture(scope="module")
def paused_run(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PauseRun]:
    """The scenario, run once; the tests below judge it."""
    stack = Stack(kafka_bootstrap, tmp_path_factory.mktemp("sender-pause"))
    stack.start()
    sink = Sink(stack.user.current_signing_key, stack.user.next_signing_key)
    sink.start()
    try:
        yield _run(stack, sink)
    finally:
        sink.stop()
        stack.stop()


def _run(stack: Stack, sink: Sink) -> PauseRun:
    _start_second_sender(stack)
    deadline = time.monotonic() + 60
    while not (_assigned_one(stack, "sender") and _assigned_one(stack, "sender2")):
        assert time.monotonic() < deadline, stack.tail("sender2")
        assert stack.procs["sender2"].poll() is None, stack.tail("sender2")
        time.sleep(0.2)

    path = f"/slow/300/pause-{uuid.uuid4().hex[:8]}"
    url = sink.url(path)
    ledger = Ledger()
    frozen = stack.procs["sender"]
    timeline: dict[str, float] = {}

    async def run() -> None:
        stop = asyncio.Event()
        async with client(stack.base_url, stack.token) as c:

            def make(i: int) -> asyncio.Task:  # type: ignore[type-arg]
                return asyncio.create_task(publish(c, ledger, url, f"p{i}-{path[-8:]}"))

            load = asyncio.create_task(steady(make, rate=RATE, stop=stop))
            await asyncio.sleep(PAUSE_AT_S)
            timeline["pause"] = time.time()
            timeline["received_at_pause"] = len(sink.received(path))
            frozen.send_signal(signal.SIGSTOP)
            await asyncio.sleep(PUBLISH_S - PAUSE_AT_S)
            stop.set()
            await load
            await asyncio.sleep(max(0.0, timeline["pause"] + PAUSE_S - time.time()))
            frozen.send_signal(signal.SIGCONT)
            timeline["resume"] = time.time()

    try:
        asyncio.run(run())
    finally:
        frozen.send_signal(signal.SIGCONT)  # never leave a stopped process behind
    receipts = drain(sink, path, ledger, timeout=120, quiet_s=5)
    report = check(ledger, receipts)
    per_nonce = Counter(
        n for r in receipts if 200 <= r.answered < 300 and (n := nonce_of(r.body)) is not None
    )
    run_ = PauseRun(
        report=report,
        timeline=timeline,
        duplicated={n for n, c in per_nonce.items() if c > 1},
        before_pause={a.nonce for a in ledger.acked if a.t_start < timeline["pause"]},
        attempts=len(ledger.attempts),
        both_alive=frozen.poll() is None and stack.procs["sender2"].poll() is None,
    )
    print(
        "\n" + report.summary("sender-pause") + f" published_before_pause={len(run_.before_pause)}"
        f" duplicated_after_pause={len(run_.duplicated - run_.before_pause)}"
        f" paused={timeline['resume'] - timeline['pause']:.1f}s"
    )
    return run_


def test_pause_sender_past_session_timeout_loses_nothing(paused_run: PauseRun) -> None:
    report = paused_run.report
    report.assert_rule()
    assert report.acked == paused_run.attempts, "every publish was acknowledged"
    assert paused_run.both_alive, "both senders are still running"
    # Counted, and bounded: one pause yields at most one extra delivery per message.
    assert report.duplicates <= report.acked


def test_paused_sender_duplicates_only_what_it_held(paused_run: PauseRun) -> None:
    extra = paused_run.duplicated - paused_run.before_pause
    assert extra == set(), f"{len(extra)} duplicated messages were published after the freeze"
