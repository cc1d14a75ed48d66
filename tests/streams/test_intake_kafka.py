"""The stream workers' intake against the real broker: batches accepted or forwarded, offsets
committed after the acks, an upgrade resuming where the faust group was, a join re-reading
nothing."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import GroupCoordinatorNotAvailableError

from kafstash.schemas import codec
from kafstash.schemas.commands import DeliveryDue, PublishRequest
from kafstash.schemas.message import Message
from kafstash.schemas.partitioner import CachedPartitioner
from kafstash.schemas.topics import Topics
from kafstash.streams.intake_runtime import Intake, IntakeConfig
from tests.topic_reader import read_topic

pytestmark = pytest.mark.broker


def _request(i: int, *, dedup: bool = False) -> tuple[bytes, bytes]:
    mid = f"msg_{i}"
    message = Message(
        message_id=mid,
        user_id="defaultUser",
        url="https://example.com/hook",
        created_at=1,
        not_before=0,
        body=b"x",
        header={},
        max_retries=0,
    )
    dedup_key = f"defaultUser:id:k{i}" if dedup else None
    req = PublishRequest(request_id=f"req_{i}", message=message, dedup_key=dedup_key)
    return (dedup_key or mid).encode(), codec.encode(req)


class Deployment:
    def __init__(self, bootstrap: str, partitions: int) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.topics = Topics(prefix=f"intake-{uuid.uuid4().hex[:8]}")
        self.config = IntakeConfig(
            bootstrap=bootstrap,
            topics=self.topics,
            group_id=f"{self.topics.prefix}-streams-intake",
            previous_group=f"{self.topics.prefix}-streams",
            dedup_window_ms=60_000,
        )

    async def create(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(n, self.partitions, 1) for n in self.topics.all()])
        finally:
            await admin.close()

    async def produce(self, records: list[tuple[bytes, bytes]]) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, partitioner=CachedPartitioner(), linger_ms=5
        )
        await producer.start()
        try:
            await asyncio.gather(
                *[await producer.send(self.topics.requests, v, key=k) for k, v in records]
            )
        finally:
            await producer.stop()

    async def read(
        self, topic: str, expect: int, timeout_s: float = 30
    ) -> list[tuple[int, bytes, bytes]]:
        """Every record of ``topic`` once ``expect`` arrived, and a quiet half second after."""
        return await read_topic(self.bootstrap, topic, expect, timeout_s=timeout_s)

    async def committed(self, group: str) -> dict[int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            found = await admin.list_consumer_group_offsets(group)
        except GroupCoordinatorNotAvailableError:  # a group the broker has not seen yet
            return {}
        finally:
            await admin.close()
        return {
            tp.partition: om.offset for tp, om in found.items() if tp.topic == self.topics.requests
        }


@contextlib.asynccontextmanager
async def running(intake: Intake) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(intake.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until(check: object, timeout_s: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():  # type: ignore[operator]
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.2)


def test_accepts_plain_requests_forwards_the_rest_and_commits_after_acks(
    kafka_bootstrap: str,
) -> None:
    async def scenario() -> None:
        d = Deployment(kafka_bootstrap, partitions=3)
        await d.create()
        plain = [_request(i) for i in range(40)]
        keyed = [_request(i, dedup=True) for i in range(40, 50)]
        await d.produce(plain + keyed + [(b"junk", b"not json")])
        async with running(Intake(d.config)):
            deliveries = await d.read(d.topics.deliveries, 40)
            forwarded = await d.read(d.topics.table_requests, 10)
            events = await d.read(d.topics.events, 40)

            async def all_committed() -> bool:
                return sum((await d.committed(d.config.group_id)).values()) == 51

            await _until(all_committed)
        ids = Counter(codec.decode(v, DeliveryDue).message.message_id for _, _, v in deliveries)
        assert ids == Counter(f"msg_{i}" for i in range(40))
        assert len(events) == 40
        # Forwarded unchanged, under the same key, to the same partition number.
        part = CachedPartitioner()
        assert sorted((k, v) for _, k, v in forwarded) == sorted(keyed)
        for p, k, _ in forwarded:
            assert p == part(k, list(range(3)), list(range(3)))

    asyncio.run(scenario())


def test_a_partition_never_committed_resumes_where_the_faust_group_was(
    kafka_bootstrap: str,
) -> None:
    async def scenario() -> None:
        d = Deployment(kafka_bootstrap, partitions=1)
        await d.create()
        await d.produce([_request(i) for i in range(5)])
        # The stream workers before the intake had read three of them.
        tp = TopicPartition(d.topics.requests, 0)
        old = AIOKafkaConsumer(
            bootstrap_servers=kafka_bootstrap,
            group_id=d.config.previous_group,
            enable_auto_commit=False,
        )
        await old.start()
        try:
            old.assign([tp])
            await old.commit({tp: 3})
        finally:
            await old.stop()
        async with running(Intake(d.config)):

            async def caught_up() -> bool:
                return (await d.committed(d.config.group_id)).get(0) == 5

            await _until(caught_up)
        deliveries = await d.read(d.topics.deliveries, 2, timeout_s=5)
        ids = sorted(codec.decode(v, DeliveryDue).message.message_id for _, _, v in deliveries)
        assert ids == ["msg_3", "msg_4"]

    asyncio.run(scenario())


def test_a_second_intake_joining_under_load_makes_nothing_read_twice(
    kafka_bootstrap: str,
) -> None:
    async def scenario() -> None:
        d = Deployment(kafka_bootstrap, partitions=4)
        await d.create()
        n = 4_000
        first, second = Intake(d.config), Intake(d.config)

        async def feed() -> None:
            # About four seconds of load, so the second joins while records keep coming.
            for start in range(0, n, 100):
                await d.produce([_request(i) for i in range(start, start + 100)])
                await asyncio.sleep(0.1)

        async with running(first):
            feeding = asyncio.create_task(feed())
            await asyncio.sleep(0.5)
            async with running(second):

                async def joined() -> bool:
                    return bool(second.partitions()) and bool(first.partitions())

                await _until(joined)
                assert not feeding.done(), "the load ended before the second intake joined"
                await feeding

                async def all_committed() -> bool:
                    return sum((await d.committed(d.config.group_id)).values()) == n

                await _until(all_committed, timeout_s=60)
        deliveries = await d.read(d.topics.deliveries, n)
        ids = Counter(codec.decode(v, DeliveryDue).message.message_id for _, _, v in deliveries)
        assert len(ids) == n
        assert [mid for mid, count in ids.items() if count > 1] == []

    asyncio.run(scenario())
