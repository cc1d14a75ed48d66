"""The delivery_log table: its described schema, event → row → Arrow, and the offsets checkpoint."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow as pa
import pytest

from kafstash.schemas.delivery_log import COLUMNS, REQUIRED_COLUMNS, Column, evolution_errors
from kafstash.schemas.events import MessageEvent
from kafstash.schemas.message import Message
from kafstash.sinks.iceberg.checkpoint import (
    CommitProperties,
    OffsetsMoved,
    latest_offsets,
    merge,
    read_offsets,
)
from kafstash.sinks.iceberg.rows import ARROW_SCHEMA, excerpt, to_arrow, to_row
from kafstash.sinks.iceberg.table import CatalogConfig, iceberg_schema, load, open_table, summaries

NOW_MS = 1_790_000_000_123


def _created() -> MessageEvent:
    m = Message(
        message_id="msg_1",
        user_id="u1",
        url="https://example.com/hook",
        created_at=NOW_MS - 5,
        not_before=NOW_MS + 1000,
        method="PUT",
        header={"Authorization": ["Bearer secret"]},
        labels=["a", "b"],
        dedup_id="d1",
        queue_name="q",
        topic_name="g",
        schedule_id="s",
    )
    return MessageEvent(
        time=NOW_MS, message_id="msg_1", user_id="u1", state="CREATED", url=m.url, message=m
    )


def _failed() -> MessageEvent:
    return MessageEvent(
        time=NOW_MS,
        message_id="msg_1",
        user_id="u1",
        state="FAILED",
        url="https://example.com/hook",
        retried=2,
        max_retries=2,
        response_status=500,
        response_body=b"\xff" + b"x" * 5000,
        error="HTTP 500",
        duration_ms=12,
    )


# -- rows ------------------------------------------------------------------------------------


def test_created_row_carries_the_message_details_but_no_headers() -> None:
    row = to_row(_created(), topic="p.events", partition=3, offset=42)
    assert row["event_id"] == "p.events:3:42"
    assert (row["kafka_partition"], row["kafka_offset"]) == (3, 42)
    assert row["method"] == "PUT"
    assert row["labels"] == ["a", "b"]
    assert row["event_time"] == NOW_MS * 1000  # µs
    assert row["created_at"] == (NOW_MS - 5) * 1000
    assert row["not_before"] == (NOW_MS + 1000) * 1000
    assert (row["queue_name"], row["topic_name"], row["schedule_id"]) == ("q", "g", "s")
    assert row["dedup_id"] == "d1"
    assert "secret" not in json.dumps(row)
    assert set(row) == {c.name for c in COLUMNS}


def test_failed_row_keeps_status_error_latency_and_a_1kib_text_excerpt() -> None:
    row = to_row(_failed(), topic="t", partition=0, offset=7)
    assert (row["state"], row["http_status"], row["attempt"], row["max_retries"]) == (
        "FAILED",
        500,
        2,
        2,
    )
    assert (row["error"], row["duration_ms"]) == ("HTTP 500", 12)
    assert row["response_body"].startswith("\ufffd")
    assert len(row["response_body"].encode()) <= 1024 + 2  # one replacement char is 3 bytes
    assert row["method"] is None
    assert excerpt(None) is None


def test_arrow_schema_is_non_nullable_exactly_where_the_table_requires() -> None:
    for column in COLUMNS:
        assert ARROW_SCHEMA.field(column.name).nullable is (not column.required), column.name
    assert ARROW_SCHEMA.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert {"event_id", "message_id", "state", "event_time", "kafka_offset"} <= REQUIRED_COLUMNS
    table = to_arrow([to_row(_created(), topic="t", partition=0, offset=0)])
    assert table.schema == ARROW_SCHEMA
    assert table.num_rows == 1


def test_a_missing_required_value_is_refused() -> None:
    row = to_row(_failed(), topic="t", partition=0, offset=0)
    row["message_id"] = None
    with pytest.raises(ValueError, match="message_id"):
        to_arrow([row])


def test_iceberg_schema_matches_the_description() -> None:
    schema = iceberg_schema()
    assert [f.name for f in schema.fields] == [c.name for c in COLUMNS]
    assert [f.field_id for f in schema.fields] == [c.field_id for c in COLUMNS]
    assert {f.name for f in schema.fields if f.required} == REQUIRED_COLUMNS


# -- evolution rule --------------------------------------------------------------------------


def test_evolution_allows_only_optional_columns_added_at_the_end() -> None:
    highest = max(c.field_id for c in COLUMNS)
    extra = Column(highest + 1, "region", "string", False, "new")
    assert evolution_errors(COLUMNS, (*COLUMNS, extra)) == []
    assert evolution_errors(COLUMNS, (*COLUMNS, dataclasses.replace(extra, required=True)))
    assert evolution_errors(COLUMNS, (*COLUMNS, dataclasses.replace(extra, field_id=highest)))
    assert evolution_errors(COLUMNS, (*COLUMNS, dataclasses.replace(extra, field_id=24)))
    renamed = (dataclasses.replace(COLUMNS[0], name="id"), *COLUMNS[1:])
    assert evolution_errors(COLUMNS, renamed)
    assert evolution_errors(COLUMNS, COLUMNS[:-1])
    retyped = (*COLUMNS[:-1], dataclasses.replace(COLUMNS[-1], type="int"))
    assert evolution_errors(COLUMNS, retyped)


# -- checkpoint ------------------------------------------------------------------------------


def test_merge_moves_only_our_partitions_from_where_we_started() -> None:
    previous = {0: 10, 1: 20}
    assert merge(previous, start={0: 10}, end={0: 15}) == {0: 15, 1: 20}
    assert merge(previous, start={2: None}, end={2: 3}) == {0: 10, 1: 20, 2: 3}
    with pytest.raises(OffsetsMoved) as info:
        merge(previous, start={1: 18}, end={1: 25})
    assert info.value.moved == {1: (18, 20)}


def test_latest_offsets_skips_snapshots_without_the_property() -> None:
    key = "kafstash.offsets.t"
    history = [{"other": "x"}, {key: '{"0":5,"1":7}'}, {key: '{"0":1}'}]
    assert latest_offsets(history, "t") == {0: 5, 1: 7}
    assert latest_offsets([], "t") == {}
    assert read_offsets(None, "t") is None


def test_a_retried_commit_re_merges_the_offsets_of_the_concurrent_winner(tmp_path: Path) -> None:
    """Two archivers, one stale: pyiceberg retries the loser, whose map must keep the winner's."""
    cfg = CatalogConfig.from_env({}, home=tmp_path, namespace="unit")
    first = open_table(cfg)
    second = load(cfg).load_table(cfg.identifier)  # loaded before `first` commits: stale
    row0 = to_row(_created(), topic="t", partition=0, offset=0)
    row1 = to_row(_failed(), topic="t", partition=1, offset=0)
    first.append(
        to_arrow([row0]),
        snapshot_properties=CommitProperties(  # type: ignore[arg-type]
            topic="t", history=lambda: summaries(first), start={0: None}, end={0: 1}
        ),
    )
    second.append(
        to_arrow([row1]),
        snapshot_properties=CommitProperties(  # type: ignore[arg-type]
            topic="t", history=lambda: summaries(second), start={1: None}, end={1: 1}
        ),
    )
    second.refresh()
    assert latest_offsets(summaries(second), "t") == {0: 1, 1: 1}
    assert sorted(second.scan().to_arrow().column("event_id").to_pylist()) == ["t:0:0", "t:1:0"]
    # A third writer that believes partition 0 starts at None is refused, and writes nothing.
    with pytest.raises(OffsetsMoved):
        CommitProperties(
            topic="t", history=lambda: summaries(second), start={0: None}, end={0: 1}
        ).build()
