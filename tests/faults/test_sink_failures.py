"""Destinations that fail (issue #5 item 5): retries, timeouts, non-retryable errors, Retry-After,
the DLQ and failure callbacks, and a sender killed between a failure and its callback.

All through the official Python SDK against a real broker, delivering to the local sink.
``Upstash-Retry-Delay: 100`` (ms) keeps the retrying scenarios fast.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from aiokafka import AIOKafkaProducer
from qstash import QStash

from kafstash.schemas import codec
from kafstash.schemas.commands import DeliveryDue
from kafstash.schemas.message import Message
from kafstash.sinks.http.outcome import DeadLetter
from kafstash.sinks.http.report import after_attempt
from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker

T = TypeVar("T")
WAIT = 60


@pytest.fixture
def client(stack: Stack) -> Iterator[QStash]:
    c = QStash(stack.token, base_url=stack.base_url)
    yield c
    c.http._client.close()


def eventually(probe: Callable[[], T | None], timeout: float = WAIT) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, f"condition not met within {timeout}s"
        time.sleep(0.1)


def test_failing_destinations(client: QStash, sink: Sink, route: Callable[[str], str]) -> None:
    # All scenarios run at once on one stack; each has its own sink path.
    flaky, dead, slow = route("fail/3"), route("status/500"), route("slow/3000")
    fatal, later, fcb = route("nonretryable"), route("retry-after/2"), route("ok") + "-fcb"
    fast = {"retry_delay": "100"}
    m_flaky = client.message.publish(url=sink.url(flaky), body="f", retries=3, **fast)
    m_dead = client.message.publish(
        url=sink.url(dead), body="d", retries=2, failure_callback=sink.url(fcb), **fast
    )
    m_slow = client.message.publish(url=sink.url(slow), body="s", retries=1, timeout="1s", **fast)
    m_fatal = client.message.publish(url=sink.url(fatal), body="n", retries=3, **fast)
    m_later = client.message.publish(url=sink.url(later), body="r", retries=3, **fast)

    # 500 x3 then 200: exactly 4 attempts, Upstash-Retried 0..3, then nothing more.
    got = sink.wait_count(flaky, 4, timeout=WAIT)
    assert [r.retried for r in got] == [0, 1, 2, 3]
    assert [r.answered for r in got] == [500, 500, 500, 200]
    assert {r.message_id for r in got} == {m_flaky.message_id}

    # Always 500: 3 attempts, FAILED (gone from the pending messages), one DLQ entry and one
    # failure callback that carries that entry's dlqId.
    assert [r.retried for r in sink.wait_count(dead, 3, timeout=WAIT)] == [0, 1, 2]
    [call] = sink.wait_count(fcb, 1, timeout=WAIT)
    body = json.loads(call.body)
    assert body["sourceMessageId"] == m_dead.message_id
    assert (body["status"], body["retried"], body["maxRetries"]) == (500, 2, 2)
    [entry] = eventually(lambda: client.dlq.list(filter={"message_id": m_dead.message_id}).messages)
    assert entry.dlq_id == body["dlqId"]
    assert entry.response_status == 500

    # Slower than Upstash-Timeout: each attempt is cut at 1 s, retried once, then dead.
    [slow_entry] = eventually(
        lambda: client.dlq.list(filter={"message_id": m_slow.message_id}).messages
    )
    # (The sink records a request once its 3 s sleep is over, so these show up late.)
    assert sorted(r.retried for r in sink.wait_count(slow, 2, timeout=WAIT)) == [0, 1]
    assert slow_entry.response_status == 0  # no answer within the timeout

    # 489 + Upstash-NonRetryable-Error: straight to the DLQ despite retries=3.
    [fatal_entry] = eventually(
        lambda: client.dlq.list(filter={"message_id": m_fatal.message_id}).messages
    )
    assert fatal_entry.response_status == 489

    # Retry-After: 2 beats the 100 ms retry delay.
    first, second = sink.wait_count(later, 2, timeout=WAIT)[:2]
    assert (first.answered, second.answered) == (503, 200)
    assert second.at - first.at >= 1.9
    assert second.message_id == m_later.message_id

    time.sleep(1.5)  # nothing further arrives for any of them
    assert len(sink.received(flaky)) == 4
    assert len(sink.received(dead)) == 3
    assert len(sink.received(fatal)) == 1
    assert len(sink.received(fcb)) == 1
    assert len(sink.received(later)) == 2
    assert {e.message_id for e in client.dlq.list().messages} == {
        m_dead.message_id,
        m_slow.message_id,
        m_fatal.message_id,
    }


def test_sender_killed_between_failure_and_callback(
    client: QStash, stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    """SIGKILL the sender right after the sink answered 500: whether it died before appending
    the attempt's follow-ups (the attempt is repeated) or after (they are appended again), the
    callback of each attempt number arrives once."""
    dead, cb, fcb = route("status/500"), route("ok") + "-cb", route("ok") + "-fcb"
    res = client.message.publish(
        url=sink.url(dead),
        body="k",
        retries=1,
        retry_delay="1500",
        callback=sink.url(cb),
        failure_callback=sink.url(fcb),
    )
    sink.wait_count(dead, 1, timeout=WAIT)
    stack.kill("sender")
    stack.start_role("sender")
    sink.wait_for(dead, lambda got: any(r.retried == 1 for r in got), timeout=WAIT)
    sink.wait_count(fcb, 1, timeout=WAIT)
    calls = sink.wait_for(
        cb, lambda got: {json.loads(c.body)["retried"] for c in got} == {0, 1}, timeout=WAIT
    )
    time.sleep(2)  # room for a duplicate to show up
    calls = sink.received(cb)
    # One callback MESSAGE per attempt. Its own delivery is at-least-once like any message's
    # (the kill may hit it too), so count distinct Upstash-Message-Ids, as receivers dedupe.
    per_attempt = Counter(
        json.loads(c.body)["retried"] for c in {c.message_id: c for c in calls}.values()
    )
    assert per_attempt == Counter({0: 1, 1: 1}), [(c.message_id, c.body) for c in calls]
    assert len({c.message_id for c in sink.received(fcb)}) == 1
    assert all(json.loads(c.body)["sourceMessageId"] == res.message_id for c in calls)
    assert len(client.dlq.list().messages) == 1


def test_replayed_attempt_outcome_sends_one_callback(
    client: QStash, stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    """The exact records a sender appends after a final failure, appended twice (what a sender
    that crashed before committing its offset does on replay): one callback, one failure
    callback, one DLQ entry."""
    cb, fcb = route("ok") + "-cb", route("ok") + "-fcb"
    now = int(time.time() * 1000)
    message = Message(
        message_id="msg_replayed1",
        user_id=stack.user.user_id,
        url=sink.url(route("status/500")),
        created_at=now,
        not_before=now,
        body=b"r",
        max_retries=0,
        callback=sink.url(cb),
        failure_callback=sink.url(fcb),
    )
    due = DeliveryDue(message=message, retried=0, due=now)
    topics = {"events": stack.prefix + ".events", "requests": stack.prefix + ".requests"}
    topics |= {"dlq": stack.prefix + ".dlq", "messages": stack.prefix + ".messages"}

    async def append_twice() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            for replay in range(2):
                records = after_attempt(
                    due,
                    DeadLetter(reason="HTTP 500"),
                    status=500,
                    response_body=b"answer 500",
                    error=None,
                    duration_ms=1,
                    started_ms=now + replay,
                    now_ms=now + 10 + replay,  # a replay runs later: only the clock differs
                    response_headers={"Content-Type": ["text/plain"]},
                )
                for role, key, record in records:
                    value = None if record is None else codec.encode(record)  # type: ignore[arg-type]
                    await producer.send_and_wait(topics[role], key=key.encode(), value=value)
        finally:
            await producer.stop()

    asyncio.run(append_twice())
    sink.wait_count(cb, 1, timeout=WAIT)
    sink.wait_count(fcb, 1, timeout=WAIT)
    eventually(lambda: client.dlq.list().messages)
    time.sleep(2)
    assert len(sink.received(cb)) == 1
    assert len(sink.received(fcb)) == 1
    [entry] = client.dlq.list().messages
    assert entry.message_id == "msg_replayed1"
    assert json.loads(sink.received(fcb)[0].body)["dlqId"] == entry.dlq_id
