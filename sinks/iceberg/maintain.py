"""Table maintenance: rewrite a day's small files into few, and expire old snapshots.

The archiver appends one snapshot (and at least one data file per day touched) per batch, so a
day at the 60 s default collects ~1,440 small files. pyiceberg 0.12 has no rewrite-data-files,
so compaction reads the day and writes it back with ``overwrite(df, overwrite_filter=day)``: one
atomic commit that deletes the day's files and adds the rewritten ones, rows unchanged.

The archiver's resume positions live in snapshot summaries. Every maintenance commit carries the
current offsets map forward into its own summary (re-read on pyiceberg's retries, as for
appends), so the archiver still resumes from the right place after compaction. An archiver that
appends into the same day concurrently makes the overwrite fail its serializable validation
(``ValidationException``) rather than lose rows: run it again (old days are quiet).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from pyiceberg.table import Table

from kafstash.sinks.iceberg.checkpoint import CommitProperties
from kafstash.sinks.iceberg.schedule import MaintainPlan
from kafstash.sinks.iceberg.table import summaries

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaintainReport:
    day: date | None
    rows: int
    files_before: int
    files_after: int
    snapshots_before: int
    snapshots_after: int

    def __str__(self) -> str:
        day = self.day.isoformat() if self.day else "-"
        return (
            f"day {day}: {self.rows} rows, data files {self.files_before} → {self.files_after}, "
            f"snapshots {self.snapshots_before} → {self.snapshots_after}"
        )


def day_filter(day: date) -> str:
    """The rows of one UTC day (exactly the day(event_time) partition), as a pyiceberg filter."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    return f"event_time >= '{start.isoformat()}' AND event_time < '{end.isoformat()}'"


def data_files(table: Table) -> int:
    return 0 if table.current_snapshot() is None else len(table.inspect.files())


def compact_day(table: Table, day: date, *, topics: list[str]) -> int:
    """Rewrite ``day``'s files as one overwrite that carries the archiver's offsets; rows kept."""
    table.refresh()
    predicate = day_filter(day)
    rows = table.scan(row_filter=predicate).to_arrow()
    if rows.num_rows == 0:
        return 0
    props = _Carry(table, topics)
    # pyiceberg unpacks the mapping on each (re)try, so the map carried is the parent's.
    table.overwrite(rows, overwrite_filter=predicate, snapshot_properties=props)  # type: ignore[arg-type]
    return int(rows.num_rows)


class _Carry(CommitProperties):
    """The current offsets map of every archived topic, carried forward unchanged."""

    def __init__(self, table: Table, topics: list[str]) -> None:
        super().__init__(topic="", history=lambda: summaries(table))
        self._topics = topics
        self._table = table

    def build(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for topic in self._topics:
            out.update(
                CommitProperties(topic=topic, history=lambda: summaries(self._table)).build()
            )
        self._built = out
        return out


def archived_topics(table: Table) -> list[str]:
    """Every topic an offsets map exists for, in the current snapshot's lineage."""
    prefix = "kafstash.offsets."
    found: set[str] = set()
    for summary in summaries(table):
        found.update(k[len(prefix) :] for k in summary if k.startswith(prefix))
    return sorted(found)


def expire_snapshots(table: Table, older_than: datetime) -> None:
    """Drop snapshots older than ``older_than`` (never the current one)."""
    table.maintenance.expire_snapshots().older_than(older_than).commit()


def expirable(table: Table, older_than: datetime) -> int:
    """How many snapshots expiry would drop: a scheduled run commits nothing when none."""
    current = table.current_snapshot()
    limit_ms = older_than.timestamp() * 1000
    return sum(
        1
        for s in table.metadata.snapshots
        if s.timestamp_ms < limit_ms and (current is None or s.snapshot_id != current.snapshot_id)
    )


def files_per_day(table: Table) -> dict[date, int]:
    """Live data files per day partition (``event_day``) of the current snapshot."""
    if table.current_snapshot() is None:
        return {}
    parts = table.inspect.partitions()
    days = parts.column("partition").to_pylist()
    counts = parts.column("file_count").to_pylist()
    return {p["event_day"]: int(n) for p, n in zip(days, counts, strict=True)}


def run_plan(table: Table, plan: MaintainPlan) -> list[MaintainReport]:
    """One scheduled run: compact the plan's days, then expire; one report per step taken."""
    reports = [
        maintain(table, day=day, expire_older_than=None, now=datetime.now(UTC)) for day in plan.days
    ]
    if plan.expire_before is not None:
        table.refresh()
        if expirable(table, plan.expire_before):
            before = len(table.metadata.snapshots)
            expire_snapshots(table, plan.expire_before)
            table.refresh()
            files = data_files(table)
            after = len(table.metadata.snapshots)
            reports.append(MaintainReport(None, 0, files, files, before, after))
            log.info("maintenance: %s", reports[-1])
    return reports


def maintain(
    table: Table, *, day: date | None, expire_older_than: timedelta | None, now: datetime
) -> MaintainReport:
    table.refresh()
    files_before = data_files(table)
    snapshots_before = len(table.metadata.snapshots)
    rows = 0
    if day is not None:
        rows = compact_day(table, day, topics=archived_topics(table))
    if expire_older_than is not None:
        table.refresh()
        expire_snapshots(table, now - expire_older_than)
    table.refresh()
    report = MaintainReport(
        day=day,
        rows=rows,
        files_before=files_before,
        files_after=data_files(table),
        snapshots_before=snapshots_before,
        snapshots_after=len(table.metadata.snapshots),
    )
    log.info("maintenance: %s", report)
    return report
