"""Reading back what was appended lately: the records under given keys since a time.

A stream worker taking over a request that a previous run claimed but may not have finished
(streams/dedup.py, "claims") must know which of the request's records that run already
produced. Each record went to the partition its key hashes to (the producers' partitioner,
schemas/partitioner.py), so :class:`RecentRecords` reads only those partitions, from the first
record at or after the time (Kafka's time index) to the end offsets at the call. It is used on
replays only, never per record of a normal run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaConsumer, TopicPartition

from kafstash.schemas.partitioner import partition_of

# (topic, key) → the values of every record under that key, oldest first (None: a tombstone).
Found = dict[tuple[str, bytes], list[bytes | None]]


class RecentRecords:
    """An async context manager owning one consumer outside any group (nothing committed)."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._consumer: AIOKafkaConsumer | None = None
        # One read at a time: each read assigns the consumer the partitions it needs.
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=20,
        )
        await self._consumer.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def since(self, wanted: Iterable[tuple[str, bytes]], since_ms: int) -> Found:
        """Every record keyed ``key`` in the partition of ``topic`` that ``key`` hashes to,
        appended at or after ``since_ms`` and before this call."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("RecentRecords used outside its context")
        async with self._lock:
            keys: dict[TopicPartition, set[bytes]] = {}
            for topic, key in wanted:
                tp = TopicPartition(topic, partition_of(key, await self._partitions(topic)))
                keys.setdefault(tp, set()).add(key)
            found: Found = {(tp.topic, k): [] for tp, ks in keys.items() for k in ks}
            if not keys:
                return found
            tps = sorted(keys)
            consumer.assign(tps)
            ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
            starts = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
            left: set[TopicPartition] = set()
            for tp in tps:
                hit = starts.get(tp)
                if hit is not None and hit.offset < ends[tp]:
                    consumer.seek(tp, hit.offset)
                    left.add(tp)
            while left:
                batch = await consumer.getmany(*left, timeout_ms=200)
                for tp, records in batch.items():
                    for r in records:
                        if r.offset < ends[tp] and r.key in keys[tp]:
                            found[(tp.topic, r.key)].append(r.value)
                for tp in list(left):
                    if await consumer.position(tp) >= ends[tp]:
                        left.discard(tp)
            return found

    async def _partitions(self, topic: str) -> int:
        assert self._consumer is not None
        partitions = self._consumer.partitions_for_topic(topic)
        if not partitions:
            await self._consumer._client.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(f"topic {topic} has no partitions")
        return len(partitions)
