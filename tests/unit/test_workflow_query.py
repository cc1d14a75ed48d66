"""The workflow management API's selections (producers/api/workflow_query.py, the workflow DLQ
spec, and the failure callback a retry re-sends), without a broker (issue 14)."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qsl

import pytest

from kafstash.producers.api import filter_fields as ff
from kafstash.producers.api import workflow_query as wq
from kafstash.producers.api.dlq_query import parse_query, select
from kafstash.producers.api.errors import ApiError
from kafstash.producers.api.workflows import failure_callback_again
from kafstash.schemas.dlq import DlqEntry
from kafstash.schemas.message import CallbackOptions, FlowControl, Message
from kafstash.schemas.workflow import RunState
from kafstash.schemas.workflow_tag import WorkflowTag

URL = "http://127.0.0.1:9/wf/a"


def _pairs(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)


def _run(run_id: str, *, created_at: int = 1000, key: str | None = None) -> RunState:
    return RunState(
        user_id="u",
        run_id=run_id,
        url=URL,
        created_at=created_at,
        updated_at=created_at,
        labels=["L"],
        flow_control=FlowControl(key=key, parallelism=1) if key else None,
    )


def _refused(spec: ff.FieldSpec, query: str) -> str:
    with pytest.raises(ApiError) as err:
        wq.parse(spec, _pairs(query))
    assert err.value.status == 400
    return str(err.value)


# What @upstash/workflow 1.3.3's Client puts on the wire (buildBulkActionQueryParameters, logs).
@pytest.mark.parametrize(
    ("spec", "query"),
    [
        (ff.CANCEL_RUNS, "workflowRunIds=wfr_a&workflowRunIds=wfr_b"),
        (ff.CANCEL_RUNS, "count=100"),
        (ff.CANCEL_RUNS, "workflowUrl=http%3A%2F%2Fh%2Fwf&workflowUrlExactMatch=true&count=100"),
        (
            ff.CANCEL_RUNS,
            "label=L&fromDate=1&toDate=2&callerIp=1.2.3.4&flowControlKey=k&host=h&path=%2Fp"
            "&count=5",
        ),
        (ff.WORKFLOW_LOGS, "groupBy=workflowRunId&workflowRunId=wfr_a&count=2&cursor=10_wfr_b"),
        (
            ff.WORKFLOW_LOGS,
            "groupBy=workflowRunId&state=RUN_SUCCESS&workflowUrl=u&label=L&fromDate=1&toDate=2"
            "&messageId=m&host=h&path=%2Fp&workflowCreatedAt=5&callerIp=i&flowControlKey=k",
        ),
    ],
)
def test_every_query_the_workflow_sdk_sends_passes(spec: ff.FieldSpec, query: str) -> None:
    wq.parse(spec, _pairs(query))


@pytest.mark.parametrize(
    "query",
    [
        "dlqIds=d1&dlqIds=d2",
        "count=100",
        "count=10&cursor=5_d1",
        "label=L&fromDate=1&toDate=2&callerIp=i&flowControlKey=k&workflowUrl=u"
        "&workflowRunId=wfr_a&workflowCreatedAt=7&count=100",
    ],
)
def test_every_workflow_dlq_query_the_sdk_sends_passes(query: str) -> None:
    parse_query(_pairs(query), ff.WORKFLOW_DLQ)


@pytest.mark.parametrize(
    ("spec", "query", "field"),
    [
        (ff.CANCEL_RUNS, "labeel=x&count=100", "labeel"),
        (ff.CANCEL_RUNS, "cursor=1_a", "cursor"),  # a cancel does not page
        (ff.CANCEL_RUNS, "workflowRunId=wfr_a", "workflowRunId"),  # cancel takes the plural
        (ff.CANCEL_RUNS, "state=RUN_STARTED", "state"),
        (ff.WORKFLOW_LOGS, "stat=RUN_SUCCESS", "stat"),
    ],
)
def test_an_unknown_run_filter_is_named(spec: ff.FieldSpec, query: str, field: str) -> None:
    assert _refused(spec, query) == f"unknown filter field {field!r}"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("source=message", "source"),  # the workflow DLQ is workflow dead letters only
        ("url=u", "url"),
        ("host=h", "host"),  # the SDK: "the DLQ endpoint rejects these"
        ("order=latestFirst", "order"),
    ],
)
def test_the_workflow_dlq_refuses_what_it_does_not_declare(query: str, field: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_query(_pairs(query), ff.WORKFLOW_DLQ)
    assert str(err.value) == f"unknown filter field {field!r}"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("fromDate=yesterday", "invalid fromDate"),
        ("toDate=1.5", "invalid toDate"),
        ("workflowUrl=u&workflowUrlExactMatch=yes", "invalid workflowUrlExactMatch"),
        ("workflowUrl=u&workflowUrlExactMatch=1", "invalid workflowUrlExactMatch"),
        ("count=0", "invalid count"),
        ("count=1001", "invalid count"),
        ("label=", "empty filter field 'label'"),
    ],
)
def test_malformed_cancel_values_are_400_before_any_run_is_seen(query: str, message: str) -> None:
    """Validated at parse time: with no run to compare against, the answer is still 400."""
    assert message in _refused(ff.CANCEL_RUNS, query)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("state=DONE", "invalid state"),
        ("groupBy=label", "invalid groupBy"),
        ("cursor=abc", "invalid cursor"),
        ("workflowCreatedAt=today", "invalid workflowCreatedAt"),
    ],
)
def test_malformed_log_values_are_400(query: str, message: str) -> None:
    assert message in _refused(ff.WORKFLOW_LOGS, query)


def test_the_url_is_a_prefix_unless_exact_match_is_true() -> None:
    run = _run("wfr_a")
    prefix = wq.parse(ff.CANCEL_RUNS, _pairs("workflowUrl=http://127.0.0.1:9/wf"))
    exact = wq.parse(
        ff.CANCEL_RUNS, _pairs("workflowUrl=http://127.0.0.1:9/wf&workflowUrlExactMatch=true")
    )
    whole = wq.parse(ff.CANCEL_RUNS, _pairs(f"workflowUrl={URL}&workflowUrlExactMatch=true"))
    assert wq.matches(run, prefix)
    assert not wq.matches(run, exact)
    assert wq.matches(run, whole)


def test_flow_control_key_matches_the_runs_key() -> None:
    q = wq.parse(ff.CANCEL_RUNS, _pairs("flowControlKey=k1&flowControlKey=k2"))
    assert wq.matches(_run("a", key="k1"), q)
    assert wq.matches(_run("b", key="k2"), q)
    assert not wq.matches(_run("c", key="k3"), q)
    assert not wq.matches(_run("d"), q)  # no flow control: no key to match


def test_dates_bound_the_creation_time_inclusively() -> None:
    q = wq.parse(ff.WORKFLOW_LOGS, _pairs("fromDate=1000&toDate=2000"))
    assert [wq.matches(_run("a", created_at=t), q) for t in (999, 1000, 2000, 2001)] == [
        False,
        True,
        True,
        False,
    ]


# -- the workflow DLQ --------------------------------------------------------------------------


def _dead(i: int, *, failure_callback: str | None = URL + "/failure") -> DlqEntry:
    history = [{"messageId": "m0", "body": base64.b64encode(b'{"p":1}').decode()}]
    message = Message(
        message_id=f"msg_{i}",
        user_id="u",
        url=URL,
        created_at=100,
        not_before=100,
        body=json.dumps(history).encode(),
        failure_callback=failure_callback,
        failure_callback_options=CallbackOptions(
            header={"Upstash-Workflow-Is-Failure": ["true"]},
            workflow=WorkflowTag(run_id=f"wfr_{i}", call_type="failureCall"),
        ),
        workflow=WorkflowTag(run_id=f"wfr_{i}", url=URL, created_at=50 + i),
    )
    return DlqEntry(
        dlq_id=f"d{i}",
        message=message,
        failed_at=200 + i,
        retried=1,
        response_status=500,
        response_body=b'{"error":"Error","message":"boom"}',
    )


def test_workflow_created_at_selects_the_run_by_its_creation_time() -> None:
    entries = [_dead(1), _dead(2)]
    q = parse_query(_pairs("workflowCreatedAt=52"), ff.WORKFLOW_DLQ)
    assert [e.dlq_id for e in select(entries, q)[0]] == ["d2"]


def test_the_failure_callback_is_sent_again_as_a_new_message() -> None:
    entry = _dead(1)
    req = failure_callback_again(entry, now=999)
    m = req.message
    assert m.url == URL + "/failure"
    assert m.message_id != entry.message.message_id
    assert m.message_id != failure_callback_again(entry, now=999).message.message_id  # 1 per call
    assert req.dedup_key is None  # not taken for the first failure callback by dedup
    assert m.workflow == WorkflowTag(run_id="wfr_1", call_type="failureCall")
    assert m.header["Upstash-Workflow-Is-Failure"] == ["true"]
    body = json.loads(m.body)
    assert body["status"] == 500
    assert base64.b64decode(body["body"]) == b'{"error":"Error","message":"boom"}'
    assert base64.b64decode(body["sourceBody"]) == b'{"p":1}'  # the run's payload
    assert (body["workflowRunId"], body["workflowCreatedAt"], body["dlqId"]) == ("wfr_1", 51, "d1")
