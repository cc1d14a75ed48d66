"""Delayed messages due together, against the real broker and a real stream worker: the timer
sends one FireMany per partition (split when full), each on the partition its message ids hash
to, every message is delivered once, and a FireMany handled again (faust's replay after a crash)
delivers nothing more."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from kafstash.config import Settings
from kafstash.schemas import codec
from kafstash.schemas.commands import DeliveryDue, FireMany, PublishRequest
from kafstash.schemas.message import Message
from kafstash.schemas.partitioner import CachedPartitioner, partition_of
from kafstash.streams.delay import MAX_FIRES_PER_RECORD
from tests.stack import Stack
from tests.streams.conftest import PARTITIONS
from tests.topic_reader import read_topic

pytestmark = pytest.mark.broker

# More than one record's worth per partition: the timer must split them.
COUNT = 3 * MAX_FIRES_PER_RECORD


def _request(i: int, due: int) -> tuple[bytes, bytes]:
    mid = f"msg_burst{i:05d}"
    message = Message(
        message_id=mid,
        user_id="defaultUser",
        url="https://example.com/hook",
        created_at=due - 10_000,
        not_before=due,
        body=b"x",
        max_retries=0,
    )
    return mid.encode(), codec.encode(PublishRequest(request_id=f"req_{i}", message=message))


async def _produce(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes, int | None]]
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, partitioner=CachedPartitioner(), linger_ms=5
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=k, partition=p) for k, v, p in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _consumed_to_end(bootstrap: str, group: str, topic: str, timeout_s: float) -> None:
    """Until ``group`` has committed the end offset of every partition of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while True:
            done = await admin.list_consumer_group_offsets(group)
            if all(done.get(tp) is not None and done[tp].offset >= ends[tp] for tp in tps):
                return
            assert time.monotonic() < deadline, f"{group} did not consume {topic} to its end"
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()
        await admin.close()


def _deliveries(records: list[tuple[int, bytes, bytes]]) -> Counter[str]:
    return Counter(codec.decode(v, DeliveryDue).message.message_id for _, _, v in records)


def test_messages_due_together_are_fired_in_batches_and_delivered_once(
    streams_only: tuple[Stack, Settings],
) -> None:
    stack, settings = streams_only
    topics = settings.topics

    async def scenario() -> None:
        due = int((time.time() + 8) * 1000)
        requests = [(*_request(i, due), None) for i in range(COUNT)]
        await _produce(stack.bootstrap, topics.requests, requests)

        delivered = await read_topic(
            stack.bootstrap, topics.deliveries, COUNT, timeout_s=90, quiet_s=1.0
        )
        counts = _deliveries(delivered)
        assert len(counts) == COUNT
        assert set(counts.values()) == {1}, "a message was delivered twice"

        timers = await read_topic(stack.bootstrap, topics.timers, 1, timeout_s=10, quiet_s=1.0)
        fired = [
            (partition, key, cmd, raw)
            for partition, key, raw in timers
            if isinstance(cmd := codec.decode_timer(raw), FireMany)
        ]
        assert sorted(i.message_id for _, _, cmd, _ in fired for i in cmd.fires) == sorted(counts)
        # One record per partition and pop, at most MAX_FIRES_PER_RECORD fires each: far fewer
        # records than messages, and every id on the partition its record went to.
        assert len(fired) < COUNT // 100
        for partition, key, cmd, _ in fired:
            assert 0 < len(cmd.fires) <= MAX_FIRES_PER_RECORD
            assert key == cmd.fires[0].message_id.encode()
            ids = {partition_of(i.message_id.encode(), PARTITIONS) for i in cmd.fires}
            assert ids == {partition}

        # faust replays what it had not committed when a worker crashed: the same records again,
        # on the same partitions, after their rows were deleted.
        replay = [(key, raw, partition) for partition, key, _, raw in fired]
        await _produce(stack.bootstrap, topics.timers, replay)
        await _consumed_to_end(
            stack.bootstrap, settings.streams_app_id, topics.timers, timeout_s=60
        )
        again = await read_topic(
            stack.bootstrap, topics.deliveries, COUNT, timeout_s=30, quiet_s=1.0
        )
        assert _deliveries(again) == counts

    asyncio.run(scenario())
