"""The one way kafstash reads a topic outside a consumer group: every partition, nothing committed.

A :class:`TopicFollower` is assigned all partitions of its topic, starts at the beginning, the
end, or the first record at or after a time, and hands each record to ``on_record`` until it is
closed. ``caught_up`` is set once it has read up to the end offsets seen at start, so a view built
from the beginning can refuse to answer before it is complete. A broker error while following is
logged and retried from the same position; only entering may fail (:class:`TopicMissing`, or
aiokafka's error when no broker answers), and a failed follower may be entered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger(__name__)

OnRecord = Callable[[bytes | None, bytes | None], None]

_RETRY_S = 1.0


class TopicMissing(Exception):
    """The topic to follow does not exist (yet): provisioning has not created it."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic} does not exist: run `kafstash topics create`")
        self.topic = topic


class TopicFollower:
    """Reads every partition of one topic and hands records to ``on_record``; an async context
    manager that owns its consumer and its reading task."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        on_record: OnRecord,
        *,
        from_beginning: bool = True,
        start_at_ms: int | None = None,
        fetch_min_bytes: int = 1,
    ) -> None:
        self.topic = topic
        self._on_record = on_record
        self._from_beginning = from_beginning
        # Read from the first record at or after this time (Kafka's time index) instead.
        self._start_at_ms = start_at_ms
        self._bootstrap = bootstrap
        self._fetch_min_bytes = fetch_min_bytes
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.caught_up = asyncio.Event()
        self._polled = asyncio.Event()  # set after every poll, for sync()

    async def __aenter__(self) -> Self:
        # A consumer per entry: one that failed to start is not started again.
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
            fetch_min_bytes=self._fetch_min_bytes,
        )
        await self._consumer.start()
        try:
            await self._start()
        except BaseException:
            await self._consumer.stop()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def _start(self) -> None:
        assert self._consumer is not None
        partitions = self._consumer.partitions_for_topic(self.topic)
        if not partitions:
            await self._consumer._client.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(self.topic)
        if not partitions:
            raise TopicMissing(self.topic)
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        end: dict[TopicPartition, int] = await self._consumer.end_offsets(tps)
        if self._start_at_ms is not None:
            found = await self._consumer.offsets_for_times({tp: self._start_at_ms for tp in tps})
            for tp in tps:
                hit = found.get(tp)
                self._consumer.seek(tp, end[tp] if hit is None else hit.offset)
        elif self._from_beginning:
            await self._consumer.seek_to_beginning(*tps)
        else:
            for tp in tps:
                self._consumer.seek(tp, end[tp])
        # Resolve positions now, so records appended after the start are never skipped.
        for tp in tps:
            await self._consumer.position(tp)
        pending = set()
        if self._from_beginning or self._start_at_ms is not None:
            pending = {tp for tp, off in end.items() if off > 0}
        self._task = asyncio.create_task(self._run(end, pending), name=f"follow:{self.topic}")

    async def sync(self, timeout_s: float) -> bool:
        """Wait until every record appended before this call has been handed to ``on_record``:
        read-your-writes of what another process wrote. False when ``timeout_s`` passed first."""
        consumer = self._consumer
        if consumer is None:
            return False
        try:
            async with asyncio.timeout(timeout_s):
                end: dict[TopicPartition, int] = await consumer.end_offsets(
                    sorted(consumer.assignment())
                )
                while await self._behind(end):
                    self._polled.clear()
                    await self._polled.wait()
        except TimeoutError:
            return False
        return True

    async def _behind(self, end: dict[TopicPartition, int]) -> bool:
        assert self._consumer is not None
        # ``position`` moves when getmany returns records, and _poll hands them all on before
        # its next await: a position at the end means they were applied.
        for tp, offset in end.items():
            if await self._consumer.position(tp) < offset:
                return True
        return False

    async def _run(self, end: dict[TopicPartition, int], pending: set[TopicPartition]) -> None:
        while True:
            if not pending:
                self.caught_up.set()
            try:
                await self._poll(end, pending)
            except Exception:
                # The consumer keeps its positions: reading on after the outage loses nothing,
                # and a view that stopped following would answer from a stale copy for good.
                log.exception("following %s failed, retrying", self.topic)
                await asyncio.sleep(_RETRY_S)

    async def _poll(self, end: dict[TopicPartition, int], pending: set[TopicPartition]) -> None:
        assert self._consumer is not None
        batch = await self._consumer.getmany(timeout_ms=200, max_records=2000)
        for tp, records in batch.items():
            for rec in records:
                try:
                    self._on_record(rec.key, rec.value)
                except Exception:
                    log.exception("skipping unreadable record %s@%s", tp, rec.offset)
            if tp in pending and records and records[-1].offset + 1 >= end[tp]:
                pending.discard(tp)
        # The end offset may be a transaction marker or a compacted-away record: no record
        # reaches it, the position does.
        for tp in list(pending):
            if await self._consumer.position(tp) >= end[tp]:
                pending.discard(tp)
        self._polled.set()
