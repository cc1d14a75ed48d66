"""The sender's poll loop without a broker (a fake consumer stands in for aiokafka's).

The poll loop waits for a free delivery slot with fetched records in hand; a revocation
(``drain``) arrives meanwhile. Nothing of the revoked partition may start after that, and the
offset committed for it must cover exactly what was delivered: the next owner starts there.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from kafstash.schemas import codec
from kafstash.schemas.commands import DeliveryDue
from kafstash.schemas.message import Message
from kafstash.schemas.topics import Topics
from kafstash.schemas.users import DEV_USERS
from kafstash.schemas.workflow_tag import WorkflowTag
from kafstash.sinks.http.sender import Sender, SenderConfig

REVOKED = TopicPartition("p.deliveries", 0)
KEPT = TopicPartition("p.deliveries", 1)


def _due(offset: int, *, call: bool = False) -> bytes:
    tag = WorkflowTag(run_id="wfr_1", call_type="toCallback") if call else None
    message = Message(
        message_id=f"msg_{offset}",
        user_id=DEV_USERS[0].user_id,
        url="http://127.0.0.1:1/x",
        created_at=0,
        not_before=0,
        body=b"",
        max_retries=3,
        workflow=tag,
    )
    return codec.encode(DeliveryDue(message=message, retried=0, due=0))


def _record(tp: TopicPartition, offset: int, *, call: bool = False) -> ConsumerRecord[bytes, bytes]:
    value = _due(offset, call=call)
    return ConsumerRecord(
        topic=tp.topic,
        partition=tp.partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value),
        headers=(),
    )


@dataclass
class FakeConsumer:
    batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    owned: set[TopicPartition] = field(default_factory=lambda: {REVOKED, KEPT})
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)

    async def getmany(self, **_kw: Any) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        batch, self.batch = self.batch, {}
        return batch

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


class Harness:
    """A Sender whose deliveries are held until the test releases them, one by one."""

    def __init__(self, consumer: FakeConsumer, concurrency: int) -> None:
        cfg = SenderConfig(
            bootstrap="unused:9092",
            topics=Topics(prefix="p"),
            group_id="g",
            users=DEV_USERS,
            concurrency=concurrency,
        )
        self.sender = Sender(cfg)
        self._real_consumer = self.sender._consumer
        self.sender._consumer = consumer
        self.started: list[tuple[int, int]] = []  # (partition, offset) in start order
        self.gates: dict[tuple[int, int], asyncio.Event] = {}

        async def handle(
            tracker: Any, tp: TopicPartition, offset: int, due: Any, slots: asyncio.Semaphore
        ) -> None:
            assert due is not None, "every record here is a readable DeliveryDue"
            key = (tp.partition, offset)
            self.started.append(key)
            gate = self.gates.setdefault(key, asyncio.Event())
            await gate.wait()
            tracker.done(offset)
            slots.release()

        self.sender._handle = handle  # type: ignore[method-assign]

    async def close(self) -> None:
        await self._real_consumer.stop()
        await self.sender._producer.stop()

    def finish(self, partition: int, offset: int) -> None:
        self.gates.setdefault((partition, offset), asyncio.Event()).set()


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_nothing_of_a_revoked_partition_starts_after_the_revocation() -> None:
    consumer = FakeConsumer(
        batch={REVOKED: [_record(REVOKED, o) for o in range(10, 14)], KEPT: [_record(KEPT, 5)]}
    )
    h = Harness(consumer, concurrency=2)
    try:
        await _revoke_while_the_loop_waits(h, consumer)
    finally:
        await h.close()


async def _revoke_while_the_loop_waits(h: Harness, consumer: FakeConsumer) -> None:
    poll = asyncio.create_task(h.sender._poll_once())
    await _settle()
    assert h.started == [(0, 10), (0, 11)], "both slots busy, the loop waits for a third"

    drain = asyncio.create_task(h.sender.drain([REVOKED]))
    await _settle()
    h.finish(0, 10)  # frees a slot while the revocation waits: the loop must not take 0@12
    await _settle()
    h.finish(0, 11)
    await drain
    h.finish(1, 5)
    await poll

    assert (0, 12) not in h.started
    assert (0, 13) not in h.started
    assert consumer.commits == [{REVOKED: 12}], "the next owner starts right after 0@11"
    assert (1, 5) in h.started, "the kept partition goes on"


async def test_a_revocation_commits_only_what_finished() -> None:
    consumer = FakeConsumer(batch={REVOKED: [_record(REVOKED, o) for o in range(3)]})
    h = Harness(consumer, concurrency=3)
    try:
        await _revoke_with_one_in_flight(h, consumer)
    finally:
        await h.close()


async def _revoke_with_one_in_flight(h: Harness, consumer: FakeConsumer) -> None:
    await h.sender._poll_once()
    h.finish(0, 0)
    h.finish(0, 2)
    await _settle()
    drain = asyncio.create_task(h.sender.drain([REVOKED]))
    await _settle()
    assert not drain.done(), "the revocation waits for the partition's in-flight delivery"
    h.finish(0, 1)
    await drain
    assert consumer.commits == [{REVOKED: 3}]


async def test_a_partition_later_in_the_batch_is_not_restarted_after_its_revocation() -> None:
    # The CI failure of session 3: both partitions revoked while the loop waited on the first.
    # The loop then reached the second partition of the batch it held, found no tracker (drain
    # had taken it) and made a new one: those deliveries were also made by the next owner.
    consumer = FakeConsumer(
        batch={REVOKED: [_record(REVOKED, o) for o in range(10, 13)], KEPT: [_record(KEPT, 5)]}
    )
    h = Harness(consumer, concurrency=2)
    try:
        poll = asyncio.create_task(h.sender._poll_once())
        await _settle()
        assert h.started == [(0, 10), (0, 11)]
        drain = asyncio.create_task(h.sender.drain([REVOKED, KEPT]))
        await _settle()
        h.finish(0, 10)
        h.finish(0, 11)
        await drain
        await poll
        assert h.started == [(0, 10), (0, 11)], "nothing of either revoked partition started"
        assert consumer.commits == [{REVOKED: 12}]
        assert KEPT not in h.sender._trackers, "no tracker is made again for a given-up partition"
    finally:
        await h.close()


async def test_workflow_calls_take_slots_of_their_own() -> None:
    """A third-party call (``context.call``, often a slow LLM) waits in its own slots: with the
    one delivery slot free, the delivery fetched behind two calls starts at once."""
    consumer = FakeConsumer(
        batch={KEPT: [_record(KEPT, 5, call=True), _record(KEPT, 6, call=True), _record(KEPT, 7)]}
    )
    h = Harness(consumer, concurrency=1)
    try:
        poll = asyncio.create_task(h.sender._poll_once())
        await _settle()
        assert h.started == [(1, 5), (1, 6), (1, 7)]
        assert poll.done(), "the poll loop holds no slot it waits for"
        for offset in (5, 6, 7):
            h.finish(1, offset)
        await _settle()
    finally:
        await h.close()
