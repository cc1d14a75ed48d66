"""The archiver's Prometheus metrics: rows flushed into the delivery log, and how long ago the
last Iceberg commit was (the archive's freshness; alert when it passes a few intervals)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

REGISTRY = CollectorRegistry()

ROWS_FLUSHED = Counter(
    "kafstash_archiver_rows_flushed",
    "Delivery-log rows committed to the Iceberg table.",
    registry=REGISTRY,
)
COMMITS = Counter(
    "kafstash_archiver_commits",
    "Iceberg commits (appends) made by this archiver.",
    registry=REGISTRY,
)
LAST_COMMIT = Gauge(
    "kafstash_archiver_last_commit_timestamp_seconds",
    "Unix time of the table's latest commit this archiver knows of (NaN before any).",
    registry=REGISTRY,
)
SINCE_COMMIT = Gauge(
    "kafstash_archiver_seconds_since_last_commit",
    "Seconds since the table's latest commit this archiver knows of (NaN before any).",
    registry=REGISTRY,
)
BUFFERED = Gauge(
    "kafstash_archiver_buffered_rows",
    "Rows read from the events topic and not committed yet.",
    registry=REGISTRY,
)


class _Last:
    at_s = math.nan


LAST_COMMIT.set_function(lambda: _Last.at_s)


def committed(at_s: float, rows: int = 0) -> None:
    """A commit at Unix time ``at_s`` (``rows`` > 0 when this archiver made it)."""
    _Last.at_s = at_s
    if rows:
        ROWS_FLUSHED.inc(rows)
        COMMITS.inc()


def watch(buffered: Callable[[], int], clock: Callable[[], float] = time.time) -> None:
    BUFFERED.set_function(buffered)
    SINCE_COMMIT.set_function(lambda: clock() - _Last.at_s)
