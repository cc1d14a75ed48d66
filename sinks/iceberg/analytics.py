"""SQL over the delivery log: DuckDB reading the pyiceberg scan, ready reports, and rendering.

The table is registered in DuckDB as ``delivery_log`` (pyiceberg plans the scan from the catalog's
current snapshot; DuckDB runs the SQL over the Arrow result). Session time zone is UTC, so days
are UTC days, like the table's ``day(event_time)`` partitions.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import duckdb
from pyiceberg.table import Table

VIEW = "delivery_log"
Format = Literal["table", "csv", "json"]

# Latency is per attempt: the sender appends DELIVERED or ERROR (with duration_ms) for each.
# A workflow run's own rows have state RUN_* (message_id = the run id): no message's.
REPORTS: dict[str, str] = {
    "success-rate": """
        SELECT url AS destination,
               count(*) FILTER (WHERE state IN ('DELIVERED', 'FAILED')) AS messages,
               count(*) FILTER (WHERE state = 'DELIVERED') AS delivered,
               count(*) FILTER (WHERE state = 'FAILED') AS failed,
               round(100.0 * count(*) FILTER (WHERE state = 'DELIVERED')
                     / nullif(count(*) FILTER (WHERE state IN ('DELIVERED', 'FAILED')), 0), 2)
                   AS success_pct,
               count(*) FILTER (WHERE state IN ('DELIVERED', 'ERROR')) AS attempts,
               quantile_cont(duration_ms, 0.50)
                   FILTER (WHERE state IN ('DELIVERED', 'ERROR')) AS p50_ms,
               quantile_cont(duration_ms, 0.95)
                   FILTER (WHERE state IN ('DELIVERED', 'ERROR')) AS p95_ms,
               quantile_cont(duration_ms, 0.99)
                   FILTER (WHERE state IN ('DELIVERED', 'ERROR')) AS p99_ms
        FROM delivery_log GROUP BY url ORDER BY messages DESC, destination
    """,
    "failures": """
        SELECT coalesce(CAST(http_status AS VARCHAR), 'no response') AS status,
               count(*) AS failed_attempts,
               count(DISTINCT message_id) AS messages,
               count(DISTINCT url) AS destinations,
               min(error) AS example_error
        FROM delivery_log WHERE state = 'ERROR'
        GROUP BY 1 ORDER BY failed_attempts DESC, status
    """,
    "retries": """
        SELECT retries, count(*) AS messages
        FROM (SELECT message_id, count(*) FILTER (WHERE state = 'RETRY') AS retries
              FROM delivery_log WHERE state NOT LIKE 'RUN%' GROUP BY message_id)
        GROUP BY retries ORDER BY retries
    """,
    "dlq": """
        SELECT CAST(CAST(event_time AS DATE) AS VARCHAR) AS day,
               count(*) AS failed_messages,
               count(DISTINCT url) AS destinations,
               count(DISTINCT user_id) AS users
        FROM delivery_log WHERE state = 'FAILED'
        GROUP BY 1 ORDER BY 1
    """,
}


@dataclass(frozen=True)
class Result:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def connect(table: Table) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    table.scan().to_duckdb(VIEW, connection=con)
    return con


def query(table: Table, sql: str) -> Result:
    con = connect(table)
    try:
        cur = con.execute(sql)
        columns = [d[0] for d in cur.description or []]
        return Result(columns, [tuple(r) for r in cur.fetchall()])
    finally:
        con.close()


def report(table: Table, name: str) -> Result:
    return query(table, REPORTS[name])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float | Decimal):
        return f"{value:.2f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.0f}"
    if isinstance(value, list | tuple):
        return ",".join(_cell(v) for v in value)
    return str(value)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def render(result: Result, fmt: Format = "table") -> str:
    if fmt == "json":
        records = [
            {c: _jsonable(v) for c, v in zip(result.columns, row, strict=True)}
            for row in result.rows
        ]
        return json.dumps(records, indent=2)
    cells = [[_cell(v) for v in row] for row in result.rows]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(cells)
        return out.getvalue().rstrip("\n")
    return _aligned(result.columns, cells, result.rows)


def _aligned(columns: list[str], cells: list[list[str]], raw: Sequence[tuple[Any, ...]]) -> str:
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    numeric = [
        bool(raw) and all(isinstance(r[i], int | float | Decimal) or r[i] is None for r in raw)
        for i in range(len(columns))
    ]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(columns), rule, *(line(r) for r in cells), f"({len(cells)} rows)"])
