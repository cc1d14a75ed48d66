"""Kafka-native use: a plain Kafka producer writes the documented PublishRequest JSON straight
to `<prefix>.requests`; kafstash delivers it, signed, and its states appear on `<prefix>.events`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from kafstash.schemas.jsonschema import OUT
from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker


def _publish_request(url: str, user_id: str, message_id: str) -> dict[str, object]:
    now = int(time.time() * 1000)
    return {
        "type": "publish.v1",
        "requestId": f"req_{message_id}",
        "message": {
            "messageId": message_id,
            "userId": user_id,
            "url": url,
            "createdAt": now,
            "notBefore": now,
            "method": "PUT",
            "header": {"Content-Type": ["application/json"], "X-From": ["kafka"]},
            "body": "eyJhIjoxfQ==",  # base64 of {"a":1}, as the JSON Schema says
            "maxRetries": 1,
        },
    }


async def _produce_and_read_events(stack: Stack, record: dict[str, object], mid: str) -> list[str]:
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(
            f"{stack.prefix}.requests", json.dumps(record).encode(), key=mid.encode()
        )
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        f"{stack.prefix}.events",
        bootstrap_servers=stack.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    states: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while "DELIVERED" not in states and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    event = json.loads(rec.value)
                    if event["messageId"] == mid:
                        states.append(event["state"])
    finally:
        await consumer.stop()
    return states


def test_a_plain_kafka_producer_can_publish(
    stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    schema = json.loads((Path(OUT) / "publish-request.v1.schema.json").read_text())
    assert "PublishRequest" in json.dumps(schema)
    path = route("ok")
    mid = "msg_kafkaNative1"
    record = _publish_request(sink.url(path), stack.user.user_id, mid)
    states = asyncio.run(_produce_and_read_events(stack, record, mid))
    [got] = sink.wait_count(path, 1, timeout=60)
    assert got.message_id == mid
    assert got.method == "PUT"
    assert got.body == b'{"a":1}'
    assert got.headers["X-From"] == "kafka"
    assert got.signature_ok, got.signature_error
    assert states[:3] == ["CREATED", "ACTIVE", "DELIVERED"]
