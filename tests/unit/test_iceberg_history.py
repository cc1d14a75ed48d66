"""Older events answered from the delivery_log table (a real SQLite catalog in a temp dir)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kafstash.schemas.events import MessageEvent, State
from kafstash.schemas.history import HistoryQuery
from kafstash.schemas.message import Message
from kafstash.sinks.iceberg.history import IcebergHistory
from kafstash.sinks.iceberg.rows import to_arrow, to_row
from kafstash.sinks.iceberg.table import CatalogConfig, open_table

T0 = 1_764_000_000_000  # ms


def _event(
    i: int, state: State, *, user: str = "u1", mid: str | None = None, **message: object
) -> MessageEvent:
    m = None
    if state == "CREATED":
        m = Message(
            message_id=mid or f"msg_{i}",
            user_id=user,
            url=f"https://h/{i % 2}",
            created_at=T0 + i,
            not_before=T0 + i,
            **message,  # type: ignore[arg-type]
        )
    return MessageEvent(
        time=T0 + i * 1000,
        message_id=mid or f"msg_{i}",
        user_id=user,
        state=state,
        url=f"https://h/{i % 2}",
        response_status=500 if state == "ERROR" else None,
        message=m,
    )


@pytest.fixture
def history(tmp_path: Path) -> IcebergHistory:
    cfg = CatalogConfig.from_env({}, home=tmp_path, namespace="unit")
    table = open_table(cfg)
    events = [
        _event(0, "CREATED", queue_name="q", labels=["a", "b"]),
        _event(1, "CREATED", labels=["b"]),
        _event(2, "ERROR", mid="msg_0"),
        _event(3, "DELIVERED", mid="msg_1"),
        _event(4, "CREATED", user="u2"),
        _event(5, "FAILED", mid="msg_0"),
    ]
    rows = [to_row(e, topic="t", partition=0, offset=i) for i, e in enumerate(events)]
    table.append(to_arrow(rows))
    return IcebergHistory(cfg)


def _q(**kw: object) -> HistoryQuery:
    base: dict[str, object] = {"user_id": "u1", "before_ms": T0 + 10_000, "limit": 100}
    base.update(kw)
    return HistoryQuery(**base)  # type: ignore[arg-type]


def test_only_the_users_events_older_than_the_horizon_newest_first(
    history: IcebergHistory,
) -> None:
    got = history.query(_q(before_ms=T0 + 5000))
    assert [(e.message_id, e.state) for e in got] == [
        ("msg_1", "DELIVERED"),
        ("msg_0", "ERROR"),
        ("msg_1", "CREATED"),
        ("msg_0", "CREATED"),
    ]
    assert got[1].response_status == 500
    assert got[3].queue_name == "q"
    assert got[3].labels == ["a", "b"]


def test_filters_are_or_within_and_across(history: IcebergHistory) -> None:
    states = history.query(_q(states=["FAILED", "ERROR"], message_ids=["msg_0"]))
    assert [e.state for e in states] == ["FAILED", "ERROR"]
    assert history.query(_q(states=["FAILED"], message_ids=["msg_1"])) == []
    # Only CREATED rows name labels and queues; the answer holds every state of such a message.
    labelled = history.query(_q(labels=["a", "zzz"]))
    assert [(e.message_id, e.state) for e in labelled] == [
        ("msg_0", "FAILED"),
        ("msg_0", "ERROR"),
        ("msg_0", "CREATED"),
    ]
    queued = history.query(_q(queue_names=["q"], states=["FAILED"]))
    assert [(e.message_id, e.state) for e in queued] == [("msg_0", "FAILED")]
    assert history.query(_q(queue_names=["q"], labels=["b"], states=["DELIVERED"])) == []
    ranged = history.query(_q(from_ms=T0 + 1000, to_ms=T0 + 3000, order="earliestFirst"))
    assert [e.time - T0 for e in ranged] == [1000, 2000, 3000]


def test_cursor_pages_through_without_gaps_or_repeats(history: IcebergHistory) -> None:
    seen: list[str] = []
    after: tuple[int, str] | None = None
    while True:
        page = history.query(_q(limit=2, after=after))
        if not page:
            break
        seen.extend(e.event_id for e in page)
        after = (page[-1].time, page[-1].event_id)
    every = [e.event_id for e in history.query(_q())]
    assert seen == every
    assert len(every) == 5  # user u2's event is never shown to u1


def test_no_table_yet_means_no_history(tmp_path: Path) -> None:
    cfg = CatalogConfig.from_env({}, home=tmp_path, namespace="empty")
    assert IcebergHistory(cfg).query(_q()) == []
