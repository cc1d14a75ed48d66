"""Crash safety: kill -9 the sender with deliveries in flight, restart it, and check the ledger.

The ledger is the publisher's record of every acknowledged message id; the sink records every
receipt. Pass rule (reliability-notes §4.3): every acknowledged id arrives at least once
(lost = ∅), nothing unknown arrives, and duplicates stay bounded by what was in flight.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker

N = 150


@pytest.fixture
def crash_stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    with Stack(kafka_bootstrap, tmp_path, env={"KAFSTASH_SENDER_CONCURRENCY": "32"}) as s:
        yield s


async def _publish_all(stack: Stack, urls: list[str]) -> list[str]:
    acked: list[str] = []
    headers = {"Authorization": f"Bearer {stack.token}"}
    async with httpx.AsyncClient(base_url=stack.base_url, headers=headers, timeout=30) as client:

        async def one(i: int, url: str) -> None:
            r = await client.post(f"/v2/publish/{url}", content=f"m{i}".encode())
            if r.status_code == 201:
                acked.append(r.json()["messageId"])

        await asyncio.gather(*(one(i, u) for i, u in enumerate(urls)))
    return acked


def test_kill_sender_mid_delivery_loses_nothing(crash_stack: Stack) -> None:
    stack = crash_stack
    sink = Sink(stack.user.current_signing_key, stack.user.next_signing_key)
    sink.start()
    try:
        # Slow answers keep many deliveries in flight when the sender dies.
        urls = [sink.url(f"/slow/400/crash-{i}") for i in range(N)]
        acked = asyncio.run(_publish_all(stack, urls))
        assert len(acked) == N, "every publish was acknowledged"

        sink.wait_count("/slow/400/crash-", 20, timeout=60)
        stack.kill("sender")
        in_flight_at_kill = len(sink.received("/slow/400/crash-"))
        stack.restart("sender")

        sink.wait_for(
            "/slow/400/crash-",
            lambda got: {r.message_id for r in got if r.answered == 200} >= set(acked),
            timeout=120,
        )
        got = sink.received("/slow/400/crash-")
        delivered = Counter(r.message_id for r in got)
        lost = set(acked) - set(delivered)
        unexpected = set(delivered) - set(acked)
        duplicates = sum(c - 1 for c in delivered.values())
        print(
            f"acked={len(acked)} delivered={len(delivered)} lost={len(lost)} "
            f"duplicates={duplicates} received_before_kill={in_flight_at_kill}"
        )
        assert lost == set()
        assert unexpected == set()
        # Only what the dead sender had taken but not committed can come twice: at most one
        # poll's worth (its concurrency limit) plus the commit interval's completions.
        assert duplicates <= 32 + in_flight_at_kill
        assert all(r.signature_ok for r in got)
    finally:
        sink.stop()
