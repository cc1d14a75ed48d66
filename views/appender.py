"""Appends in batches: every record handed over in one turn of the event loop leaves in one
batch per partition, and each caller awaits one ticket for all of its records.

aiokafka's ``send()`` costs about 35 CPU-µs per record once its future is gathered (partition
lookup, a future per record, the accumulator's per-record path); filling a ``BatchBuilder``
per partition and handing it over with ``send_batch`` costs about 19 (measured against the
test broker, 40,000 records of 1.7 KB, in batches of 64). The API appends one record per
publish and the sender three per attempt, from many concurrent tasks: this turns their
appends into the "one produce-and-ack per batch" the hot paths are designed around.

Order: one flusher hands rounds to the producer in the order they were taken, and records of
one partition keep their order within a round, so two records of one key are acknowledged in
the order they were appended (the idempotent producer keeps a partition's batches in order).
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


class BatchAppender:
    """Batches the appends of concurrent callers onto ``producer`` (started and stopped by its
    owner). ``timeout_s`` bounds how long a ticket may wait for its acknowledgement."""

    def __init__(self, producer: AIOKafkaProducer, *, timeout_s: float) -> None:
        self._producer = producer
        self._timeout_s = timeout_s
        self._queue: list[tuple[_Ticket, Record]] = []
        self._ready = asyncio.Event()
        self._waiting: deque[_Ticket] = deque()  # in start order, for the timeout sweep
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        self._tasks = [asyncio.create_task(self._flush_loop()), asyncio.create_task(self._sweep())]
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for ticket, _ in self._queue:
            ticket.failed(AppendTimeout("the appender closed before the record left"))
        self._queue.clear()

    def append(self, records: Sequence[Record]) -> asyncio.Future[None]:
        """Queue ``records``; the future resolves once all of them are acknowledged, or fails
        with the first KafkaError (AppendTimeout past the timeout)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ticket = _Ticket(future, len(records), time.monotonic())
        if not records:
            future.set_result(None)
            return future
        self._queue.extend((ticket, record) for record in records)
        self._waiting.append(ticket)
        self._ready.set()
        return future

    async def _flush_loop(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            round_, self._queue = self._queue, []
            try:
                await self._hand_over(round_)
            except Exception as exc:  # a round that could not be handed over fails its callers
                log.warning("append of %d records failed: %r", len(round_), exc)
                for ticket, _ in round_:
                    ticket.failed(exc if isinstance(exc, KafkaError) else KafkaError(repr(exc)))

    async def _hand_over(self, round_: list[tuple[_Ticket, Record]]) -> None:
        by_partition: dict[tuple[str, int], list[tuple[_Ticket, Record]]] = {}
        counts: dict[str, int] = {}  # read once a round: a topic may gain partitions
        for item in round_:
            topic, key, _ = item[1]
            count = counts.get(topic)
            if count is None:
                known = self._producer.client.cluster.partitions_for_topic(topic)
                count = counts[topic] = len(known or await self._producer.partitions_for(topic))
            # The partition the producer's own partitioner (CachedPartitioner) would choose.
            part = (
                partition_of(key, count) if key is not None else random.randrange(count)  # noqa: S311 - load spreading
            )
            by_partition.setdefault((topic, part), []).append(item)
        for (topic, part), items in by_partition.items():
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
