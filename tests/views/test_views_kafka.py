"""kafstash.views against the real broker: the follower and the compacted view every room reads
its topics with (the API's views, the stream workers' URL groups, the senders' signing keys)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from kafstash.views.compacted import CompactedView
from kafstash.views.follower import TopicFollower, TopicMissing

pytestmark = pytest.mark.broker

PARTITIONS = 3


class Item(msgspec.Struct, frozen=True):
    at: int
    note: str = ""


def _decode(key: str, value: bytes) -> Item | None:
    if not key.startswith("item/"):
        return None
    return msgspec.json.decode(value, type=Item)


def _at(item: Item) -> int:
    return item.at


def _encode(item: Item) -> bytes:
    return msgspec.json.encode(item)


def new_name() -> str:
    return f"views-{uuid.uuid4().hex[:10]}"


async def create_topic(bootstrap: str, name: str, partitions: int = PARTITIONS) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=partitions,
                    replication_factor=1,
                    topic_configs={"cleanup.policy": "compact"},
                )
            ]
        )
    finally:
        await admin.close()


@pytest.fixture
async def topic(kafka_bootstrap: str) -> str:
    name = new_name()
    await create_topic(kafka_bootstrap, name)
    return name


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def eventually(check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_a_view_is_entered_only_once_it_holds_every_partition(
    kafka_bootstrap: str, topic: str, producer: AIOKafkaProducer
) -> None:
    keys = [f"item/{i}" for i in range(30)]
    for i, key in enumerate(keys):
        await producer.send_and_wait(topic, _encode(Item(at=i)), key=key.encode())
    await producer.send_and_wait(topic, _encode(Item(at=99)), key=b"item/0")  # the latest wins
    await producer.send_and_wait(topic, None, key=b"item/1")  # a tombstone
    await producer.send_and_wait(topic, b"not json", key=b"item/bad")  # unreadable: skipped
    view = CompactedView(kafka_bootstrap, topic, _decode)
    async with view:
        assert view.ready.is_set()
        found = dict(view.scan("item/"))
        assert set(found) == set(keys) - {"item/1"}
        assert found["item/0"] == Item(at=99)
        assert found["item/29"] == Item(at=29)


async def test_an_empty_topic_is_caught_up_at_once(kafka_bootstrap: str, topic: str) -> None:
    view = CompactedView(kafka_bootstrap, topic, _decode)
    async with asyncio.timeout(10), view:
        assert view.scan("") == []


async def test_a_view_keeps_following_after_it_was_entered(
    kafka_bootstrap: str, topic: str, producer: AIOKafkaProducer
) -> None:
    async with CompactedView(kafka_bootstrap, topic, _decode) as view:
        await producer.send_and_wait(topic, b"garbage", key=b"item/a")  # does not stop it
        await producer.send_and_wait(topic, _encode(Item(at=1)), key=b"item/a")
        await eventually(lambda: view.get("item/a") == Item(at=1))
        await producer.send_and_wait(topic, None, key=b"item/a")
        await eventually(lambda: view.get("item/a") is None)


async def test_the_floor_holds_against_records_already_on_their_way(
    kafka_bootstrap: str, producer: AIOKafkaProducer
) -> None:
    # One partition: the sentinel record after the stale one proves the stale one was read.
    topic = new_name()
    await create_topic(kafka_bootstrap, topic, partitions=1)
    view = CompactedView(kafka_bootstrap, topic, _decode, version=_at)
    async with view:
        ours = Item(at=10, note="ours")
        view.put("item/a", ours)
        await producer.send_and_wait(topic, _encode(Item(at=9)), key=b"item/a")
        await producer.send_and_wait(topic, None, key=b"item/a")
        await producer.send_and_wait(topic, _encode(Item(at=1)), key=b"item/sentinel")
        await eventually(lambda: view.get("item/sentinel") is not None)
        assert view.get("item/a") == ours
        derived = Item(at=10, note="derived")
        await producer.send_and_wait(topic, _encode(derived), key=b"item/a")
        await eventually(lambda: view.get("item/a") == derived)
        view.drop("item/a", 20)
        await producer.send_and_wait(topic, _encode(Item(at=15)), key=b"item/a")
        await producer.send_and_wait(topic, _encode(Item(at=2)), key=b"item/sentinel")
        await eventually(lambda: view.get("item/sentinel") == Item(at=2))
        assert view.get("item/a") is None


async def test_a_missing_topic_fails_the_start_and_the_view_can_start_again(
    kafka_bootstrap: str,
) -> None:
    name = new_name()
    view = CompactedView(kafka_bootstrap, name, _decode)
    with pytest.raises(TopicMissing) as raised:
        await view.__aenter__()
    assert raised.value.topic == name
    await create_topic(kafka_bootstrap, name)
    async with asyncio.timeout(30), view:  # what the stream workers' groups view retries
        assert view.ready.is_set()


async def test_a_follower_from_the_end_sees_only_new_records(
    kafka_bootstrap: str, topic: str, producer: AIOKafkaProducer
) -> None:
    await producer.send_and_wait(topic, b"old", key=b"k")
    seen: list[bytes | None] = []
    async with TopicFollower(
        kafka_bootstrap, topic, lambda _k, v: seen.append(v), from_beginning=False
    ) as follower:
        await asyncio.wait_for(follower.caught_up.wait(), 15)  # nothing to catch up on
        await producer.send_and_wait(topic, b"new", key=b"k")
        await eventually(lambda: seen == [b"new"])


async def test_a_follower_from_a_time_starts_at_the_first_record_at_or_after_it(
    kafka_bootstrap: str, producer: AIOKafkaProducer
) -> None:
    topic = new_name()
    await create_topic(kafka_bootstrap, topic, partitions=1)
    now_ms = int(time.time() * 1000)
    await producer.send_and_wait(topic, b"before", key=b"k", timestamp_ms=now_ms - 60_000)
    await producer.send_and_wait(topic, b"after", key=b"k", timestamp_ms=now_ms)
    seen: list[bytes | None] = []
    follower = TopicFollower(
        kafka_bootstrap,
        topic,
        lambda _k, v: seen.append(v),
        from_beginning=False,
        start_at_ms=now_ms - 1_000,
    )
    async with follower:
        await asyncio.wait_for(follower.caught_up.wait(), 15)
        assert seen == [b"after"]


async def test_sync_returns_once_the_view_holds_what_was_appended_before_it(
    kafka_bootstrap: str, topic: str, producer: AIOKafkaProducer
) -> None:
    """Another process's write, seen before deciding on it (the API's runs view, before it
    calls a revived workflow run ended): many records, so that applying them takes several
    polls and a sync that returned early would find most of them missing."""
    async with CompactedView(kafka_bootstrap, topic, _decode) as view:
        n = 5000
        sent = [
            await producer.send(topic, _encode(Item(at=i)), key=f"item/{i}".encode())
            for i in range(n)
        ]
        await asyncio.gather(*sent)
        assert await view.sync(30.0)
        assert view.count() == n
        assert view.get(f"item/{n - 1}") == Item(at=n - 1)


async def test_sync_gives_up_after_its_timeout_on_a_closed_follower(
    kafka_bootstrap: str, topic: str
) -> None:
    view = CompactedView(kafka_bootstrap, topic, _decode)
    async with view:
        pass
    assert await view.sync(0.5) is False
