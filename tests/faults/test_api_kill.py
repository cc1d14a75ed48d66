"""F7: kill -9 the API with publishes in flight, restart it, and check the ledger.

100 publishes start at once; each streams its body in two chunks spread over 0 to 2 s, so at the
kill (t = 1 s) about half have been answered and the rest are in flight. Every 2xx-acknowledged
id is delivered with its body and headers intact; requests cut by the kill are "unknown" (they
may or may not arrive, never altered).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable

import pytest

from tests.faults.ledger import Ledger, check, client, drain, publish
from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker

N = 100
SPREAD_S = 2.0
KILL_AT_S = 1.0


async def _wave(stack: Stack, ledger: Ledger, url: str, tag: str, *, kill: bool) -> None:
    rnd = random.Random(f"api-kill-{tag}")
    async with client(stack.base_url, stack.token, timeout=15) as c:
        jobs = [
            publish(
                c,
                ledger,
                url,
                nonce=f"{tag}-{i}-{uuid.uuid4().hex[:6]}",
                trickle_s=rnd.uniform(0, SPREAD_S),
            )
            for i in range(N)
        ]

        async def killer() -> None:
            await asyncio.sleep(KILL_AT_S)
            stack.kill("api")  # SIGKILL while requests are in flight

        await asyncio.gather(*jobs, *([killer()] if kill else []))


def test_kill_api_mid_burst(stack: Stack, sink: Sink, route: Callable[[str], str]) -> None:
    path = route("ok")
    url = sink.url(path)
    ledger = Ledger()
    asyncio.run(_wave(stack, ledger, url, "a", kill=True))
    first = check(ledger, [])
    stack.restart("api")
    asyncio.run(_wave(stack, ledger, url, "b", kill=False))

    receipts = drain(sink, path, ledger, timeout=120)
    report = check(ledger, receipts)
    print(report.summary("api-kill"))
    assert first.acked > 0, "some publishes were answered before the kill"
    assert first.unknown > 0, "the kill interrupted some publishes"
    assert all(a.status in (None, 201) for a in ledger.attempts), "only 201 or unknown"
    assert report.acked == first.acked + N, "after the restart every publish is acknowledged"
    report.assert_rule()
    # A publish is one record and no sender died: nothing may arrive twice.
    assert report.duplicates == 0
