"""A failed run's failure callback as event-sourced state (workflow-api.md §4, §5): the sender
tells the run's row what it sent and how it ended, the row keeps it, and the run's log and its
dead letter show it (``failureFunction``, ``failureCallbackInfo``, ``failureFunctionState``)."""

from __future__ import annotations

import msgspec
import pytest

from kafstash.producers.api import filter_fields
from kafstash.producers.api.dlq import dlq_json
from kafstash.producers.api.dlq_query import failure_function_of, parse_query, select
from kafstash.producers.api.errors import ApiError
from kafstash.producers.api.workflows import run_log
from kafstash.schemas import codec
from kafstash.schemas.commands import DeliveryDue, PublishRequest
from kafstash.schemas.dlq import DlqEntry
from kafstash.schemas.message import CallbackOptions, Message
from kafstash.schemas.workflow import (
    FailRun,
    FailureCallbackDone,
    FailureFunction,
    HistoryEntry,
    ReviveRun,
    RunState,
    run_key,
)
from kafstash.schemas.workflow_tag import CallType, WorkflowTag
from kafstash.sinks.http.outcome import DeadLetter, Delivered, Outcome, RetryAt
from kafstash.sinks.http.report import Record, after_attempt
from kafstash.streams import workflow

NOW = 1_700_000_000_000
URL = "http://127.0.0.1:9/wf"
FAILURE_URL = "http://127.0.0.1:9/failure"


def _message(mid: str, call_type: CallType, *, failure_callback: str | None = None) -> Message:
    failure_tag = WorkflowTag(run_id="wfr_1", call_type="failureCall", url=URL)
    options = CallbackOptions(workflow=failure_tag) if failure_callback else None
    return Message(
        message_id=mid,
        user_id="u",
        url=FAILURE_URL if call_type == "failureCall" else URL,
        created_at=NOW - 10,
        not_before=NOW - 10,
        body=b'[{"messageId":"m0","body":"e30=","callType":"step"}]',
        max_retries=0,
        failure_callback=failure_callback,
        failure_callback_options=options,
        workflow=WorkflowTag(run_id="wfr_1", call_type=call_type, url=URL, created_at=NOW - 20),
    )


def _after(message: Message, outcome: Outcome, *, status: int, body: bytes) -> list[Record]:
    return after_attempt(
        DeliveryDue(message=message, retried=0, due=NOW),
        outcome,
        status=status,
        response_body=body,
        error=None,
        duration_ms=1,
        started_ms=NOW - 1,
        now_ms=NOW,
        response_headers={"X-Why": ["boom"]},
    )


def _run_commands(records: list[Record]) -> list[object]:
    return [r for t, k, r in records if t == "requests" and k == run_key("u", "wfr_1")]


def _started() -> RunState:
    return RunState(user_id="u", run_id="wfr_1", url=URL, created_at=NOW - 20, updated_at=NOW - 20)


def _failed_with(failure: FailureFunction | None) -> RunState:
    fail = FailRun(
        user_id="u", run_id="wfr_1", message_id="s1", dlq_id="d1", at=NOW, failure_function=failure
    )
    d = workflow.on_run_end(fail, _started(), now_ms=NOW)
    assert d.run is not None
    return d.run


IN_FLIGHT = FailureFunction(
    message_id="msg_fc",
    url=FAILURE_URL,
    fail_status=500,
    fail_response='{"message":"boom"}',
    fail_headers={"X-Why": ["boom"]},
)


# ============================================================================== the sender's part


def test_a_failing_step_tells_its_run_which_failure_callback_it_sent() -> None:
    step = _message("s1", "step", failure_callback=FAILURE_URL)
    records = _after(step, DeadLetter(reason="exhausted"), status=500, body=b'{"message":"boom"}')

    fail, callback = _run_commands(records)  # in that order: the row knows it before it ends
    assert isinstance(fail, FailRun)
    assert isinstance(callback, PublishRequest)
    assert callback.message.workflow is not None
    assert callback.message.workflow.call_type == "failureCall"
    assert fail.failure_function == FailureFunction(
        message_id=callback.message.message_id,
        url=FAILURE_URL,
        state="CALLBACK_INPROGRESS",
        fail_status=500,
        fail_response='{"message":"boom"}',
        fail_headers={"X-Why": ["boom"]},
    )
    assert codec.decode_request(codec.encode(fail)) == fail


def test_a_failing_step_without_a_failure_callback_records_none() -> None:
    records = _after(_message("s1", "step"), DeadLetter(reason="x"), status=500, body=b"x")
    [fail] = _run_commands(records)
    assert isinstance(fail, FailRun)
    assert fail.failure_function is None


@pytest.mark.parametrize(
    ("outcome", "status", "state"),
    [
        (Delivered(), 200, "CALLBACK_SUCCESS"),
        (DeadLetter(reason="exhausted"), 500, "CALLBACK_FAIL"),
        (RetryAt(at_ms=NOW + 1000, reason="500"), 500, None),
    ],
)
def test_the_failure_callbacks_end_goes_to_its_run(
    outcome: Outcome, status: int, state: str | None
) -> None:
    records = _after(_message("msg_fc", "failureCall"), outcome, status=status, body=b"answer")
    done = [r for r in _run_commands(records) if isinstance(r, FailureCallbackDone)]
    if state is None:  # still in progress: the row is not touched
        assert done == []
        return
    assert done == [
        FailureCallbackDone(
            user_id="u",
            run_id="wfr_1",
            message_id="msg_fc",
            state=state,  # type: ignore[arg-type]
            at=NOW,
            response_status=status,
            response_body="answer",
            response_headers={"X-Why": ["boom"]},
        )
    ]
    assert codec.decode_request(codec.encode(done[0])) == done[0]


def test_other_messages_end_no_failure_callback() -> None:
    for call_type in ("step", "fromCallback", "toCallback"):
        records = _after(_message("s1", call_type), Delivered(), status=200, body=b"ok")
        assert not [r for r in _run_commands(records) if isinstance(r, FailureCallbackDone)]


# ================================================================================ the run's row


def _done(state: str, mid: str = "msg_fc") -> FailureCallbackDone:
    return FailureCallbackDone(
        user_id="u",
        run_id="wfr_1",
        message_id=mid,
        state=state,  # type: ignore[arg-type]
        at=NOW + 5,
        response_status=200 if state == "CALLBACK_SUCCESS" else 500,
        response_body="r",
    )


def test_a_failed_run_keeps_its_failure_callback_in_progress_until_it_ends() -> None:
    failed = _failed_with(IN_FLIGHT)
    assert failed.failure_function == IN_FLIGHT

    d = workflow.on_run_end(_done("CALLBACK_SUCCESS"), failed, now_ms=NOW + 6)
    assert d.run is not None
    assert d.run.failure_function == msgspec.structs.replace(
        IN_FLIGHT, state="CALLBACK_SUCCESS", response_status=200, response_body="r"
    )
    assert d.run.state == "RUN_FAILED"
    assert d.run.updated_at == NOW + 6
    assert [e.value for e in d.emits] == [d.run]  # the read model follows

    # dlq.retryFailureFunction sends it again under a new id; its end counts as well.
    again = workflow.on_run_end(_done("CALLBACK_FAIL", "msg_again"), d.run, now_ms=NOW + 7).run
    assert again is not None
    assert again.failure_function is not None
    assert (again.failure_function.state, again.failure_function.message_id) == (
        "CALLBACK_FAIL",
        "msg_again",
    )


def test_a_failure_callbacks_end_without_a_failed_run_changes_nothing() -> None:
    cases = [None, _started(), _failed_with(None)]
    for run in cases:
        d = workflow.on_run_end(_done("CALLBACK_SUCCESS"), run, now_ms=NOW)
        assert (d.run, d.emits) == (None, ())


def test_a_revived_run_drops_its_failure_callback() -> None:
    failed = msgspec.structs.replace(
        _failed_with(IN_FLIGHT),
        history=[HistoryEntry(message_id="s1", body="e30=", call_type="step")],
    )
    for restart in (False, True):
        again = _message("m_new", "step")
        cmd = ReviveRun(
            user_id="u", run_id="wfr_1", restart=restart, failed_id="s1", message=again, at=NOW
        )
        d = workflow.on_revive(cmd, failed, now_ms=NOW + 1)
        assert d.run is not None
        assert d.run.state == "RUN_STARTED"
        assert d.run.failure_function is None
        # The old callback's late end is no longer the run's.
        assert workflow.on_run_end(_done("CALLBACK_FAIL"), d.run, now_ms=NOW + 2).run is None


# ==================================================================================== the API


def _entry(dlq: str = "d1") -> DlqEntry:
    return DlqEntry(
        dlq_id=dlq,
        message=_message("s1", "step", failure_callback=FAILURE_URL),
        failed_at=NOW,
        retried=0,
        response_status=500,
    )


def test_the_run_log_shows_its_failure_function() -> None:
    assert "failureFunction" not in run_log(_failed_with(None))
    log = run_log(_failed_with(IN_FLIGHT))
    assert log["failureFunction"] == {
        "messageId": "msg_fc",
        "url": FAILURE_URL,
        "state": "CALLBACK_INPROGRESS",
        "failStatus": 500,
        "failResponse": '{"message":"boom"}',
        "failHeaders": {"X-Why": ["boom"]},
        "dlqId": "d1",
    }


def test_the_dead_letter_shows_how_its_runs_failure_callback_stands() -> None:
    run = workflow.on_run_end(_done("CALLBACK_FAIL"), _failed_with(IN_FLIGHT), now_ms=NOW).run
    failure = failure_function_of(_entry(), run)
    assert failure is not None
    assert dlq_json(_entry(), failure)["failureCallbackInfo"] == {
        "state": "CALLBACK_FAIL",
        "responseStatus": 500,
        "responseBody": "r",
    }
    assert "failureCallbackInfo" not in dlq_json(_entry())
    # Another dead letter of the run (an earlier failure, resumed since) is not this one's.
    assert failure_function_of(_entry("d0"), run) is None
    assert failure_function_of(_entry(), None) is None


@pytest.mark.parametrize("spec", [filter_fields.DLQ, filter_fields.WORKFLOW_DLQ])
def test_failure_function_state_filters_dead_letters(spec: filter_fields.FieldSpec) -> None:
    succeeded, failed, unknown = _entry("d1"), _entry("d2"), _entry("d3")
    states = {"d1": "CALLBACK_SUCCESS", "d2": "CALLBACK_FAIL"}

    def lookup(entry: DlqEntry) -> FailureFunction | None:
        state = states.get(entry.dlq_id)
        return None if state is None else msgspec.structs.replace(IN_FLIGHT, state=state)

    entries = [succeeded, failed, unknown]

    def chosen(query: list[tuple[str, str]]) -> list[str]:
        page, _ = select(entries, parse_query(query, spec), lookup)
        return [e.dlq_id for e in page]

    assert chosen([("failureFunctionState", "CALLBACK_FAIL")]) == ["d2"]
    assert chosen([("failureFunctionState", "CALLBACK_SUCCESS")]) == ["d1"]
    assert chosen(
        [("failureFunctionState", "CALLBACK_SUCCESS"), ("failureFunctionState", "CALLBACK_FAIL")]
    ) == ["d1", "d2"]
    assert chosen([("failureFunctionState", "CALLBACK_INPROGRESS")]) == []
    assert chosen([]) == ["d1", "d2", "d3"]
    with pytest.raises(ApiError) as err:
        parse_query([("failureFunctionState", "DONE")], spec)
    assert "invalid failureFunctionState" in str(err.value)
