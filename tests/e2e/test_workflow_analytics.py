"""Workflow analytics in the Iceberg delivery log, end to end: runs of the official JS Workflow SDK
(@upstash/workflow, tests/wf_js/server.mjs) on a real broker, the archiver writing a SQLite-catalog
table that an older kafstash created (so it must gain the workflow columns first), and the three
queries of docs/iceberg.md's "Workflow runs" section run exactly as written through
``kafstash logs query``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import NestedField

from kafstash.schemas.delivery_log import COLUMNS
from kafstash.sinks.iceberg.table import (
    TABLE_PROPERTIES,
    CatalogConfig,
    _iceberg_type,
    load,
    missing_columns,
    partition_spec,
)
from tests.stack import Stack
from tests.workflow_sdk import Records, WorkflowClient, WorkflowServer, js_server

pytestmark = [pytest.mark.broker, pytest.mark.js]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "iceberg.md"
NEW_COLUMNS = ["workflow_run_id", "step_id", "step_name", "step_type", "run_status"]


def docs_queries() -> list[str]:
    """The SQL blocks of docs/iceberg.md's "Workflow runs" section, in order."""
    text = DOCS.read_text()
    section = text[text.index("\n## Workflow runs\n") :]
    following = section.find("\n## ", 1)
    section = section if following < 0 else section[:following]
    return re.findall(r"```sql\n(.*?)```", section, flags=re.DOTALL)


def cfg(stack: Stack) -> CatalogConfig:
    return CatalogConfig.from_env(stack.env, home=stack.home, namespace=stack.prefix)


def create_old_table(stack: Stack) -> None:
    """The delivery_log as kafstash made it before the workflow columns (ids 1 to 24)."""
    c = cfg(stack)
    catalog = load(c)
    catalog.create_namespace_if_not_exists(c.namespace)
    first = [col for col in COLUMNS if col.field_id <= 23]
    schema = Schema(
        *(NestedField(x.field_id, x.name, _iceberg_type(x), required=x.required) for x in first),
        identifier_field_ids=[1],
    )
    catalog.create_table(
        c.identifier,
        schema=schema,
        partition_spec=partition_spec(schema),
        properties=TABLE_PROPERTIES,
    )


def logs_query(stack: Stack, sql: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "kafstash", "logs", "query", sql, "--format=json"],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


def run_rows(stack: Stack) -> list[dict[str, Any]]:
    table = load(cfg(stack)).load_table(cfg(stack).identifier)
    if table.current_snapshot() is None or missing_columns(table):
        return []
    scan = table.scan(selected_fields=("workflow_run_id", "run_status", "state"))
    return [r for r in scan.to_arrow().to_pylist() if r["run_status"] is not None]


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    with Stack(kafka_bootstrap, tmp_path, env={"KAFSTASH_ARCHIVE_INTERVAL": "1"}) as s:
        create_old_table(s)
        s.start_role("archiver")
        yield s


@pytest.fixture
def records(tmp_path: Path) -> Records:
    (tmp_path / "wf").mkdir()
    return Records(tmp_path / "wf" / "records.jsonl")


@pytest.fixture
def server(stack: Stack, records: Records, tmp_path: Path) -> Iterator[WorkflowServer]:
    with js_server(stack, records.path, records.path.parent) as s:
        yield s


def test_runs_per_status_run_durations_and_slowest_steps_from_the_docs_queries(
    stack: Stack, server: WorkflowServer, records: Records
) -> None:
    client = WorkflowClient(stack.base_url, stack.token)
    sequential = client.trigger(url=server.url("/wf/sequential"), body={"start": 1})
    slow = client.trigger(url=server.url("/wf/slow"), body={})
    failed = client.trigger(url=server.url("/wf/nonretryable"), body={"tag": "analytics"})
    canceled = client.trigger(url=server.url("/wf/self-cancel"), body={})
    client.wait_state(sequential, "RUN_SUCCESS")
    client.wait_state(slow, "RUN_SUCCESS")
    client.wait_state(failed, "RUN_FAILED")
    client.wait_state(canceled, "RUN_CANCELED")

    # Until the archiver has written every run's start and end.
    ends = {sequential: "RUN_SUCCESS", slow: "RUN_SUCCESS", failed: "RUN_FAILED"}
    ends[canceled] = "RUN_CANCELED"
    deadline = time.monotonic() + 120
    while True:
        rows = run_rows(stack)
        got = {(r["workflow_run_id"], r["run_status"]) for r in rows}
        want = {*ends.items(), *((run, "RUN_STARTED") for run in ends)}
        if want <= got:
            break
        assert time.monotonic() < deadline, f"run rows {sorted(got)}:\n{stack.tail('archiver')}"
        time.sleep(1)
    assert all(r["state"] == r["run_status"] for r in rows)

    # The archiver added the columns to the older table it found.
    table = load(cfg(stack)).load_table(cfg(stack).identifier)
    assert [f.name for f in table.schema().fields][-5:] == NEW_COLUMNS
    assert [table.schema().find_field(n).field_id for n in NEW_COLUMNS] == [25, 26, 27, 28, 29]

    per_hour, durations, steps = docs_queries()

    # 1. Runs per status per hour.
    totals: dict[str, int] = {}
    for row in logs_query(stack, per_hour):
        assert row["hour"] is not None
        totals[row["run_status"]] = totals.get(row["run_status"], 0) + row["runs"]
    print("runs per status", totals)
    assert totals == {"RUN_STARTED": 4, "RUN_SUCCESS": 2, "RUN_FAILED": 1, "RUN_CANCELED": 1}

    # 2. Run durations: the slow run held its one step 1.5 s, so the p99 of successes is past it.
    by_status = {r["run_status"]: r for r in logs_query(stack, durations)}
    print("durations", by_status)
    assert {s: r["runs"] for s, r in by_status.items()} == {
        "RUN_SUCCESS": 2,
        "RUN_FAILED": 1,
        "RUN_CANCELED": 1,
    }
    assert by_status["RUN_SUCCESS"]["p99_ms"] >= 1500
    assert all(r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"] for r in by_status.values())

    # 3. The slowest steps: "hold" (1.5 s in its body) first; every step that ran is named.
    slowest = logs_query(stack, steps)
    print("slowest steps", slowest)
    assert slowest[0]["step_name"] == "hold"
    assert slowest[0]["step_type"] == "Run"
    assert 1500 <= slowest[0]["max_ms"] < 30_000
    names = {r["step_name"] for r in slowest}
    assert {"hold", "s1", "s2", "s3", "before"} <= names
    assert all(r["max_ms"] >= 0 for r in slowest)
    # "stop" threw (489): it published no result, so it is no finished step.
    assert "stop" not in names
    assert records.counts(slow) == {"hold": 1, "hold-end": 1}

    # Every event of a run's messages names the run: its start and three steps were delivered,
    # and the failed run's start failed (the 489), its run row aside.
    [seq] = logs_query(
        stack,
        "SELECT count(*) FILTER (WHERE state = 'DELIVERED') AS delivered,"
        " count(*) FILTER (WHERE state = 'ACTIVE') AS attempts"
        f" FROM delivery_log WHERE workflow_run_id = '{sequential}' AND run_status IS NULL",
    )
    assert seq["delivered"] >= 4
    assert seq["attempts"] >= seq["delivered"]
    [fail] = logs_query(
        stack,
        "SELECT count(*) AS failed_messages, max(http_status) AS status FROM delivery_log"
        f" WHERE workflow_run_id = '{failed}' AND state = 'FAILED'",
    )
    assert fail == {"failed_messages": 1, "status": 489}
    # The API's event log lists messages only: no run is one.
    events = httpx.get(
        f"{stack.base_url}/v2/events",
        params={"messageId": sequential},
        headers={"Authorization": f"Bearer {stack.token}"},
        timeout=30,
    )
    assert events.status_code == 200, events.text
    assert events.json()["events"] == []
