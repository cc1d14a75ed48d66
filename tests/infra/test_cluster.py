"""A three-node KRaft cluster forms, keeps taking acks=all writes with one node killed, and the
killed node rejoins on its own data and catches up.

It starts its own LocalCluster in tmp_path (never the session broker, which others use).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from kafstash.infra.kafka import LocalCluster

pytestmark = pytest.mark.broker


async def create_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, 1, 3, topic_configs={"min.insync.replicas": "2"})]
        )
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, request_timeout_ms=20000
    )
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str) -> list[bytes]:
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        out: list[bytes] = []
        async with asyncio.timeout(30):
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                out += [r.value for r in batch.get(tp, []) if r.value is not None]
        return out
    finally:
        await consumer.stop()


def wait_isr(cluster: LocalCluster, topic: str, size: int, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    isr: list[int] = []
    while time.monotonic() < deadline:
        # Right after CreateTopics the node asked may not have the topic's metadata yet: no
        # partition 0 is "not there yet", like a short ISR.
        _leader, isr = cluster.partitions(topic).get(0, (-1, []))
        if len(isr) == size:
            return isr
        time.sleep(0.5)
    raise AssertionError(f"ISR of {topic} stayed {isr}, wanted {size} replicas")


def test_cluster_forms_and_survives_one_node_down(tmp_path: Path) -> None:
    with LocalCluster(tmp_path / "cluster", n=3) as cluster:
        assert len(cluster.bootstrap.split(",")) == 3
        brokers = cluster.describe_cluster()["brokers"]
        assert sorted(b["node_id"] for b in brokers) == [1, 2, 3]

        topic = f"cluster-{uuid.uuid4().hex[:8]}"
        asyncio.run(create_topic(cluster.bootstrap, topic))
        assert sorted(wait_isr(cluster, topic, 3)) == [1, 2, 3]
        assert cluster.topic_config(topic)["min.insync.replicas"] == "2"
        before = [f"before-{i}".encode() for i in range(20)]
        asyncio.run(produce(cluster.bootstrap, topic, before))

        # Kill the partition's leader: another replica takes over, writes with acks=all go on
        # with the two left (min.insync.replicas=2).
        leader, _isr = cluster.partitions(topic)[0]
        cluster.kill(leader)
        cluster.wait_brokers(2)
        during = [f"during-{i}".encode() for i in range(20)]
        asyncio.run(produce(cluster.bootstrap, topic, during))
        new_leader, isr = cluster.partitions(topic)[0]
        assert new_leader != leader
        assert leader not in isr
        assert asyncio.run(read_all(cluster.bootstrap, topic)) == before + during

        # The killed node comes back on its data, rejoins the ISR, and holds every record.
        cluster.start_node(leader)
        cluster.wait_brokers(3)
        assert leader in wait_isr(cluster, topic, 3)
        cluster.kill(new_leader)
        assert asyncio.run(read_all(cluster.bootstrap, topic)) == before + during
