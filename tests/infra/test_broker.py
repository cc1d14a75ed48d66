"""The local Kafka broker works end to end, and keeps acknowledged records across a crash."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from kafstash.infra.kafka import LocalBroker

pytestmark = pytest.mark.broker


async def create_topic(bootstrap: str, name: str) -> None:
    # The broker runs with auto.create.topics.enable=false, like production should.
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, key: bytes, value: bytes) -> int:
    """Send one record with acks=all and return its offset once the broker acknowledged it."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        metadata = await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()
    return int(metadata.offset)


async def read_all(bootstrap: str, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of every record in partition 0, from the beginning to the end."""
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        records: list[tuple[int, bytes | None, bytes | None]] = []
        async with asyncio.timeout(30):
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                records += [(r.offset, r.key, r.value) for r in batch.get(tp, [])]
        return records
    finally:
        await consumer.stop()


async def test_produce_and_consume(kafka_bootstrap: str) -> None:
    topic = f"infra-roundtrip-{uuid.uuid4().hex[:8]}"
    await create_topic(kafka_bootstrap, topic)

    offset = await produce(kafka_bootstrap, topic, b"k1", b"hello kafka")

    assert await read_all(kafka_bootstrap, topic) == [(offset, b"k1", b"hello kafka")]


async def test_acked_record_survives_sigkill_and_restart(tmp_path: Path) -> None:
    # A separate broker, so killing it cannot disturb the session broker other tests share.
    # start() is called straight from this coroutine on purpose: it must work inside a loop.
    # The lower session timeout only shortens the wait after the kill: the restarted broker
    # cannot register until its dead incarnation's session (9 s by default) has expired.
    broker = LocalBroker(
        tmp_path / "crash-broker",
        heap="256m",
        extra_properties={
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "500",
        },
    )
    broker.start()
    try:
        topic = "infra-crash"
        await create_topic(broker.bootstrap, topic)
        offset = await produce(broker.bootstrap, topic, b"id-1", b"acknowledged")
        bootstrap, old_pid = broker.bootstrap, broker.pid

        broker.kill()
        assert not broker.is_running()
        assert broker.pid is None

        broker.restart()
        assert broker.bootstrap == bootstrap
        assert broker.pid not in (None, old_pid)
        assert await read_all(broker.bootstrap, topic) == [(offset, b"id-1", b"acknowledged")]
    finally:
        broker.stop()
