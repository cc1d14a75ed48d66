"""Answers HistoryQuery from the delivery_log table: the API's events older than its hot view.

pyiceberg prunes files with the row filter (user, time range, ids), DuckDB applies the rest and
the order over the Arrow result. Opened lazily and refreshed per query, so an API started before
the archiver's first commit finds the table once it exists.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any, cast

import duckdb
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import (
    And,
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    In,
    LessThan,
    LessThanOrEqual,
)
from pyiceberg.table import Table

from kafstash.schemas.history import HistoricalEvent, HistoryQuery
from kafstash.sinks.iceberg.table import CatalogConfig, load

_COLUMNS = (
    "event_time, event_id, message_id, state, url, attempt, method, max_retries, http_status,"
    " response_body, error, next_delivery_time, topic_name, queue_name, schedule_id, labels"
)


_CREATED = ("message_id", "labels")


def _us(ms: int) -> int:
    return ms * 1000


def _ms(value: datetime | None) -> int | None:
    if value is None:
        return None
    return int(value.timestamp() * 1000)


def _pred(kind: type[BooleanExpression], column: str, value: object) -> BooleanExpression:
    # pyiceberg's predicates are pydantic models whose generated signatures mypy misreads.
    return cast(BooleanExpression, cast(Any, kind)(column, value))


def row_filter(q: HistoryQuery) -> BooleanExpression:
    """What pyiceberg can prune on (the rest is applied in SQL)."""
    expr: BooleanExpression = And(
        _pred(EqualTo, "user_id", q.user_id), _pred(LessThan, "event_time", _us(q.before_ms))
    )
    if q.from_ms is not None:
        expr = And(expr, _pred(GreaterThanOrEqual, "event_time", _us(q.from_ms)))
    if q.to_ms is not None:
        expr = And(expr, _pred(LessThanOrEqual, "event_time", _us(q.to_ms)))
    for column, values in (
        ("message_id", q.message_ids),
        ("state", q.states),
        ("url", q.urls),
    ):
        if values:
            expr = And(expr, _pred(In, column, set(values)))
    return expr


def has_details(q: HistoryQuery) -> bool:
    """Filters on what only a message's CREATED row carries (group, queue, schedule, labels)."""
    return bool(q.topic_names or q.schedule_ids or q.queue_names or q.labels)


def created_filter(q: HistoryQuery) -> BooleanExpression:
    """The CREATED rows whose message matches the detail filters: every state of such a message
    belongs to the answer, though only its CREATED row names its queue, group or schedule."""
    expr: BooleanExpression = And(
        And(_pred(EqualTo, "user_id", q.user_id), _pred(EqualTo, "state", "CREATED")),
        _pred(LessThan, "event_time", _us(q.before_ms)),
    )
    for column, values in (
        ("topic_name", q.topic_names),
        ("schedule_id", q.schedule_ids),
        ("queue_name", q.queue_names),
    ):
        if values:
            expr = And(expr, _pred(In, column, set(values)))
    return expr


def sql(q: HistoryQuery, *, run_rows: bool = False) -> tuple[str, list[Any]]:
    """``run_rows``: the table has workflow run rows (a ``run_status`` column), which are no
    message's events and are left out."""
    where: list[str] = ["run_status IS NULL"] if run_rows else []
    params: list[Any] = []
    if has_details(q):
        # ``created`` holds the CREATED rows of created_filter(q); labels are checked here.
        matching = "SELECT message_id FROM created"
        if q.labels:
            matching += " WHERE list_has_any(coalesce(labels, []::VARCHAR[]), ?::VARCHAR[])"
            params.append(list(q.labels))
        where.append(f"message_id IN ({matching})")
    desc = q.order == "latestFirst"
    if q.after is not None:
        after_time = datetime.fromtimestamp(q.after[0] / 1000, tz=UTC)
        op = "<" if desc else ">"
        where.append(f"(event_time, event_id) {op} (?, ?)")
        params.extend([after_time, q.after[1]])
    direction = "DESC" if desc else "ASC"
    # Only constant fragments are formatted in; every value travels as a parameter.
    text = f"SELECT {_COLUMNS} FROM page"  # noqa: S608
    if where:
        text += " WHERE " + " AND ".join(where)
    text += f" ORDER BY event_time {direction}, event_id {direction} LIMIT {int(q.limit)}"
    return text, params


class IcebergHistory:
    """The EventHistory the API uses when the archiver's table is configured."""

    def __init__(self, cfg: CatalogConfig) -> None:
        self._cfg = cfg
        self._table: Table | None = None
        self._lock = threading.Lock()

    def _open(self) -> Table | None:
        if self._table is None:
            try:
                self._table = load(self._cfg).load_table(self._cfg.identifier)
            except NoSuchTableError:
                return None  # nothing archived yet
        else:
            self._table = self._table.refresh()
        return self._table

    def query(self, q: HistoryQuery) -> list[HistoricalEvent]:
        if q.limit <= 0:
            return []
        with self._lock:  # pyiceberg's Table and one DuckDB connection are not shared safely
            table = self._open()
            if table is None:
                return []
            page = table.scan(row_filter=row_filter(q)).to_arrow()
            text, params = sql(q, run_rows="run_status" in page.column_names)
            with duckdb.connect() as con:
                con.execute("SET TimeZone = 'UTC'")
                con.register("page", page)
                if has_details(q):
                    created = table.scan(row_filter=created_filter(q), selected_fields=_CREATED)
                    con.register("created", created.to_arrow())
                rows = con.execute(text, params).fetchall()
        return [_event(r) for r in rows]


def _event(r: tuple[Any, ...]) -> HistoricalEvent:
    (
        event_time,
        event_id,
        message_id,
        state,
        url,
        attempt,
        method,
        max_retries,
        http_status,
        response_body,
        error,
        next_delivery_time,
        topic_name,
        queue_name,
        schedule_id,
        labels,
    ) = r
    time_ms = _ms(event_time)
    assert time_ms is not None  # event_time is a required column
    return HistoricalEvent(
        time=time_ms,
        event_id=event_id,
        message_id=message_id,
        state=state,
        url=url,
        retried=attempt,
        method=method,
        max_retries=max_retries,
        response_status=http_status,
        response_body=response_body,
        error=error,
        next_delivery_time=_ms(next_delivery_time),
        topic_name=topic_name,
        queue_name=queue_name,
        schedule_id=schedule_id,
        labels=list(labels or []),
    )
