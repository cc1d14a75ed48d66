"""When the archiver maintains its table, and what it does then: pure decisions, clocks passed in.

With ``KAFSTASH_ARCHIVE_MAINTAIN_EVERY`` set, the archiver runs ``maintain.py``'s compaction and
snapshot expiry itself, between two flushes, every that many seconds:

- **Compact** every day partition that has collected at least ``min_files`` data files, today
  included (the archiver is the one appending to today, and it does not append while it
  compacts, so the overwrite cannot conflict with itself).
- **Expire** snapshots older than ``expire_after_s`` (the current one is always kept).

Exactly-once is untouched: both steps keep the current snapshot's offsets map readable (the
compaction commit carries it forward; expiry never drops the current snapshot), and the
archiver's buffered batch starts where that map says, so its next append still merges.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

# Iceberg's own default for history.expire.max-snapshot-age-ms: five days of time travel.
DEFAULT_EXPIRE_AFTER_S = 5 * 24 * 3600.0
# A day is rewritten once it has this many files: one file per flush, so with the 60 s default
# and a 1 h schedule a day is rewritten hourly and holds at most ~60 files between rewrites.
DEFAULT_MIN_FILES = 8


@dataclass(frozen=True)
class MaintainSchedule:
    every_s: float  # seconds between runs; 0 turns scheduled maintenance off
    expire_after_s: float | None = DEFAULT_EXPIRE_AFTER_S  # None: never expire snapshots
    min_files: int = DEFAULT_MIN_FILES

    @property
    def enabled(self) -> bool:
        return self.every_s > 0


@dataclass(frozen=True)
class MaintainPlan:
    days: tuple[date, ...]  # partitions to rewrite, oldest first
    expire_before: datetime | None  # drop snapshots older than this

    @property
    def empty(self) -> bool:
        return not self.days and self.expire_before is None


def due(schedule: MaintainSchedule, *, last_run: float, now: float) -> bool:
    """Whether a run is due; ``last_run`` and ``now`` are monotonic seconds.

    ``last_run`` starts at the archiver's start, so a crash-looping archiver does not rewrite
    its table on every start.
    """
    return schedule.enabled and now - last_run >= schedule.every_s


def plan(
    schedule: MaintainSchedule, files_per_day: Mapping[date, int], *, now: datetime
) -> MaintainPlan:
    """What one run does, given the data files per day partition and the wall clock (UTC)."""
    days = tuple(sorted(d for d, n in files_per_day.items() if n >= max(2, schedule.min_files)))
    expire = schedule.expire_after_s
    before = None if expire is None else now - timedelta(seconds=expire)
    return MaintainPlan(days=days, expire_before=before)
