"""The archiver: appends every MessageEvent of ``<prefix>.events`` to the delivery_log table.

Exactly once, without Kafka transactions:

- **One atomic commit.** A batch's rows and the Kafka offsets they cover (``{partition:
  next_offset}`` in the snapshot summary, ``checkpoint.py``) land in one Iceberg commit: the
  catalog swaps the metadata pointer or it does not. There is no state in which the rows are in
  the table but the offsets are not, or the other way round.
- **Resume from the table, not from the group.** On every assignment the archiver seeks each
  partition to the position recorded in the current snapshot (the beginning if none). Consumer
  group offsets are committed after each append only so lag shows up in the usual tools; they
  are never read back.
- Hence after ``kill -9`` at any moment: rows of a committed snapshot are followed by exactly the
  next offset (no gap), and a batch that did not commit is read again from its start without a
  trace in the table (no duplicate; its data files are unreferenced orphans).
- **Several archivers** in the group own disjoint partitions. Each commit carries the full map:
  its partitions moved from where its batch began, merged over the parent snapshot's map. On a
  concurrent commit pyiceberg refreshes and retries, and the merge is redone against the new
  parent (``CommitProperties``). If the parent shows one of our partitions somewhere else (a
  previous owner committed after us), the commit is refused and we re-seek from the table.

Batches are flushed every ``interval_s`` (default 60 s) or at ``max_rows``, as one Arrow table
and one append. With a :class:`MaintainSchedule` the archiver also compacts and expires its table
between two flushes (``schedule.py``); in a group only the owner of partition 0 does, so the
members do not rewrite the same day against each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.table import Table

from kafstash.schemas import codec
from kafstash.schemas.events import MessageEvent
from kafstash.schemas.topics import Topics
from kafstash.sinks.iceberg import metrics
from kafstash.sinks.iceberg.checkpoint import CommitProperties, OffsetsMoved, latest_offsets
from kafstash.sinks.iceberg.maintain import files_per_day, run_plan
from kafstash.sinks.iceberg.rows import Row, to_arrow, to_row
from kafstash.sinks.iceberg.schedule import MaintainSchedule, due, plan
from kafstash.sinks.iceberg.table import CatalogConfig, open_table, summaries

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 60.0
DEFAULT_MAX_ROWS = 50_000
# How long the group waits for a silent member before it hands that member's partitions on: an
# archiver restarted after kill -9 resumes once its dead predecessor's session has expired.
DEFAULT_SESSION_TIMEOUT_S = 30.0
_MAX_HEARTBEAT_S = 3.0


@dataclass(frozen=True)
class ArchiverConfig:
    bootstrap: str
    topics: Topics
    group_id: str
    catalog: CatalogConfig
    interval_s: float = DEFAULT_INTERVAL_S
    max_rows: int = DEFAULT_MAX_ROWS
    session_timeout_s: float = DEFAULT_SESSION_TIMEOUT_S
    maintenance: MaintainSchedule = field(default_factory=lambda: MaintainSchedule(every_s=0))
    on_ready: Callable[[], None] | None = None  # called once the table is open, partitions held


@dataclass
class _Pending:
    """One owned partition: where its batch began (per the table) and what has been read."""

    start: int | None
    end: int | None = None
    rows: list[Row] = field(default_factory=list)

    @property
    def dirty(self) -> bool:
        return self.end is not None and self.end != self.start


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, archiver: Archiver) -> None:
        self._archiver = archiver

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._archiver.release(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._archiver.resume(assigned)


class Archiver:
    def __init__(
        self,
        cfg: ArchiverConfig,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.wall = wall  # snapshot ages are wall-clock times
        self.topic = cfg.topics.events
        self._pending: dict[int, _Pending] = {}
        self._last_flush = clock()
        self._last_maintain = clock()
        self._table: Table | None = None
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=cfg.bootstrap,
            group_id=cfg.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=5_000,
            session_timeout_ms=int(cfg.session_timeout_s * 1000),
            # A third of the session at most, so two heartbeats may be lost before it expires.
            heartbeat_interval_ms=int(min(_MAX_HEARTBEAT_S, cfg.session_timeout_s / 3) * 1000),
            max_poll_interval_ms=600_000,
        )

    @property
    def table(self) -> Table:
        assert self._table is not None, "run() opens the table"
        return self._table

    @property
    def buffered(self) -> int:
        return sum(len(p.rows) for p in self._pending.values())

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._table = await asyncio.to_thread(open_table, self.cfg.catalog)
        metrics.watch(lambda: self.buffered)
        if (snapshot := self._table.current_snapshot()) is not None:
            metrics.committed(snapshot.timestamp_ms / 1000)
        self._consumer.subscribe([self.topic], listener=_Rebalance(self))
        await self._consumer.start()
        log.info(
            "archiver ready (group %s, table %s, every %gs or %d rows)",
            self.cfg.group_id,
            ".".join(self.cfg.catalog.identifier),
            self.cfg.interval_s,
            self.cfg.max_rows,
        )
        if self.cfg.on_ready is not None:
            self.cfg.on_ready()
        try:
            while not stop.is_set():
                await self._poll_once()
                if self._due():
                    await self.flush()
                if due(self.cfg.maintenance, last_run=self._last_maintain, now=self.clock()):
                    await self.maintain()
        finally:
            with contextlib.suppress(Exception):
                await self.flush()
            await self._consumer.stop()

    def _due(self) -> bool:
        if self.buffered >= self.cfg.max_rows:
            return True
        due = self.clock() - self._last_flush >= self.cfg.interval_s
        if due and not any(p.dirty for p in self._pending.values()):
            self._last_flush = self.clock()  # nothing to write: start the next interval
            return False
        return due

    async def _poll_once(self) -> None:
        batch = await self._consumer.getmany(timeout_ms=500, max_records=5_000)
        for tp, records in batch.items():
            pending = self._pending.get(tp.partition)
            if pending is None:  # revoked while the fetch was in flight
                continue
            for rec in records:
                if pending.end is not None and rec.offset < pending.end:
                    continue  # already read (a re-delivered fetch after a seek)
                pending.end = rec.offset + 1
                try:
                    event = codec.decode(rec.value or b"", MessageEvent)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    log.warning("skipping unreadable event %s@%d: %s", tp, rec.offset, exc)
                    continue
                pending.rows.append(
                    to_row(event, topic=self.topic, partition=tp.partition, offset=rec.offset)
                )

    # -- assignment --------------------------------------------------------------------------

    async def resume(self, assigned: list[TopicPartition]) -> None:
        """Seek every assigned partition to where the table says it continues."""
        table = self.table
        await asyncio.to_thread(table.refresh)
        offsets = latest_offsets(summaries(table), self.topic)
        for tp in assigned:
            at = offsets.get(tp.partition)
            self._pending[tp.partition] = _Pending(start=at)
            if at is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, at)
        log.info(
            "archiver resumes %s",
            ", ".join(f"p{tp.partition}@{offsets.get(tp.partition, 0)}" for tp in assigned),
        )

    async def release(self, revoked: list[TopicPartition]) -> None:
        """Flush before giving partitions up; unflushed rows are the next owner's to read."""
        try:
            await self.flush()
        except Exception as exc:
            log.warning("flush on revoke failed; the next owner re-reads the batch: %r", exc)
        for tp in revoked:
            self._pending.pop(tp.partition, None)

    # -- maintenance -------------------------------------------------------------------------

    async def maintain(self) -> None:
        """One scheduled maintenance run; a failure is logged and retried at the next period."""
        self._last_maintain = self.clock()
        if 0 not in self._pending:  # partition 0's owner maintains for the whole group
            return
        await self.flush()  # rows read so far go into the table first (and into the rewrite)
        try:
            await asyncio.to_thread(self._maintain_sync)
        except (CommitFailedException, ValidationException) as exc:
            # Another writer committed into a day being rewritten: nothing was lost, try later.
            log.warning("maintenance skipped (concurrent commit): %r", exc)
        except Exception:
            log.exception("maintenance failed; retried in %gs", self.cfg.maintenance.every_s)
        self._last_maintain = self.clock()

    def _maintain_sync(self) -> None:
        table = self.table
        table.refresh()
        todo = plan(self.cfg.maintenance, files_per_day(table), now=self.wall())
        if not todo.empty:
            run_plan(table, todo)

    # -- commit ------------------------------------------------------------------------------

    async def flush(self) -> int:
        """Append what was read as one commit carrying the offsets; returns rows written."""
        parts = {p: s for p, s in self._pending.items() if s.dirty}
        self._last_flush = self.clock()
        rows = [row for s in parts.values() for row in s.rows]
        if not rows:  # only unreadable records so far: their offsets ride with the next rows
            return 0
        start = {p: s.start for p, s in parts.items()}
        end = {p: s.end for p, s in parts.items() if s.end is not None}
        began = time.monotonic()
        try:
            await asyncio.to_thread(self._append, rows, start, end)
        except OffsetsMoved as exc:
            log.warning("%s; re-reading from the table", exc)
            await self._reseek()
            return 0
        for s in parts.values():
            s.start, s.rows = s.end, []
        metrics.committed(time.time(), len(rows))
        log.info(
            "archived %d rows (%s) in %.0f ms",
            len(rows),
            ", ".join(f"p{p}→{o}" for p, o in sorted(end.items())),
            (time.monotonic() - began) * 1000,
        )
        try:  # a monitoring aid only: restarts read positions from the table
            await self._consumer.commit({TopicPartition(self.topic, p): o for p, o in end.items()})
        except Exception as exc:
            log.debug("group offset commit failed (harmless): %r", exc)
        return len(rows)

    def _append(self, rows: list[Row], start: dict[int, int | None], end: dict[int, int]) -> None:
        table = self.table
        table.refresh()
        props = CommitProperties(
            topic=self.topic, history=lambda: summaries(table), start=start, end=end
        )
        props.build()  # refuse before writing any file if the table already moved
        # pyiceberg unpacks the mapping on each (re)try: see CommitProperties.
        table.append(to_arrow(rows), snapshot_properties=props)  # type: ignore[arg-type]

    async def _reseek(self) -> None:
        assigned = [TopicPartition(self.topic, p) for p in self._pending]
        await self.resume(assigned)
