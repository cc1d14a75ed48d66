"""Reading a whole topic in a real-broker test: every record once ``expect`` arrived and the topic
stayed quiet a while after (so a duplicate arriving late is still counted), or the time ran out."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer


async def read_topic(
    bootstrap: str, topic: str, expect: int, *, timeout_s: float = 30, quiet_s: float = 0.5
) -> list[tuple[int, bytes, bytes]]:
    """Every record of ``topic`` as (partition, key, value)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    got: list[tuple[int, bytes, bytes]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        quiet_until: float | None = None
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for tp, recs in batch.items():
                got += [(tp.partition, r.key or b"", r.value or b"") for r in recs]
            if len(got) >= expect:
                if batch or quiet_until is None:
                    quiet_until = loop.time() + quiet_s
                elif loop.time() > quiet_until:
                    break
    finally:
        await consumer.stop()
    return got
