"""The stream workers' intake: reads ``<p>.requests`` in batches with a plain aiokafka consumer.

A request that needs no table (``intake.route``) is accepted here: its records are produced for
the whole batch, their acknowledgements awaited once, then the batch's offsets committed once.
Every other request is forwarded unchanged, under its key, to ``<p>.table-requests``, which the
faust agent with the tables reads. faust's per-record path (fetch loop, conductor, stream,
sensors) cost most of the stream workers' CPU; the plain messages of a high-volume ingest never
needed it (docs/architecture.md, "The intake").

At-least-once, as in the faust agents: nothing is committed before the records it produced are
acknowledged, and a replay repeats records under the same message id. Batches are pipelined:
the next one is produced while the acknowledgements of the ones before are on their way (at most
``_IN_FLIGHT``), and offsets are committed in order, never past a batch still unacknowledged. A
revocation commits every batch in flight first, so a worker joining or leaving makes the group
re-read nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from kafstash.schemas import codec
from kafstash.schemas.defaults import MAX_TOPIC_MESSAGE_BYTES
from kafstash.schemas.partitioner import CachedPartitioner
from kafstash.schemas.topics import Topics
from kafstash.streams import metrics
from kafstash.streams.effects import Step
from kafstash.streams.intake import Forward, Unreadable, route
from kafstash.views.appender import BatchAppender, Record

log = logging.getLogger(__name__)

_BATCH = 2_000
_IN_FLIGHT = 4  # batches produced and not yet acknowledged; the next poll waits beyond this
_RETRY_S = 1.0
# How long a batch's records may wait for their acknowledgement before the batch is read again.
_APPEND_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class _Batch:
    acks: asyncio.Future[None]
    starts: dict[TopicPartition, int]  # first offset read, per partition
    ends: dict[TopicPartition, int]  # the offset to commit once acknowledged


@dataclass(frozen=True)
class IntakeConfig:
    bootstrap: str
    topics: Topics
    group_id: str
    # The group that read ``requests`` before the intake existed (the faust app's): where a
    # partition the intake never committed resumes, so an upgrade re-reads nothing.
    previous_group: str
    dedup_window_ms: int


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, intake: Intake) -> None:
        self._intake = intake

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._intake.give_up(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._intake.take(assigned)


class Intake:
    def __init__(self, cfg: IntakeConfig, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self._clock = clock
        t = cfg.topics
        self._topic_of = {
            "events": t.events,
            "deliveries": t.deliveries,
            "timers": t.timers,
            "messages": t.messages,
            "decisions": t.decisions,
            "requests": t.requests,
            "gates": t.gates,
            "state": t.state,
        }
        # Batches produced whose offsets are not committed yet, oldest first: the next batch is
        # produced while the last one's acknowledgements are on their way.
        self._in_flight: deque[_Batch] = deque()
        # Held while a batch is produced or batches are committed; a revocation takes it and
        # commits every batch in flight, so it never hands a partition on half done.
        self._lock = asyncio.Lock()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=cfg.bootstrap,
            group_id=cfg.group_id,
            client_id=f"{cfg.group_id}-consumer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=MAX_TOPIC_MESSAGE_BYTES + 64 * 1024,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
            fetch_max_wait_ms=20,
        )
        # The stream workers' producer settings (streams/app.py): 5 ms linger, 256 KiB batches.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=cfg.bootstrap,
            client_id=f"{cfg.group_id}-producer",
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=256 * 1024,
            max_request_size=MAX_TOPIC_MESSAGE_BYTES + 64 * 1024,
            partitioner=CachedPartitioner(),
        )
        # A batch's records leave as one batch per partition, acknowledged as one ticket.
        self._appender = BatchAppender(self._producer, timeout_s=_APPEND_TIMEOUT_S)

    async def run(self) -> None:
        """Until cancelled."""
        log.info("intake starting (group %s)", self.cfg.group_id)
        await self._producer.start()
        try:
            await self._appender.__aenter__()
            await self._start_where_the_stream_workers_were()
            self._consumer.subscribe([self.cfg.topics.requests], listener=_Rebalance(self))
            await self._consumer.start()
            try:
                while True:
                    await self._poll_once()
            finally:
                # A stop (not a crash) commits what was acknowledged: a restart repeats less.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(10):
                        await self._settle(wait="all")
                await self._consumer.stop()
        finally:
            await self._appender.__aexit__(None, None, None)
            await self._producer.stop()

    # -- the group ---------------------------------------------------------------------------

    def partitions(self) -> frozenset[TopicPartition]:
        """The partitions of ``requests`` this intake owns now."""
        return frozenset(self._consumer.assignment())

    async def give_up(self, revoked: list[TopicPartition]) -> None:
        # Waits for the batch in hand: its offsets are committed before the group moves on.
        async with self._lock:
            await self._settle(wait="all")
            log.info("intake: %d partitions of %s revoked", len(revoked), self.cfg.topics.requests)

    async def take(self, assigned: list[TopicPartition]) -> None:
        log.info("intake: %d partitions of %s assigned", len(assigned), self.cfg.topics.requests)

    async def _start_where_the_stream_workers_were(self) -> None:
        """Before the intake's group first commits: give it the previous group's offsets.

        Done before joining, so no record is fetched from the log's start meanwhile. Two workers
        upgraded at once may both try; the broker refuses the second commit once the first
        worker's group has members, and both commit the same offsets anyway.
        """
        while True:
            # Until the broker answers: starting from the log's start instead would deliver
            # every message of the retention window again.
            try:
                ours = await self._committed(self.cfg.group_id)
                if ours:
                    return
                previous = await self._committed(self.cfg.previous_group)
                break
            except KafkaError as exc:
                log.warning("intake: reading the groups' offsets failed (%r), retrying", exc)
                await asyncio.sleep(_RETRY_S)
        if not previous:
            return
        seeder = AIOKafkaConsumer(
            bootstrap_servers=self.cfg.bootstrap,
            group_id=self.cfg.group_id,
            enable_auto_commit=False,
        )
        await seeder.start()
        try:
            seeder.assign(list(previous))
            await seeder.commit(previous)
            log.info(
                "intake: starts where the stream workers were: %s",
                sorted((tp.partition, at) for tp, at in previous.items()),
            )
        except KafkaError as exc:
            log.warning("intake: could not take the stream workers' offsets over (%s)", exc)
        finally:
            await seeder.stop()

    async def _committed(self, group: str) -> dict[TopicPartition, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.cfg.bootstrap)
        await admin.start()
        try:
            found = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
        requests = self.cfg.topics.requests
        return {
            tp: om.offset for tp, om in found.items() if tp.topic == requests and om.offset >= 0
        }

    # -- batches ---------------------------------------------------------------------------

    async def _poll_once(self) -> None:
        # With batches in flight, take only what is already fetched, then commit what is done.
        wait_ms = 0 if self._in_flight else 200
        batch = await self._consumer.getmany(timeout_ms=wait_ms, max_records=_BATCH)
        async with self._lock:
            # Records of a partition revoked while this batch waited for the lock are the new
            # owner's: it reads them from the committed offset.
            owned = self._consumer.assignment()
            mine = {tp: recs for tp, recs in batch.items() if tp in owned and recs}
            if mine:
                self._in_flight.append(await self._produce(mine))
            # Nothing new to read, or enough in flight: wait for the oldest batch's acks.
            idle_or_full = not mine or len(self._in_flight) > _IN_FLIGHT
            await self._settle(wait="oldest" if idle_or_full else "none")

    async def _settle(self, *, wait: str) -> None:
        """Commit the batches acknowledged so far, oldest first: none past one still pending.

        ``wait``: "none" commits only what is done, "oldest" first waits for the oldest batch,
        "all" for every batch in flight (a revocation, a stop).
        """
        done: list[_Batch] = []
        try:
            while self._in_flight:
                head = self._in_flight[0]
                if not head.acks.done() and (wait == "none" or (wait == "oldest" and done)):
                    break
                await head.acks  # raises what the producer raised for one of its records
                done.append(self._in_flight.popleft())
        except KafkaError as exc:
            await self._rewind(exc)
        if done:
            offsets: dict[TopicPartition, int] = {}
            for b in done:
                offsets.update(b.ends)
            try:
                await self._consumer.commit(offsets)
            except KafkaError as exc:
                # The group moved on (a rebalance): the new owner repeats these batches.
                log.warning("intake: committing failed (%s)", exc)

    async def _rewind(self, exc: KafkaError) -> None:
        """A batch was not acknowledged: read it and every later one again, after a pause."""
        log.warning("intake: producing a batch failed (%s); reading it again", exc)
        await asyncio.gather(*(b.acks for b in self._in_flight), return_exceptions=True)
        starts: dict[TopicPartition, int] = {}
        for b in self._in_flight:
            for tp, at in b.starts.items():
                starts[tp] = min(at, starts.get(tp, at))
        self._in_flight.clear()
        owned = self._consumer.assignment()
        for tp, at in starts.items():
            if tp in owned:
                self._consumer.seek(tp, at)
        await asyncio.sleep(_RETRY_S)

    async def _produce(
        self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> _Batch:
        now_ms = int(self._clock() * 1000)
        window = self.cfg.dedup_window_ms
        out: list[Record] = []
        accepted = forwarded = unreadable = 0
        for records in batch.values():
            for rec in records:
                routed = route(rec.value or b"", now_ms=now_ms, window_ms=window)
                if isinstance(routed, Step):
                    accepted += 1
                    for emit in routed.emits:
                        value = None if emit.value is None else codec.encode(emit.value)
                        topic = self._topic_of[emit.topic]
                        out.append((topic, emit.key.encode(), value))
                elif isinstance(routed, Forward):
                    forwarded += 1
                    topic = self.cfg.topics.table_requests
                    out.append((topic, rec.key, rec.value))
                elif isinstance(routed, Unreadable):
                    unreadable += 1
                    log.warning("dropping unreadable publish request: %s", routed.reason)
        metrics.intake(accepted=accepted, forwarded=forwarded, unreadable=unreadable)
        return _Batch(
            # A task: batches hand their records to the appender in the order they were read.
            acks=asyncio.ensure_future(self._appender.append(out)),
            starts={tp: recs[0].offset for tp, recs in batch.items()},
            ends={tp: recs[-1].offset + 1 for tp, recs in batch.items()},
        )
