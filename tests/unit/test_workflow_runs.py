"""The workflow table's decisions (streams/workflow.py), without a broker."""

from __future__ import annotations

import base64
import json

import msgspec

from kafstash.schemas.commands import Accepted, Cancel, PublishRequest
from kafstash.schemas.message import CallbackOptions, Message
from kafstash.schemas.workflow import EndRun, FailRun, Invoker, RunState
from kafstash.schemas.workflow_tag import CallType, WorkflowTag
from kafstash.streams import workflow

URL = "http://127.0.0.1:9/wf"


def req(
    mid: str,
    body: bytes,
    *,
    init: bool = False,
    call_type: CallType = "step",
    not_before: int = 0,
    failure_callback: str | None = None,
    header: dict[str, list[str]] | None = None,
) -> PublishRequest:
    message = Message(
        message_id=mid,
        user_id="u",
        url=URL,
        created_at=0,
        not_before=not_before,
        body=body,
        header=header or {"Upstash-Workflow-Sdk-Version": ["1"]},
        failure_callback=failure_callback,
        failure_callback_options=CallbackOptions() if failure_callback else None,
        workflow=WorkflowTag(run_id="wfr_1", init=init, call_type=call_type, url=URL),
    )
    return PublishRequest(request_id="r-" + mid, message=message, reply=init)


def history_of(d: workflow.Decision) -> list[dict[str, str]]:
    assert d.forward is not None
    parsed: list[dict[str, str]] = json.loads(d.forward.message.body)
    return parsed


def started() -> RunState:
    d = workflow.on_message(
        req("m0", b'{"x":1}', init=True, failure_callback=URL), None, now_ms=100
    )
    assert d.run is not None
    return d.run


def test_a_start_creates_the_run_and_delivers_the_payload_as_history_element_0() -> None:
    d = workflow.on_message(req("m0", b'{"x":1}', init=True), None, now_ms=100)
    assert d.run is not None
    assert d.run.state == "RUN_STARTED"
    assert d.run.created_at == 100
    assert history_of(d) == [
        {"messageId": "m0", "body": base64.b64encode(b'{"x":1}').decode(), "callType": "step"}
    ]
    assert d.forward is not None
    header = d.forward.message.header
    assert header["Upstash-Workflow-Runid"] == ["wfr_1"]
    assert header["Upstash-Workflow-Createdat"] == ["100"]
    assert d.emits[-1].topic == "state"


def test_a_second_start_of_the_run_id_is_deduplicated() -> None:
    d = workflow.on_message(req("m9", b"{}", init=True), started(), now_ms=200)
    assert d.forward is None
    assert d.run is None
    [reply] = d.emits
    assert reply.value == Accepted(request_id="r-m9", message_id="m0", deduplicated=True)


def test_each_delivery_carries_the_history_up_to_and_including_its_message() -> None:
    run = started()
    p1 = workflow.on_message(req("p1", b'{"stepId":0}'), run, now_ms=110)
    assert p1.run is not None
    p2 = workflow.on_message(req("p2", b'{"stepId":0}'), p1.run, now_ms=111)
    assert [e["messageId"] for e in history_of(p1)] == ["m0", "p1"]
    assert [e["messageId"] for e in history_of(p2)] == ["m0", "p1", "p2"]
    # A replay of p1 (a crash before the commit) carries exactly what it carried before.
    assert p2.run is not None
    again = workflow.on_message(req("p1", b'{"stepId":0}'), p2.run, now_ms=120)
    assert again.run is None
    assert history_of(again) == history_of(p1)


def test_steps_carry_the_runs_failure_callback() -> None:
    d = workflow.on_message(req("s1", b"{}"), started(), now_ms=120)
    assert d.forward is not None
    assert d.forward.message.failure_callback == URL


def test_a_callback_keeps_its_body_and_loses_the_sdk_version_header() -> None:
    call = workflow.on_message(req("c1", b'{"k":1}', call_type="toCallback"), started(), now_ms=1)
    assert call.forward is not None
    assert call.forward.message.body == b'{"k":1}'
    back = req("b1", b'{"status":200}', call_type="fromCallback")
    assert call.run is not None
    d = workflow.on_message(back, call.run, now_ms=2)
    assert d.forward is not None
    assert d.forward.message.body == b'{"status":200}'
    assert "Upstash-Workflow-Sdk-Version" not in d.forward.message.header
    assert d.forward.message.header["Upstash-Workflow-Runid"] == ["wfr_1"]
    assert d.run is not None
    assert [e.call_type for e in d.run.history] == ["step", "toCallback", "fromCallback"]


def test_ended_runs_take_no_steps_and_unknown_ones_get_plain_messages() -> None:
    unknown = workflow.on_message(req("s1", b"{}"), None, now_ms=1)
    assert unknown.run is None
    assert unknown.forward is not None
    assert unknown.forward.message.body == b"{}", "delivered as sent, no history"
    end = EndRun(user_id="u", run_id="wfr_1", cancel=False, at=5, response='"done"')
    done = workflow.on_end(end, started(), now_ms=5)
    assert done.run is not None
    assert done.run.state == "RUN_SUCCESS"
    assert done.run.response == '"done"'
    assert done.run.completed_at == 5
    assert workflow.on_message(req("s2", b"{}"), done.run, now_ms=6).forward is None


def test_a_cancel_withdraws_the_runs_sleeping_messages() -> None:
    slept = workflow.on_message(req("z1", b"{}", not_before=10_000), started(), now_ms=200)
    assert slept.run is not None
    assert slept.run.sleeping == {"z1": 10_000}
    end = EndRun(user_id="u", run_id="wfr_1", cancel=True, at=300)
    d = workflow.on_end(end, slept.run, now_ms=300)
    assert d.run is not None
    assert d.run.state == "RUN_CANCELED"
    cancels = [e.value for e in d.emits if e.topic == "timers"]
    assert cancels == [Cancel(message_id="z1", user_id="u", requested_at=300)]


def test_a_failed_message_fails_the_run_once() -> None:
    fail = FailRun(user_id="u", run_id="wfr_1", message_id="s1", dlq_id="d1", at=7)
    d = workflow.on_fail(fail, started(), now_ms=7)
    assert d.run is not None
    assert d.run.state == "RUN_FAILED"
    assert d.run.dlq_id == "d1"
    assert workflow.on_fail(fail, d.run, now_ms=8).run is None


def test_steps_take_the_runs_retries_unless_they_set_their_own() -> None:
    start = req("m0", b"{}", init=True)
    start = PublishRequest(
        request_id="r",
        message=msgspec.structs.replace(start.message, max_retries=0),
        reply=True,
    )
    d = workflow.on_message(start, None, now_ms=1)
    assert d.run is not None
    step = workflow.on_message(req("s1", b"{}"), d.run, now_ms=2)
    assert step.forward is not None
    assert step.forward.message.max_retries == 0
    call = workflow.on_message(req("c1", b"{}", call_type="toCallback"), d.run, now_ms=3)
    assert call.forward is not None
    assert call.forward.message.max_retries == 3, "a context.call keeps its own retries"


def test_an_invoked_run_sends_its_result_to_the_invoker_when_it_ends() -> None:
    template = Message(
        message_id="msg_t",
        user_id="u",
        url="http://127.0.0.1:9/parent",
        created_at=0,
        not_before=0,
        workflow=WorkflowTag(run_id="wfr_parent"),
    )
    invoker = Invoker(
        run_id="wfr_parent",
        url=template.url,
        created_at=0,
        step=b'{"stepId":3,"stepName":"call-child","stepType":"Invoke","concurrent":1}',
        template=template,
    )
    start = msgspec.structs.replace(req("m0", b"{}", init=True), invoker=invoker)
    run = workflow.on_message(start, None, now_ms=1).run
    assert run is not None
    end = EndRun(user_id="u", run_id="wfr_1", cancel=False, at=5, response='{"v":1}')
    d = workflow.on_end(end, run, now_ms=5)
    [result] = [e.value for e in d.emits if isinstance(e.value, PublishRequest)]
    assert result.message.workflow is not None
    assert result.message.workflow.run_id == "wfr_parent"
    step = json.loads(result.message.body)
    assert step["stepId"] == 3
    assert json.loads(step["out"]) == {"body": '{"v":1}', "isFailed": False, "isCanceled": False}


def test_a_step_that_ran_again_does_not_join_the_history_twice() -> None:
    # A step delivered twice (a replay, a sender killed mid-delivery) runs again and publishes
    # its result again under a new id: the history keeps the first result only.
    s1 = workflow.on_message(req("s1", b'{"stepId":1,"out":"1"}'), started(), now_ms=110)
    assert s1.run is not None
    again = workflow.on_message(req("s1b", b'{"stepId":1,"out":"2"}'), s1.run, now_ms=120)
    assert again == workflow.Decision(note="dropped: step (1, None) already recorded")
    s2 = workflow.on_message(req("s2", b'{"stepId":2,"out":"3"}'), s1.run, now_ms=130)
    assert [e["messageId"] for e in history_of(s2)] == ["m0", "s1", "s2"]
    # Plans of one parallel group differ by their target; a plan sent again is one plan.
    assert s2.run is not None
    p3 = workflow.on_message(req("p3", b'{"stepId":0,"targetStep":3}'), s2.run, now_ms=140)
    assert p3.run is not None
    p4 = workflow.on_message(req("p4", b'{"stepId":0,"targetStep":4}'), p3.run, now_ms=141)
    assert p4.run is not None
    p3b = workflow.on_message(req("p3b", b'{"stepId":0,"targetStep":3}'), p4.run, now_ms=142)
    assert p3b.forward is None
    assert p3b.run is None
    # A deduplicated publish waiting for its answer gets the first result's id.
    asked = msgspec.structs.replace(req("s1c", b'{"stepId":1}'), reply=True)
    [answer] = workflow.on_message(asked, p4.run, now_ms=150).emits
    assert answer.value == Accepted(request_id="r-s1c", message_id="s1", deduplicated=True)


def test_only_step_results_are_told_apart_by_their_step_id() -> None:
    assert workflow.step_id(b'{"stepId":2,"targetStep":null}') == (2, None)
    assert workflow.step_id(b'{"stepId":0,"targetStep":4}') == (0, 4)
    for body in (b'{"x":1}', b"not json", b"[1]", b'{"stepId":0}', b'{"stepId":"1"}', b""):
        assert workflow.step_id(body) is None, body
    # Callbacks are not step results, whatever their body says: both join the history.
    run = started()
    for mid in ("c1", "c2"):
        d = workflow.on_message(req(mid, b'{"stepId":1}', call_type="fromCallback"), run, now_ms=1)
        assert d.run is not None
        run = d.run
    assert [e.call_type for e in run.history] == ["step", "fromCallback", "fromCallback"]
