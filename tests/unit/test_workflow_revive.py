"""``dlq.resume`` / ``dlq.restart`` (workflow-api.md §4): with the optional ``Upstash-Retries``
and ``Upstash-Flow-Control-Key/Value`` headers the revived run takes them, for the message that
goes on and for every later step (the JS SDK names none on its steps)."""

from __future__ import annotations

import base64
import json

import msgspec
import pytest

from kafstash.producers.api.errors import ApiError
from kafstash.producers.api.publish import HeaderView
from kafstash.producers.api.workflows import ReviveOptions, _revived, revive_options
from kafstash.schemas.commands import PublishRequest
from kafstash.schemas.dlq import DlqEntry
from kafstash.schemas.message import FlowControl, Message
from kafstash.schemas.workflow import FailRun, HistoryEntry, RunState
from kafstash.schemas.workflow_tag import WorkflowTag
from kafstash.streams import workflow

NOW = 1_700_000_000_000
URL = "http://127.0.0.1:9/wf"
OLD_FLOW = FlowControl(key="old", parallelism=5)
NEW_FLOW = FlowControl(key="new", parallelism=1, rate=2, period=10)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


HISTORY = [
    HistoryEntry(message_id="m0", body=_b64(b'{"x":1}'), call_type="step"),
    HistoryEntry(message_id="s1", body=_b64(b'{"stepId":1,"out":"1"}'), call_type="step"),
]


def _failed_run() -> tuple[RunState, DlqEntry]:
    """A run that failed at its message ``s1`` with 0 retries and flow control ``old``."""
    run = RunState(
        user_id="u",
        run_id="wfr_1",
        url=URL,
        created_at=NOW - 100,
        updated_at=NOW - 100,
        history=HISTORY,
        max_retries=0,
        flow_control=OLD_FLOW,
    )
    fail = FailRun(user_id="u", run_id="wfr_1", message_id="s1", dlq_id="d1", at=NOW - 50)
    failed = workflow.on_fail(fail, run, now_ms=NOW - 50).run
    assert failed is not None
    delivered = Message(
        message_id="s1",
        user_id="u",
        url=URL,
        created_at=NOW - 60,
        not_before=NOW - 60,
        body=json.dumps([msgspec.to_builtins(e) for e in HISTORY]).encode(),
        max_retries=0,
        flow_control=OLD_FLOW,
        workflow=WorkflowTag(run_id="wfr_1", url=URL, created_at=NOW - 100),
    )
    return failed, DlqEntry(dlq_id="d1", message=delivered, failed_at=NOW - 50, retried=0)


def _view(**headers: str) -> HeaderView:
    return HeaderView([(k.replace("_", "-"), v) for k, v in headers.items()])


def test_the_headers_are_read_and_checked() -> None:
    assert revive_options(_view()) == ReviveOptions()
    got = revive_options(
        _view(
            upstash_retries=" 2 ",
            upstash_flow_control_key="new",
            upstash_flow_control_value="parallelism=1, rate=2, period=10s",
        )
    )
    assert got == ReviveOptions(max_retries=2, flow_control=NEW_FLOW)
    assert revive_options(_view(upstash_retries="0")).max_retries == 0
    for bad in ("-1", "x", "21", "1.5", ""):
        with pytest.raises(ApiError, match="invalid Upstash-Retries"):
            revive_options(_view(upstash_retries=bad))
    with pytest.raises(ApiError, match="Flow-Control-Value is required"):
        revive_options(_view(upstash_flow_control_key="k"))


@pytest.mark.parametrize("restart", [False, True])
def test_the_revived_run_takes_the_calls_retries_and_flow_control(restart: bool) -> None:
    run, entry = _failed_run()
    options = ReviveOptions(max_retries=2, flow_control=NEW_FLOW)
    cmd = _revived(entry, restart=restart, now=NOW, options=options)

    d = workflow.on_revive(cmd, run, now_ms=NOW)
    assert d.run is not None
    assert d.run.state == "RUN_STARTED"
    assert (d.run.max_retries, d.run.flow_control) == (2, NEW_FLOW)
    assert d.forward is not None
    again = d.forward.message
    assert (again.max_retries, again.flow_control) == (2, NEW_FLOW)
    if restart:
        assert again.workflow is not None
        assert again.workflow.init
        [start] = json.loads(again.body)  # a fresh history: the payload alone
        assert start["body"] == _b64(b'{"x":1}')

    # A later step of the run names no retries or flow control (JS): it takes the new ones.
    step = Message(
        message_id="s9",
        user_id="u",
        url=URL,
        created_at=NOW,
        not_before=NOW,
        body=b'{"stepId":9,"out":"9"}',
        workflow=WorkflowTag(run_id="wfr_1", url=URL),
    )
    later = workflow.on_message(PublishRequest(request_id="r9", message=step), d.run, now_ms=NOW)
    assert later.forward is not None
    assert (later.forward.message.max_retries, later.forward.message.flow_control) == (2, NEW_FLOW)


@pytest.mark.parametrize("restart", [False, True])
def test_without_the_headers_the_run_keeps_its_own(restart: bool) -> None:
    run, entry = _failed_run()
    d = workflow.on_revive(_revived(entry, restart=restart, now=NOW), run, now_ms=NOW)
    assert d.run is not None
    assert (d.run.max_retries, d.run.flow_control) == (0, OLD_FLOW)
    assert d.forward is not None
    assert (d.forward.message.max_retries, d.forward.message.flow_control) == (0, OLD_FLOW)


def test_only_retries_given_keeps_the_runs_flow_control() -> None:
    run, entry = _failed_run()
    cmd = _revived(entry, restart=False, now=NOW, options=ReviveOptions(max_retries=5))
    d = workflow.on_revive(cmd, run, now_ms=NOW)
    assert d.run is not None
    assert (d.run.max_retries, d.run.flow_control) == (5, OLD_FLOW)
