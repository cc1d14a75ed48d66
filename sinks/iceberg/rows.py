"""MessageEvent → delivery_log row → Arrow, with the table's exact (non-nullable) schema.

Pure: no Kafka, no catalog. pyiceberg rejects an Arrow field that is nullable where the Iceberg
column is required, and nanosecond timestamps, so the Arrow schema is built from the column
description in ``schemas/delivery_log.py`` rather than inferred from the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from kafstash.schemas.delivery_log import (
    COLUMNS,
    REQUIRED_COLUMNS,
    RESPONSE_BODY_EXCERPT_BYTES,
    Column,
)
from kafstash.schemas.events import MessageEvent

Row = dict[str, Any]

_MS_TO_US = 1000


def _arrow_type(column: Column) -> pa.DataType:
    match column.type:
        case "string":
            return pa.string()
        case "int":
            return pa.int32()
        case "long":
            return pa.int64()
        case "timestamptz":
            return pa.timestamp("us", tz="UTC")
        case "list<string>":
            return pa.list_(pa.field("element", pa.string(), nullable=False))


ARROW_SCHEMA: pa.Schema = pa.schema(
    [pa.field(c.name, _arrow_type(c), nullable=not c.required) for c in COLUMNS]
)


def event_id(topic: str, partition: int, offset: int) -> str:
    """The natural exactly-once key of an event: where it sits in Kafka."""
    return f"{topic}:{partition}:{offset}"


def _us(ms: int | None) -> int | None:
    return None if ms is None else ms * _MS_TO_US


def excerpt(body: bytes | None) -> str | None:
    """The first ``RESPONSE_BODY_EXCERPT_BYTES`` of an answer as text (invalid UTF-8 replaced)."""
    if body is None:
        return None
    return body[:RESPONSE_BODY_EXCERPT_BYTES].decode("utf-8", "replace")


def to_row(event: MessageEvent, *, topic: str, partition: int, offset: int) -> Row:
    """One delivery_log row. Message details (method, queue, labels, …) come with CREATED only.

    A workflow run's lifecycle event is a row with ``message_id`` = the run id and ``state`` =
    ``run_status``; a run's messages name the run and the step they carry.

    Headers are deliberately absent: they may carry the publisher's secrets.
    """
    m = event.message
    tag = m.workflow if m else None
    return {
        "event_id": event_id(topic, partition, offset),
        "message_id": event.message_id,
        "user_id": event.user_id,
        # A run's lifecycle row says what happened to the run (RUN_SUCCESS, …), so no query
        # about messages' states counts it.
        "state": event.run_status or event.state,
        "url": event.url,
        "method": m.method if m else None,
        "http_status": event.response_status,
        "attempt": event.retried,
        "max_retries": m.max_retries if m else event.max_retries,
        "error": event.error,
        "duration_ms": event.duration_ms,
        "event_time": _us(event.time),
        "created_at": _us(m.created_at) if m else None,
        "not_before": _us(m.not_before) if m and m.not_before else None,
        "next_delivery_time": _us(event.next_delivery_time),
        "queue_name": m.queue_name if m else None,
        "schedule_id": m.schedule_id if m else None,
        "topic_name": m.topic_name if m else None,
        "labels": list(m.labels) if m and m.labels else None,
        "dedup_id": m.dedup_id if m else None,
        "response_body": excerpt(event.response_body),
        "kafka_partition": partition,
        "kafka_offset": offset,
        # A run's message names its run and step on every event (CREATED: in its tag).
        "workflow_run_id": event.workflow_run_id or (tag.run_id if tag else None),
        "step_id": event.step_id if event.step_id is not None else (tag.step_id if tag else None),
        "step_name": event.step_name or (tag.step_name if tag else None),
        "step_type": event.step_type or (tag.step_type if tag else None),
        "run_status": event.run_status,
    }


def to_arrow(rows: Sequence[Row]) -> pa.Table:
    """Rows as one Arrow table with ``ARROW_SCHEMA``; ValueError if a required value is missing.

    Arrow does not check nullability when building from Python objects, so it is checked here,
    before a file with nulls in a required column could reach the table.
    """
    table = pa.Table.from_pylist(list(rows), schema=ARROW_SCHEMA)
    for name in REQUIRED_COLUMNS:
        if table.column(name).null_count:
            raise ValueError(f"delivery_log: required column {name!r} has a null")
    return table
