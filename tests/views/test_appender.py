"""kafstash.views.appender against the real broker: concurrent callers' records leave in batches,
land on the partition the producer's partitioner gives their key, in append order, and a caller
learns of a failure or a timeout instead of waiting for good."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from kafstash.schemas.partitioner import CachedPartitioner, partition_of
from kafstash.views.appender import AppendTimeout, BatchAppender

pytestmark = pytest.mark.broker

PARTITIONS = 4


async def _topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    finally:
        await admin.close()


def _producer(bootstrap: str, **extra: object) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        linger_ms=1,
        partitioner=CachedPartitioner(),
        **extra,
    )


async def _read_all(bootstrap: str, topic: str, count: int) -> list[tuple[int, bytes, bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        out: list[tuple[int, bytes, bytes]] = []
        async with asyncio.timeout(30):
            while len(out) < count:
                for tp, recs in (await consumer.getmany(timeout_ms=500)).items():
                    out.extend((tp.partition, r.key or b"", r.value or b"") for r in recs)
        return out
    finally:
        await consumer.stop()


async def test_concurrent_callers_records_are_acked_on_their_keys_partitions_in_order(
    kafka_bootstrap: str,
) -> None:
    a, b = f"app-{uuid.uuid4().hex[:8]}", f"app-{uuid.uuid4().hex[:8]}"
    await _topics(kafka_bootstrap, a, b)
    producer = _producer(kafka_bootstrap)
    await producer.start()
    try:
        async with BatchAppender(producer, timeout_s=10) as appender:
            # No topic's partitions are known yet: the first caller looks them up, and those
            # arriving meanwhile wait in line behind it, still appending in call order.

            async def caller(i: int) -> None:
                # Three records per caller over two topics, like a sender's attempt outcome.
                key = f"k{i % 17}".encode()
                await appender.append(
                    [
                        (a, key, f"{i}:1".encode()),
                        (b, key, f"{i}".encode()),
                        (a, key, f"{i}:2".encode()),
                    ]
                )

            await asyncio.gather(*(caller(i) for i in range(600)))
    finally:
        await producer.stop()

    got = await _read_all(kafka_bootstrap, a, 1200)
    assert len(got) == 1200
    per_key: dict[bytes, list[str]] = defaultdict(list)
    for part, key, value in got:
        assert part == partition_of(key, PARTITIONS)
        per_key[key].append(value.decode())
    for key, values in per_key.items():
        i = int(key[1:])
        expected = [f"{n}:{s}" for n in range(i, 600, 17) for s in (1, 2)]
        assert values == expected  # every record once, in the order the callers appended
    assert len(await _read_all(kafka_bootstrap, b, 600)) == 600


async def test_records_beyond_one_batch_are_split_and_a_tombstone_kept(
    kafka_bootstrap: str,
) -> None:
    topic = f"app-{uuid.uuid4().hex[:8]}"
    await _topics(kafka_bootstrap, topic)
    producer = _producer(kafka_bootstrap, max_batch_size=16 * 1024)
    await producer.start()
    try:
        async with BatchAppender(producer, timeout_s=10) as appender:
            records = [(topic, b"same", b"x" * 1000) for _ in range(60)]
            await appender.append([*records, (topic, b"same", None)])
    finally:
        await producer.stop()

    got = await _read_all(kafka_bootstrap, topic, 61)
    assert [v for _, _, v in got] == [b"x" * 1000] * 60 + [b""]


async def test_an_unacknowledged_append_fails_at_the_timeout(kafka_bootstrap: str) -> None:
    topic = f"app-{uuid.uuid4().hex[:8]}"
    await _topics(kafka_bootstrap, topic)
    producer = _producer(kafka_bootstrap)
    await producer.start()
    try:
        async with BatchAppender(producer, timeout_s=0.4) as appender:
            await appender.append([(topic, b"k", b"first")])  # metadata known, partitions read
            never = asyncio.get_running_loop().create_future()
            producer.send_batch = lambda *_a, **_k: never  # type: ignore[method-assign]
            with pytest.raises(AppendTimeout):
                await appender.append([(topic, b"k", b"lost in flight")])
    finally:
        del producer.send_batch
        await producer.stop()


async def test_a_hand_over_error_fails_every_caller_of_its_round(kafka_bootstrap: str) -> None:
    topic = f"app-{uuid.uuid4().hex[:8]}"
    await _topics(kafka_bootstrap, topic)
    producer = _producer(kafka_bootstrap)
    await producer.start()

    async def refuse(*_a: object, **_k: object) -> None:
        raise KafkaError("refused")

    try:
        async with BatchAppender(producer, timeout_s=10) as appender:
            await appender.append([(topic, b"k", b"first")])
            producer.send_batch = refuse  # type: ignore[method-assign]
            results = await asyncio.gather(
                appender.append([(topic, b"k", b"a")]),
                appender.append([(topic, b"j", b"b")]),
                return_exceptions=True,
            )
            assert [type(r) for r in results] == [KafkaError, KafkaError]
            del producer.send_batch
            await appender.append([(topic, b"k", b"after")])  # the appender carries on
    finally:
        await producer.stop()
