"""A second sender joins while the first has every delivery slot busy: no duplicate delivery.

No fault is injected, so at-least-once owes no re-delivery here. The join revokes a partition
from the first sender while its poll loop waits for a free slot with fetched records of that
partition in hand: 4 slots and a slow sink (/slow/300/, so at most ~13 deliveries/s per sender)
keep every slot busy when that happens, even on a loaded machine that publishes slowly. The
second sender starts only once the first has delivered something: on a busy machine the stream
workers can lag by seconds, and a join before the first delivery revokes nothing in flight.
Before the fix, the first sender went on starting those records after its revocation callback
had committed, and the new owner delivered them again from the committed offset.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest

from tests.faults.ledger import Ledger, check, client, drain, nonce_of, publish, steady
from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker

CONCURRENCY = 4
RATE = 40.0  # publishes/s, above one sender's 4 / 0.3 s ≈ 13/s: its slots fill
PUBLISH_S = 5.0  # publishing goes on this long after the second sender starts
FIRST_DELIVERY_TIMEOUT_S = 60.0


def _start_sender(stack: Stack, role: str) -> None:
    log_path = stack.home / f"{role}.log"
    stack.logs[role] = log_path
    with log_path.open("ab") as out:
        stack.procs[role] = subprocess.Popen(
            [sys.executable, "-m", "kafstash", "sender"],
            env=stack.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _given_up_in_flight(stack: Stack, role: str) -> list[int]:
    text = stack.logs[role].read_text(errors="replace")
    return [
        int(n) for n in re.findall(r"gives up \d+ partitions, (\d+) deliveries in flight", text)
    ]


def test_sender_joining_under_load_duplicates_nothing(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    stack = Stack(
        kafka_bootstrap,
        tmp_path_factory.mktemp("sender-join"),
        env={"KAFSTASH_SENDER_CONCURRENCY": str(CONCURRENCY)},
    )
    stack.start()
    sink = Sink(stack.user.current_signing_key, stack.user.next_signing_key)
    sink.start()
    try:
        path = f"/slow/300/join-{uuid.uuid4().hex[:8]}"
        url = sink.url(path)
        ledger = Ledger()

        async def run() -> None:
            stop = asyncio.Event()
            async with client(stack.base_url, stack.token) as c:

                def make(i: int) -> asyncio.Task:  # type: ignore[type-arg]
                    return asyncio.create_task(publish(c, ledger, url, f"j{i}-{path[-8:]}"))

                load = asyncio.create_task(steady(make, rate=RATE, stop=stop))
                deadline = time.monotonic() + FIRST_DELIVERY_TIMEOUT_S
                while not sink.received(path) and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                assert sink.received(path), "no delivery reached the sink before the join"
                _start_sender(stack, "sender2")
                await asyncio.sleep(PUBLISH_S)
                stop.set()
                await load

        asyncio.run(run())
        receipts = drain(sink, path, ledger, timeout=120, quiet_s=4)
        report = check(ledger, receipts)
        per_nonce = Counter(
            n for r in receipts if 200 <= r.answered < 300 and (n := nonce_of(r.body)) is not None
        )
        in_flight = _given_up_in_flight(stack, "sender")
        print("\n" + report.summary("sender-join") + f" given_up_with_in_flight={in_flight}")
        report.assert_rule()
        assert report.acked == len(ledger.attempts), "every publish was acknowledged"
        twice = sorted(n for n, c in per_nonce.items() if c > 1)
        assert twice == [], f"{len(twice)} messages delivered more than once: {twice[:10]}"
        # The scenario happened: the first sender gave a partition up with deliveries running.
        assert any(n > 0 for n in in_flight), stack.tail("sender")
    finally:
        sink.stop()
        stack.stop()
