"""Workflow analytics in the delivery log, without a broker: the step a run's message carries,
run lifecycle events, their rows, and an older table gaining the new columns (real SQLite
catalog in a temporary folder)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from pyiceberg.schema import Schema
from pyiceberg.types import NestedField

from kafstash.producers.events_view import EventStore
from kafstash.schemas.commands import DeliveryDue, PublishRequest
from kafstash.schemas.delivery_log import COLUMNS, evolution_errors
from kafstash.schemas.events import MessageEvent
from kafstash.schemas.history import HistoryQuery
from kafstash.schemas.message import CallbackOptions, Message
from kafstash.schemas.workflow import EndRun, FailRun, ReviveRun, RunState
from kafstash.schemas.workflow_tag import CallType, WorkflowTag
from kafstash.sinks.http.outcome import DeadLetter, Delivered
from kafstash.sinks.http.report import after_attempt
from kafstash.sinks.iceberg.history import sql
from kafstash.sinks.iceberg.rows import ARROW_SCHEMA, to_arrow, to_row
from kafstash.sinks.iceberg.table import (
    CatalogConfig,
    _iceberg_type,
    evolve,
    load,
    missing_columns,
    open_table,
    partition_spec,
)
from kafstash.streams import workflow

URL = "http://127.0.0.1:9/wf"
NEW = ("workflow_run_id", "step_id", "step_name", "step_type", "run_status")


def _req(
    mid: str,
    body: bytes,
    *,
    init: bool = False,
    call_type: CallType = "step",
    header: dict[str, list[str]] | None = None,
    callback_options: CallbackOptions | None = None,
    redact: list[str] | None = None,
) -> PublishRequest:
    message = Message(
        message_id=mid,
        user_id="u",
        url=URL,
        created_at=0,
        not_before=0,
        body=body,
        header=header or {"Upstash-Workflow-Sdk-Version": ["1"]},
        callback_options=callback_options,
        redact=redact or [],
        workflow=WorkflowTag(run_id="wfr_1", init=init, call_type=call_type, url=URL),
    )
    return PublishRequest(request_id="r-" + mid, message=message, reply=init)


def _run_events(d: workflow.Decision) -> list[MessageEvent]:
    return [e.value for e in d.emits if isinstance(e.value, MessageEvent)]


def _started() -> RunState:
    d = workflow.on_message(_req("m0", b'{"x":1}', init=True), None, now_ms=1_000)
    assert d.run is not None
    return d.run


# -- the stream worker: steps and run events ---------------------------------------------------


def test_a_step_leaves_tagged_with_the_step_its_body_carries() -> None:
    body = b'{"stepId":2,"stepName":"charge","stepType":"Run","out":"1","concurrent":1}'
    d = workflow.on_message(_req("s2", body), _started(), now_ms=1_100)
    assert d.forward is not None
    tag = d.forward.message.workflow
    assert tag is not None
    assert (tag.run_id, tag.step_id, tag.step_name, tag.step_type) == ("wfr_1", 2, "charge", "Run")
    # Python's step JSON: unused fields as null.
    py = b'{"stepId":1,"stepName":"a","stepType":"SleepFor","sleepFor":2,"targetStep":null}'
    assert workflow.step_of(_req("s1", py).message) == (1, "a", "SleepFor")


def test_no_step_is_read_from_a_start_a_redacted_body_or_a_body_that_is_no_step() -> None:
    step = b'{"stepId":1,"stepName":"secret","stepType":"Run"}'
    assert workflow.step_of(_req("m0", step, init=True).message) == (None, None, None)
    assert workflow.step_of(_req("s1", step, redact=["body"]).message) == (None, None, None)
    assert workflow.step_of(_req("s1", b"not json").message) == (None, None, None)
    assert workflow.step_of(_req("s1", b'{"stepId":"x"}').message) == (None, None, None)
    assert workflow.step_of(_req("s1", b"[1]").message) == (None, None, None)


def test_a_calls_messages_name_their_step_from_the_forwarded_step_headers() -> None:
    step = {
        "Upstash-Workflow-Stepid": ["5"],
        "Upstash-Workflow-Stepname": ["c1"],
        "Upstash-Workflow-Steptype": ["Call"],
    }
    back = _req("b1", b'{"status":200}', call_type="fromCallback", header=step)
    assert workflow.step_of(back.message) == (5, "c1", "Call")
    out = _req("c1", b"{}", call_type="toCallback", callback_options=CallbackOptions(header=step))
    assert workflow.step_of(out.message) == (5, "c1", "Call")
    assert workflow.step_of(_req("c2", b"{}", call_type="toCallback").message) == (
        None,
        None,
        None,
    )


def test_a_runs_start_and_each_kind_of_end_is_a_run_event_with_its_duration() -> None:
    d = workflow.on_message(_req("m0", b'{"x":1}', init=True), None, now_ms=1_000)
    [start] = _run_events(d)
    assert (start.run_status, start.state, start.time) == ("RUN_STARTED", "ACTIVE", 1_000)
    assert (start.message_id, start.workflow_run_id, start.url) == ("wfr_1", "wfr_1", URL)
    assert start.duration_ms is None
    assert [e.key for e in d.emits if isinstance(e.value, MessageEvent)] == ["wf/u/wfr_1"]
    # A second start of the same run id is no new run.
    assert _run_events(workflow.on_message(_req("m9", b"{}", init=True), d.run, now_ms=1_001)) == []
    # Steps are no run events.
    assert _run_events(workflow.on_message(_req("s1", b"{}"), d.run, now_ms=1_002)) == []

    done = EndRun(user_id="u", run_id="wfr_1", cancel=False, at=3_500, response='"ok"')
    [success] = _run_events(workflow.on_end(done, _started(), now_ms=3_600))
    assert (success.run_status, success.state, success.time) == ("RUN_SUCCESS", "DELIVERED", 3_500)
    assert success.duration_ms == 2_500

    cancel = EndRun(user_id="u", run_id="wfr_1", cancel=True, at=1_700)
    [canceled] = _run_events(workflow.on_end(cancel, _started(), now_ms=1_700))
    assert (canceled.run_status, canceled.state, canceled.duration_ms) == (
        "RUN_CANCELED",
        "CANCELED",
        700,
    )

    fail = FailRun(user_id="u", run_id="wfr_1", message_id="s1", dlq_id="d1", at=9_000)
    failed_d = workflow.on_fail(fail, _started(), now_ms=9_000)
    [failed] = _run_events(failed_d)
    assert (failed.run_status, failed.state, failed.duration_ms) == ("RUN_FAILED", "FAILED", 8_000)
    # Ending an ended run again emits nothing.
    assert _run_events(workflow.on_fail(fail, failed_d.run, now_ms=9_001)) == []

    # A restart is a new start.
    assert failed_d.run is not None
    restart = ReviveRun(
        user_id="u",
        run_id="wfr_1",
        restart=True,
        failed_id="s1",
        message=_req("m1", b"{}", init=True).message,
        at=10_000,
    )
    [again] = _run_events(workflow.on_revive(restart, failed_d.run, now_ms=10_000))
    assert (again.run_status, again.time) == ("RUN_STARTED", 10_000)


# -- the sender: every event of a run's message names the run and step -------------------------


def test_the_senders_events_of_a_step_name_its_run_and_step() -> None:
    d = workflow.on_message(
        _req("s1", b'{"stepId":1,"stepName":"a","stepType":"Run"}'), _started(), now_ms=1_100
    )
    assert d.forward is not None
    due = DeliveryDue(message=d.forward.message, retried=0, due=1_100)
    for outcome in (Delivered(), DeadLetter(reason="HTTP 500")):
        records = after_attempt(
            due,
            outcome,
            status=200 if isinstance(outcome, Delivered) else 500,
            response_body=None,
            error=None,
            duration_ms=40,
            started_ms=1_200,
            now_ms=1_240,
        )
        events = [r[2] for r in records if r[0] == "events"]
        assert len(events) >= 2
        for e in events:
            assert isinstance(e, MessageEvent)
            assert (e.workflow_run_id, e.step_id, e.step_name, e.step_type) == (
                "wfr_1",
                1,
                "a",
                "Run",
            )
            assert e.run_status is None


# -- rows --------------------------------------------------------------------------------------


def test_rows_carry_run_and_step_and_a_run_events_row_says_what_happened_to_the_run() -> None:
    d = workflow.on_message(
        _req("s1", b'{"stepId":1,"stepName":"a","stepType":"Run"}'), _started(), now_ms=1_100
    )
    assert d.forward is not None
    created = MessageEvent(
        time=1_100,
        message_id="s1",
        user_id="u",
        state="CREATED",
        url=URL,
        message=d.forward.message,
    )
    row = to_row(created, topic="t", partition=0, offset=1)
    assert [row[c] for c in NEW] == ["wfr_1", 1, "a", "Run", None]

    done = EndRun(user_id="u", run_id="wfr_1", cancel=False, at=3_000)
    [end] = _run_events(workflow.on_end(done, _started(), now_ms=3_000))
    run_row = to_row(end, topic="t", partition=0, offset=2)
    assert (run_row["state"], run_row["message_id"], run_row["duration_ms"]) == (
        "RUN_SUCCESS",
        "wfr_1",
        2_000,
    )
    assert [run_row[c] for c in NEW] == ["wfr_1", None, None, None, "RUN_SUCCESS"]
    plain = MessageEvent(time=1, message_id="m", user_id="u", state="DELIVERED", url=URL)
    assert [to_row(plain, topic="t", partition=0, offset=3)[c] for c in NEW] == [None] * 5
    table = to_arrow([row, run_row])
    assert table.schema == ARROW_SCHEMA


def test_the_new_columns_are_an_allowed_evolution_of_the_first_table() -> None:
    first = tuple(c for c in COLUMNS if c.field_id <= 23)
    assert len(first) == 23
    assert evolution_errors(first, COLUMNS) == []
    assert [c.name for c in COLUMNS[len(first) :]] == list(NEW)


# -- readers of messages' events skip run rows -------------------------------------------------


def test_the_events_view_and_history_leave_run_events_out() -> None:
    store = EventStore()
    run = MessageEvent(
        time=1,
        message_id="wfr_1",
        user_id="u",
        state="DELIVERED",
        url=URL,
        run_status="RUN_SUCCESS",
    )
    store.add(run)
    assert len(store) == 0
    assert store.latest_state("wfr_1") is None
    store.add(MessageEvent(time=1, message_id="m", user_id="u", state="DELIVERED", url=URL))
    assert len(store) == 1
    q = HistoryQuery(user_id="u", before_ms=10, limit=5)
    assert "run_status IS NULL" in sql(q, run_rows=True)[0]
    assert "run_status" not in sql(q)[0]


# -- an older table gains the columns ----------------------------------------------------------


def test_an_older_table_gains_the_columns_and_its_rows_read_them_as_null(tmp_path: Path) -> None:
    cfg = CatalogConfig.from_env({}, home=tmp_path, namespace="old")
    catalog = load(cfg)
    catalog.create_namespace(cfg.namespace)
    first = [c for c in COLUMNS if c.field_id <= 23]
    old_schema = Schema(
        *(NestedField(c.field_id, c.name, _iceberg_type(c), required=c.required) for c in first),
        identifier_field_ids=[1],
    )
    old = catalog.create_table(
        cfg.identifier, schema=old_schema, partition_spec=partition_spec(old_schema)
    )
    plain = MessageEvent(time=1_000, message_id="m", user_id="u", state="DELIVERED", url=URL)
    old_row = {k: v for k, v in to_row(plain, topic="t", partition=0, offset=0).items()}
    old_arrow = pa.Table.from_pylist(
        [{c.name: old_row[c.name] for c in first}],
        schema=pa.schema([ARROW_SCHEMA.field(c.name) for c in first]),
    )
    old.append(old_arrow)
    assert missing_columns(old) == list(NEW)

    table = open_table(cfg)  # what the archiver does on start
    assert missing_columns(table) == []
    fields = {f.name: f for f in table.schema().fields}
    assert [fields[c].field_id for c in NEW] == [25, 26, 27, 28, 29]
    assert all(not fields[c].required for c in NEW)
    assert [f.name for f in table.schema().fields] == [c.name for c in COLUMNS]
    assert evolve(table) == [], "a second start changes nothing"

    done = EndRun(user_id="u", run_id="wfr_1", cancel=False, at=3_000)
    [end] = _run_events(workflow.on_end(done, _started(), now_ms=3_000))
    table.append(to_arrow([to_row(end, topic="t", partition=0, offset=1)]))
    got = {
        r["event_id"]: r for r in load(cfg).load_table(cfg.identifier).scan().to_arrow().to_pylist()
    }
    assert [got["t:0:0"][c] for c in NEW] == [None] * 5
    assert got["t:0:0"]["state"] == "DELIVERED"
    assert got["t:0:1"]["run_status"] == "RUN_SUCCESS"
    assert got["t:0:1"]["workflow_run_id"] == "wfr_1"
