"""The delivery log: the Iceberg table the archiver writes, one row per MessageEvent.

This module describes the table as plain data (no I/O library is imported here); the archiver
(``sinks/iceberg``) builds the pyiceberg Schema, the partition spec and the Arrow schema from it.

Evolution rule (checked by :func:`evolution_errors`, so a change that breaks it fails a test):

1. Only **add** columns, and only **optional** ones: rows written before the change have no value.
2. New columns go **at the end**, with a new field id higher than every existing one.
3. Never rename, retype, reorder, drop, or change ``required`` of an existing column, and never
   reuse a field id. Readers (DuckDB, Spark, Trino) resolve columns by field id, old files stay
   readable, and a rename would silently break every saved query.
4. The partition spec (``day(event_time)``) does not change; a new spec would be a new table.

Required columns are the ones every event has (identity, state, attempt, time, Kafka position);
everything a particular state may lack is optional. Headers are never written: they may carry
secrets (``Authorization`` forwarded to a destination). Redaction of the other fields happens
upstream, before the event is appended; the archiver keeps what the event carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnType = Literal["string", "int", "long", "timestamptz", "list<string>"]

TABLE_NAME = "delivery_log"
# Bytes of a destination's answer kept in ``response_body`` (decoded as UTF-8 with replacement).
RESPONSE_BODY_EXCERPT_BYTES = 1024
# Snapshot summary property that carries the Kafka offsets a snapshot covers, per source topic.
OFFSETS_PROPERTY_PREFIX = "kafstash.offsets."


@dataclass(frozen=True, slots=True)
class Column:
    field_id: int
    name: str
    type: ColumnType
    required: bool
    doc: str
    element_id: int | None = None  # the list element's field id, for list<...> columns


@dataclass(frozen=True, slots=True)
class PartitionField:
    source: str
    transform: Literal["day"]
    name: str
    field_id: int


COLUMNS: tuple[Column, ...] = (
    Column(1, "event_id", "string", True, "<topic>:<partition>:<offset>, unique per event"),
    Column(2, "message_id", "string", True, "QStash message id"),
    Column(3, "user_id", "string", True, "owner of the message"),
    Column(4, "state", "string", True, "CREATED, ACTIVE, DELIVERED, ERROR, RETRY, FAILED, …"),
    Column(5, "url", "string", True, "destination URL"),
    Column(6, "method", "string", False, "HTTP method (known on CREATED)"),
    Column(7, "http_status", "int", False, "destination's HTTP status"),
    Column(8, "attempt", "int", True, "0-based attempt number (Upstash-Retried)"),
    Column(9, "max_retries", "int", False, "retries allowed"),
    Column(10, "error", "string", False, "error text of ERROR/RETRY/FAILED"),
    Column(11, "duration_ms", "long", False, "attempt latency in milliseconds"),
    Column(12, "event_time", "timestamptz", True, "when the state changed"),
    Column(13, "created_at", "timestamptz", False, "when the message was published"),
    Column(14, "not_before", "timestamptz", False, "first delivery not before"),
    Column(15, "next_delivery_time", "timestamptz", False, "when a RETRY is due"),
    Column(16, "queue_name", "string", False, "queue, if enqueued"),
    Column(17, "schedule_id", "string", False, "schedule that produced the message"),
    Column(18, "topic_name", "string", False, "URL group"),
    Column(19, "labels", "list<string>", False, "message labels", element_id=24),
    Column(20, "dedup_id", "string", False, "deduplication id"),
    Column(21, "response_body", "string", False, "first 1 KiB of the answer, UTF-8"),
    Column(22, "kafka_partition", "int", True, "partition of the events topic"),
    Column(23, "kafka_offset", "long", True, "offset in that partition"),
    # Upstash Workflow (added 2026-12; 24 is the labels' element): a run's messages and its own
    # lifecycle rows (``run_status`` set, ``message_id`` = the run id).
    Column(25, "workflow_run_id", "string", False, "Upstash Workflow run of the message"),
    Column(26, "step_id", "int", False, "workflow step id the message carries (0: a plan)"),
    Column(27, "step_name", "string", False, "workflow step name the message carries"),
    Column(28, "step_type", "string", False, "workflow step type (Run, SleepFor, Call, …)"),
    Column(29, "run_status", "string", False, "RUN_STARTED, RUN_SUCCESS, RUN_FAILED, …"),
)

PARTITION_SPEC: tuple[PartitionField, ...] = (
    PartitionField(source="event_time", transform="day", name="event_day", field_id=1000),
)

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
REQUIRED_COLUMNS: frozenset[str] = frozenset(c.name for c in COLUMNS if c.required)


def offsets_property(topic: str) -> str:
    """The snapshot summary key holding ``{partition: next_offset}`` (JSON) for ``topic``."""
    return f"{OFFSETS_PROPERTY_PREFIX}{topic}"


def evolution_errors(old: tuple[Column, ...], new: tuple[Column, ...]) -> list[str]:
    """Why ``new`` is not an allowed evolution of ``old`` (empty when it is)."""
    errors: list[str] = []
    if len(new) < len(old):
        errors.append("columns may not be dropped")
    for before, after in zip(old, new, strict=False):
        if before != after:
            errors.append(f"column {before.name!r} changed (renamed, retyped or moved)")
    highest = max((c.field_id for c in old), default=0)
    highest = max([highest, *(c.element_id for c in old if c.element_id is not None)])
    for added in new[len(old) :]:
        if added.required:
            errors.append(f"new column {added.name!r} must be optional")
        if added.field_id <= highest:
            errors.append(f"new column {added.name!r} must take a new, higher field id")
        highest = max(highest, added.field_id, added.element_id or 0)
    return errors
