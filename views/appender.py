"""Appends in batches: the records callers hand over while a partition's previous batch is on its
way leave together in that partition's next batch, and each caller awaits one ticket for all
of its records.

aiokafka's ``send()`` costs about 35 CPU-µs per record once its future is gathered (partition
lookup, a future per record, the accumulator's per-record path); filling a ``BatchBuilder``
per partition and handing it over with ``send_batch`` costs about 19 (measured against the
test broker, 40,000 records of 1.7 KB, in batches of 64). The API appends one record per
publish and the sender three per attempt, from many concurrent tasks: this turns their
appends into the "one produce-and-ack per batch" the hot paths are designed around.

Order: one lane per partition hands its records over in the order they were appended, so two
records of one key are acknowledged in that order (the idempotent producer keeps a
partition's batches in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from kafstash.schemas.partitioner import partition_of

log = logging.getLogger(__name__)

Record = tuple[str, bytes | None, bytes | None]  # topic, key, value (None value: a tombstone)


class AppendTimeout(KafkaError):  # type: ignore[misc]
    """The broker did not acknowledge within the appender's timeout; stored or not is unknown."""


class _Ticket:
    """One caller's records: done when every one of them is acknowledged, or the first fails."""

    __slots__ = ("future", "pending", "started")

    def __init__(self, future: asyncio.Future[None], pending: int, started: float) -> None:
        self.future = future
        self.pending = pending
        self.started = started

    def acked(self, count: int) -> None:
        self.pending -= count
        if self.pending <= 0 and not self.future.done():
            self.future.set_result(None)

    def failed(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class _Lane:
    """The records waiting for one partition, and the task that hands them over."""

    __slots__ = ("items", "ready", "task")

    def __init__(self) -> None:
        self.items: list[tuple[_Ticket, Record]] = []
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class BatchAppender:
    """Batches the appends of concurrent callers onto ``producer`` (started and stopped by its
    owner). ``timeout_s`` bounds how long a ticket may wait for its acknowledgement.

    One lane per partition: ``send_batch`` waits while the partition's previous batch is still
    queued (the idempotent producer has one request in flight per partition), and a lane that
    waits holds up only its own partition while its next batch fills. A single flusher for all
    partitions waited on one partition at a time: the end-to-end p99 at 1,000 publishes/s rose
    from 104 to 398 ms in the benchmark.
    """

    def __init__(self, producer: AIOKafkaProducer, *, timeout_s: float) -> None:
        self._producer = producer
        self._timeout_s = timeout_s
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._waiting: deque[_Ticket] = deque()  # in start order, for the timeout sweep
        self._sweeper: asyncio.Task[None] | None = None
        self._resolving = asyncio.Lock()

    async def __aenter__(self) -> Self:
        self._sweeper = asyncio.create_task(self._sweep())
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in [*tasks, *([self._sweeper] if self._sweeper else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for lane in self._lanes.values():
            for ticket, _ in lane.items:
                ticket.failed(AppendTimeout("the appender closed before the record left"))
            lane.items.clear()

    async def append(self, records: Sequence[Record]) -> None:
        """Append ``records`` and return once all of them are acknowledged; raises the first
        KafkaError (AppendTimeout past the timeout)."""
        if not records:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ticket = _Ticket(future, len(records), time.monotonic())
        cluster = self._producer.client.cluster
        topics = {topic for topic, _, _ in records}
        if self._resolving.locked() or any(cluster.partitions_for_topic(t) is None for t in topics):
            # A topic's partitions are not known yet: wait for them in line, so that callers
            # arriving meanwhile append after this one (the lock is FIFO), in call order.
            async with self._resolving:
                for topic in topics:
                    await self._producer.partitions_for(topic)
                self._enqueue(ticket, records)
        else:
            self._enqueue(ticket, records)
        self._waiting.append(ticket)
        await future

    def _enqueue(self, ticket: _Ticket, records: Sequence[Record]) -> None:
        # Nothing awaits here: a caller's records enter their lanes together, so two callers'
        # records of one key never interleave.
        cluster = self._producer.client.cluster
        for record in records:
            topic, key, _ = record
            count = len(cluster.partitions_for_topic(topic) or ())  # a topic may gain partitions
            # The partition the producer's own partitioner (CachedPartitioner) would choose.
            part = (
                partition_of(key, count) if key is not None else random.randrange(count)  # noqa: S311 - load spreading
            )
            lane = self._lanes.get((topic, part))
            if lane is None:
                lane = self._lanes[(topic, part)] = _Lane()
                lane.task = asyncio.create_task(self._run(lane, topic, part))
            lane.items.append((ticket, record))
            lane.ready.set()

    async def _run(self, lane: _Lane, topic: str, part: int) -> None:
        while True:
            await lane.ready.wait()
            lane.ready.clear()
            items, lane.items = lane.items, []
            try:
                await self._hand_over(topic, part, items)
            except Exception as exc:  # what could not be handed over fails its callers
                log.warning(
                    "append of %d records to %s/%d failed: %r", len(items), topic, part, exc
                )
                for ticket, _ in items:
                    ticket.failed(exc if isinstance(exc, KafkaError) else KafkaError(repr(exc)))

    async def _hand_over(self, topic: str, part: int, items: list[tuple[_Ticket, Record]]) -> None:
        start = 0
        while start < len(items):
            batch = self._producer.create_batch()
            end = start
            while end < len(items):
                _, key, value = items[end][1]
                if batch.append(key=key, value=value, timestamp=None) is None:
                    break
                end += 1
            if end == start:
                raise KafkaError("a record is larger than the producer's batch size")
            batch.close()
            ack = await self._producer.send_batch(batch, topic, partition=part)
            ack.add_done_callback(_settle(items[start:end]))
            start = end

    async def _sweep(self) -> None:
        # One timer for every waiting caller, instead of a timeout context per append.
        while True:
            await asyncio.sleep(min(0.25, self._timeout_s / 4))
            now = time.monotonic()
            waiting = self._waiting
            while waiting and waiting[0].future.done():
                waiting.popleft()
            while waiting and now - waiting[0].started > self._timeout_s:
                waiting.popleft().failed(
                    AppendTimeout(f"not acknowledged within {self._timeout_s:g}s")
                )


def _settle(items: list[tuple[_Ticket, Record]]) -> Callable[[asyncio.Future[object]], None]:
    def done(ack: asyncio.Future[object]) -> None:
        exc = None if ack.cancelled() else ack.exception()
        if ack.cancelled() or exc is not None:
            failure = exc or KafkaError("the batch was cancelled")
            for ticket, _ in items:
                ticket.failed(failure)
            return
        for ticket, _ in items:
            ticket.acked(1)

    return done
