"""F4: kill -9 the broker under a steady publish load, restart it ~10 s later.

A dedicated LocalBroker (not the session's: other tests use that one) runs in tmp_path, with a
short broker session so the restarted node registers quickly. During the outage every publish
must be answered 503 with Retry-After (the API's produce timeout is lowered to 4 s), or at worst
time out on the client, never a 500, never a hang past 12 s, never a 2xx that is then lost.
After the restart publishes succeed again without restarting any role, and after a drain every
acknowledged message was delivered.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafstash.infra.kafka import LocalBroker, ensure_jars
from tests.faults.ledger import Ledger, check, client, drain, publish, steady
from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker

RATE = 25.0  # publishes per second, open loop
WARMUP_S = 3.0
OUTAGE_S = 10.0
PRODUCE_TIMEOUT_S = 4
CLIENT_TIMEOUT_S = 15.0
HANG_LIMIT_S = 12.0  # no answer may take longer than this
RECOVERED_ACKS = 40  # consecutive acks after the restart that prove the API is back
RECOVERY_LIMIT_S = 60.0


@pytest.fixture
def outage_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    import os  # noqa: PLC0415

    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.skip("needs a LocalBroker it can kill (KAFKA_BOOTSTRAP_SERVERS is set)")
    ensure_jars()
    broker = LocalBroker(
        tmp_path / "kafka",
        extra_properties={
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "500",
        },
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def outage_stack(outage_broker: LocalBroker, tmp_path: Path) -> Iterator[Stack]:
    home = tmp_path / "home"
    home.mkdir()
    with Stack(
        outage_broker.bootstrap, home, env={"KAFSTASH_PRODUCE_TIMEOUT": str(PRODUCE_TIMEOUT_S)}
    ) as s:
        yield s


def test_broker_kill_and_restart_under_load(
    outage_broker: LocalBroker, outage_stack: Stack
) -> None:
    stack = outage_stack
    pids = {role: p.pid for role, p in stack.procs.items()}
    sink = Sink(stack.user.current_signing_key, stack.user.next_signing_key)
    sink.start()
    path = f"/ok/outage-{uuid.uuid4().hex[:8]}"
    ledger = Ledger()
    timeline: dict[str, float] = {}
    try:

        async def run() -> None:
            stop = asyncio.Event()
            async with client(stack.base_url, stack.token, timeout=CLIENT_TIMEOUT_S) as c:

                def make(i: int) -> asyncio.Task:  # type: ignore[type-arg]
                    return asyncio.create_task(publish(c, ledger, sink.url(path), f"o{i}"))

                load = asyncio.create_task(steady(make, rate=RATE, stop=stop))
                await asyncio.sleep(WARMUP_S)
                await asyncio.to_thread(outage_broker.kill)
                # Once reaped: a publish started while a starved JVM was still dying may be acked.
                timeline["kill"] = time.time()
                await asyncio.sleep(OUTAGE_S)
                timeline["restart"] = time.time()
                await asyncio.to_thread(outage_broker.start)
                timeline["ready"] = time.time()
                # Keep publishing until the API acknowledges again, steadily.
                deadline = time.monotonic() + RECOVERY_LIMIT_S
                while time.monotonic() < deadline:
                    recent = sorted(ledger.attempts, key=lambda a: a.t_start)[-RECOVERED_ACKS:]
                    if len(recent) == RECOVERED_ACKS and all(a.outcome == "acked" for a in recent):
                        break
                    await asyncio.sleep(0.5)
                timeline["recovered"] = time.time()
                stop.set()
                await load

        asyncio.run(run())
        receipts = drain(sink, path, ledger, timeout=150)
        report = check(ledger, receipts)
    finally:
        sink.stop()

    kill, ready = timeline["kill"], timeline["ready"]
    during = [a for a in ledger.attempts if kill <= a.t_start <= timeline["restart"]]
    after = [a for a in ledger.attempts if a.t_start >= timeline["recovered"] - 5]
    answers = sorted({str(a.status or a.detail.split(":")[0]) for a in during})
    print(
        report.summary("broker-outage") + f" during_outage={len(during)} answers={answers}"
        f" max_latency={max(a.t_done - a.t_start for a in ledger.attempts):.1f}s"
        f" restart_took={ready - timeline['restart']:.1f}s"
        f" recovered_after={timeline['recovered'] - ready:.1f}s"
    )
    problems = []
    for a in ledger.attempts:
        took = a.t_done - a.t_start
        if took > HANG_LIMIT_S:
            problems.append(f"{a.nonce}: answered after {took:.1f}s ({a.status} {a.detail})")
        if a.status is None and not a.detail.startswith(("ReadTimeout", "WriteTimeout")):
            problems.append(f"{a.nonce}: transport error {a.detail}")
        if a.status is not None and a.status not in (201, 503):
            problems.append(f"{a.nonce}: status {a.status} {a.detail}")
        if a.status == 503 and not a.retry_after:
            problems.append(f"{a.nonce}: 503 without Retry-After")
    assert problems == [], problems[:10]
    assert during, "publishes were attempted during the outage"
    assert all(a.outcome != "acked" for a in during if a.t_start < timeline["restart"] - 1), (
        "nothing is acknowledged while the broker is down"
    )
    assert [a for a in after if a.outcome == "acked"], "publishes succeed again after the restart"
    assert {role: p.pid for role, p in stack.procs.items()} == pids, "no role was restarted"
    assert all(p.poll() is None for p in stack.procs.values()), "every role is still running"
    report.assert_rule()
    # Idempotent producers: no publish is enqueued twice, and no sender died.
    assert report.duplicates == 0
