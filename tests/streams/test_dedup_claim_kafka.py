"""Deduplicated requests against the real broker and a stream worker: the dedup claim is
acknowledged before the records it guards are produced, and a request replayed after a kill
between the two produces what is missing, once.

The fault test tests/faults/test_schedule_groups_restart.py saw a schedule's message delivered
twice, the second time as a first attempt (``Upstash-Retried: 0``) about 10 s after the stream
worker was killed: the accept step had produced the message's records, they were acknowledged
(the sink received the delivery, and the test kills the worker at that moment), and the dedup
row, written only after that acknowledgement, had not reached its changelog. The input offset
was not committed either, so the restarted worker handled the request again, found no row, and
delivered again. The row is now claimed first (streams/dedup.py).
"""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from kafstash.config import Settings
from kafstash.schemas import codec
from kafstash.schemas.commands import DeliveryDue, PublishRequest
from kafstash.schemas.events import MessageEvent
from kafstash.schemas.message import Message
from kafstash.schemas.partitioner import CachedPartitioner, partition_of
from kafstash.streams.dedup import DedupEntry, accept
from tests.stack import Stack
from tests.streams.conftest import PARTITIONS

pytestmark = pytest.mark.broker

MID = "msg_claimed0000000000000001"
KEY = "defaultUser:schedule:s1:1700000000000:" + MID

Timed = list[tuple[int, bytes, bytes]]  # (record time, key, value)


def _request(now_ms: int) -> PublishRequest:
    message = Message(
        message_id=MID,
        user_id="defaultUser",
        url="https://example.com/hook",
        created_at=now_ms,
        not_before=0,
        body=b"tick",
        max_retries=0,
    )
    return PublishRequest(request_id="req_1", message=message, dedup_key=KEY)


async def _produce(bootstrap: str, records: list[tuple[str, bytes, bytes, int | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, partitioner=CachedPartitioner())
    await producer.start()
    try:
        for topic, key, value, partition in records:
            await (await producer.send(topic, value, key=key, partition=partition))
    finally:
        await producer.stop()


async def _read(bootstrap: str, topic: str, expect: int, *, quiet_s: float = 2.0) -> Timed:
    """Every record of ``topic`` once ``expect`` arrived and it stayed quiet for ``quiet_s``."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    got: Timed = []
    try:
        deadline = time.monotonic() + 60
        quiet_until = time.monotonic() + quiet_s
        while len(got) < expect or time.monotonic() < quiet_until:
            assert time.monotonic() < deadline, f"{topic}: {len(got)} of {expect} records"
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                got += [(r.timestamp, r.key or b"", r.value or b"") for r in records]
                quiet_until = time.monotonic() + quiet_s
    finally:
        await consumer.stop()
    return got


def _first_attempts(records: Timed) -> list[str]:
    return [codec.decode(v, DeliveryDue).message.message_id for _, _, v in records]


def _created(records: Timed) -> list[str]:
    events = [codec.decode(v, MessageEvent) for _, _, v in records]
    return [e.message_id for e in events if e.state == "CREATED"]


def test_the_claim_is_acknowledged_before_the_records_are_produced(
    streams_only: tuple[Stack, Settings],
) -> None:
    stack, settings = streams_only
    topics = settings.topics

    async def scenario() -> None:
        request = codec.encode(_request(int(time.time() * 1000)))
        await _produce(stack.bootstrap, [(topics.requests, KEY.encode(), request, None)])
        [(due_at, _, _)] = await _read(stack.bootstrap, topics.deliveries, 1)
        rows = await _read(stack.bootstrap, f"{settings.streams_app_id}-dedup-changelog", 1)
        [(claim_at, _, raw)] = [r for r in rows if r[1] == KEY.encode()]
        claim = codec.decode(raw, DedupEntry)
        assert claim.message_id == MID
        assert claim.claimed_at is not None
        # A record's time is when the worker handed it to its producer. The DeliveryDue is
        # handed over only once the claim is acknowledged; the row written after the records
        # (the fault test's duplicate) was handed over once the DeliveryDue was acknowledged,
        # at least the producer's linger (5 ms) after it.
        assert claim_at <= due_at

    asyncio.run(scenario())


@pytest.mark.parametrize("out_before_the_kill", [0, 2])
def test_a_kill_between_the_claim_and_the_records_then_a_replay_delivers_once(
    streams_only: tuple[Stack, Settings], out_before_the_kill: int
) -> None:
    """The state a kill leaves between the claim and the records, rebuilt by hand: the claim in
    the dedup changelog, none or the first two of the message's records (CREATED, the messages
    view's), and the request in ``table-requests`` with its offset not committed."""
    stack, settings = streams_only
    topics = settings.topics
    stack.kill("streams")
    shutil.rmtree(stack.home / "streams", ignore_errors=True)  # the claim comes from Kafka
    now = int(time.time() * 1000)
    request = _request(now)
    step = accept(request, None, now_ms=now, window_ms=3_600_000)
    assert step.claim
    assert isinstance(step.put, DedupEntry)
    names = {"events": topics.events, "messages": topics.messages}
    partition = partition_of(KEY.encode(), PARTITIONS)
    crashed_state = [
        (
            f"{settings.streams_app_id}-dedup-changelog",
            KEY.encode(),
            codec.encode(step.put),
            partition,
        ),
        *(
            (names[e.topic], e.key.encode(), codec.encode(e.value), None)  # type: ignore[arg-type]
            for e in step.emits[:out_before_the_kill]
        ),
        (topics.table_requests, KEY.encode(), codec.encode(request), partition),
    ]
    asyncio.run(_produce(stack.bootstrap, crashed_state))
    stack.restart("streams")

    async def scenario() -> None:
        out = await _read(stack.bootstrap, topics.deliveries, 1)
        assert _first_attempts(out) == [MID]  # none lost, none twice
        assert _created(await _read(stack.bootstrap, topics.events, 1, quiet_s=0.5)) == [MID]
        await asyncio.to_thread(
            stack.wait_log, "streams", f"{out_before_the_kill} of 3 records were out already"
        )
        # The same request once more, every record out now: read back, nothing produced.
        again = codec.encode(_request(now + 1_000))
        await _produce(stack.bootstrap, [(topics.requests, KEY.encode(), again, None)])
        await asyncio.to_thread(stack.wait_log, "streams", "3 of 3 records were out already")
        assert _first_attempts(await _read(stack.bootstrap, topics.deliveries, 1)) == [MID]
        assert _created(await _read(stack.bootstrap, topics.events, 1, quiet_s=0.5)) == [MID]

    try:
        asyncio.run(scenario())
    except AssertionError as exc:  # what the restarted worker did says why
        raise AssertionError(f"{exc}\nstreams log:\n{stack.tail('streams', 80)}") from exc
