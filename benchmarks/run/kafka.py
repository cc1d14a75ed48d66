"""Raw aiokafka, the ceiling kafstash's Kafka stages are compared with, and the offsets reader."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from benchmarks.harness import HOST
from kafstash.producers.api.publish import HeaderView, PublishLimits, build_request
from kafstash.schemas import codec
from kafstash.schemas.defaults import MAX_TOPIC_MESSAGE_BYTES
from kafstash.schemas.users import DEV_USERS


def sample_record(sink_url: str, body_size: int) -> tuple[bytes, bytes]:
    """The key and value the API appends for a publish of ``body_size`` bytes (same size)."""
    req = build_request(
        user=DEV_USERS[0],
        url=sink_url,
        view=HeaderView([("content-type", "text/plain")]),
        body=b"x" * body_size,
        now_ms=int(time.time() * 1000),
        limits=PublishLimits(),
        caller_ip=HOST,
    )
    return req.message.message_id.encode(), codec.encode(req)


def raw_producer(bootstrap: str) -> AIOKafkaProducer:
    # The API's producer settings (producers/kafka_log.py): idempotent (acks=all), linger 1 ms.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        linger_ms=1,
        max_batch_size=256 * 1024,
        max_request_size=MAX_TOPIC_MESSAGE_BYTES,
        compression_type=None,
    )


async def raw_pipelined(bootstrap: str, topic: str, value: bytes, seconds: float) -> float:
    """Records/s of one producer sending without waiting (up to 5,000 unacknowledged)."""
    p = raw_producer(bootstrap)
    await p.start()
    try:
        for _ in range(200):  # warm-up: metadata, connections, producer id
            await p.send_and_wait(topic, value=value, key=uuid.uuid4().hex.encode())
        n = 0
        pending: list[asyncio.Future[Any]] = []
        t0 = time.monotonic()
        deadline = t0 + seconds
        while time.monotonic() < deadline:
            for _ in range(500):
                pending.append(await p.send(topic, value=value, key=uuid.uuid4().hex.encode()))
            n += 500
            if len(pending) >= 5000:
                await asyncio.gather(*pending[:2500])
                del pending[:2500]
        await asyncio.gather(*pending)
        return n / (time.monotonic() - t0)
    finally:
        await p.stop()


async def raw_concurrent(
    bootstrap: str, topic: str, value: bytes, seconds: float, concurrency: int
) -> float:
    """Records/s of ``concurrency`` tasks, each awaiting its ack before sending (as the API)."""
    p = raw_producer(bootstrap)
    await p.start()
    try:
        await p.send_and_wait(topic, value=value, key=b"warm")
        count = 0
        t0 = time.monotonic()
        deadline = t0 + seconds

        async def worker() -> None:
            nonlocal count
            while time.monotonic() < deadline:
                await p.send_and_wait(topic, value=value, key=uuid.uuid4().hex.encode())
                count += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.monotonic() - t0)
    finally:
        await p.stop()


def stream_workers_producer(bootstrap: str) -> AIOKafkaProducer:
    # The stream workers' producer settings (faust's, streams/app.py): acks=all, linger 5 ms,
    # 256 KiB batches, faust's default 1 MB requests, no compression, not idempotent.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        max_batch_size=262_144,
        max_request_size=1_000_000,
        compression_type=None,
    )


async def raw_passthrough(
    bootstrap: str, source: str, target: str, expect: int, cap_s: float
) -> tuple[float | None, int]:
    """Records/s of the simplest at-least-once Python stage, and how many it passed on.

    A consumer reads ``source`` from the beginning in batches (``getmany``), produces one record
    per input to ``target`` with the stream workers' producer settings, awaits the batch's acks,
    then commits: the ceiling of any Python stage between two topics. The rate counts from the
    first batch to the last commit, so group join and start-up are left out.
    """
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"bench-passthrough-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = stream_workers_producer(bootstrap)
    await producer.start()
    await consumer.start()
    done = 0
    first = last = 0.0
    try:
        deadline = time.monotonic() + cap_s
        while done < expect and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            if not batch:
                continue
            if not done:
                first = time.monotonic()
            acks = [
                await producer.send(target, value=rec.value, key=rec.key)
                for records in batch.values()
                for rec in records
            ]
            await asyncio.gather(*acks)
            await consumer.commit()
            done += len(acks)
            last = time.monotonic()
    finally:
        await consumer.stop()
        await producer.stop()
    return (done / (last - first) if last > first else None), done


async def produce_all(bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]]) -> int:
    """Append every (key, value) to ``topic`` as fast as one producer can; returns how many.

    For loading a topic before a phase, not a figure: acks=all so that every record is there
    when this returns, long lingers and large batches, acks awaited every 20,000 records.
    """
    p = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=20,
        max_batch_size=512 * 1024,
        max_request_size=MAX_TOPIC_MESSAGE_BYTES,
    )
    await p.start()
    n = 0
    try:
        pending: list[asyncio.Future[Any]] = []
        for key, value in records:
            pending.append(await p.send(topic, value=value, key=key))
            n += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await p.stop()
    return n


class Offsets:
    """Sum of the end offsets of a topic's partitions (how many records it holds)."""

    def __init__(self, bootstrap: str) -> None:
        self._c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)

    async def __aenter__(self) -> Offsets:
        await self._c.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._c.stop()

    async def total(self, topic: str) -> int:
        ends = await self._c.end_offsets(await partitions(self._c, topic))
        return sum(ends.values())


async def partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(parts)]


async def read_to_end(
    bootstrap: str, topic: str, on_record: Callable[[ConsumerRecord], None], deadline_s: float
) -> None:
    """Hand every record the topic holds now to ``on_record``, in batches; give up after
    ``deadline_s`` (a figure computed from what was read is then partial, not wrong)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await partitions(consumer, topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + deadline_s
        while pending and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                for rec in records:
                    on_record(rec)
                if records and records[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
