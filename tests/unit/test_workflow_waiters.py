"""The waiters table's decisions (streams/waiters.py), without a broker."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import msgspec
import pytest

from kafstash.schemas.commands import PublishRequest
from kafstash.schemas.message import Message
from kafstash.schemas.waiters import (
    DropWaiters,
    Notified,
    NotifyEvent,
    Waiter,
    WaiterRow,
    WaitFor,
    WaitTimeout,
    waiter_key,
)
from kafstash.schemas.workflow import EndRun, FailRun, RunState
from kafstash.schemas.workflow_tag import WorkflowTag
from kafstash.streams import waiters, workflow

URL = "http://127.0.0.1:9/wf"


def waiter(run_id: str = "wfr_1", deadline: int = 5_000) -> Waiter:
    template = Message(
        message_id="msg_template",
        user_id="u",
        url=URL,
        created_at=0,
        not_before=0,
        workflow=WorkflowTag(run_id=run_id),
    )
    return Waiter(
        waiter_id="w-" + run_id,
        run_id=run_id,
        url=URL,
        deadline=deadline,
        created_at=0,
        step=b'{"stepId":2,"stepName":"w","stepType":"Wait","concurrent":1}',
        notified=template,
        timed_out=template,
    )


def waiting(*ws: Waiter) -> WaiterRow:
    row = None
    for w in ws:
        row = waiters.on_wait(WaitFor(user_id="u", event_id="evt", waiter=w), row).row
    assert row is not None
    return row


def published(d: waiters.Decision) -> list[PublishRequest]:
    return [e.value for e in d.emits if isinstance(e.value, PublishRequest)]


def test_notify_wakes_every_waiter_with_the_data_in_out_and_answers_with_their_messages() -> None:
    row = waiting(waiter("wfr_1"), waiter("wfr_2"))
    cmd = NotifyEvent(request_id="r", user_id="u", event_id="evt", data=b'{"x":1}', at=10)
    d = waiters.on_notify(cmd, row, now_ms=10)
    reqs = published(d)
    assert [r.message.workflow.run_id for r in reqs if r.message.workflow] == ["wfr_1", "wfr_2"]
    step = json.loads(reqs[0].message.body)
    assert base64.b64decode(step["out"]) == b'{"x":1}'
    assert step["waitTimeout"] is False
    assert step["waitEventId"] == "evt"
    [reply] = [e.value for e in d.emits if isinstance(e.value, Notified)]
    assert [n.message_id for n in reply.woken] == [r.message.message_id for r in reqs]
    assert d.delete, "no waiter left"
    again = waiters.on_notify(cmd, row, now_ms=11)
    assert [r.message.message_id for r in published(again)] == [
        r.message.message_id for r in reqs
    ], "a replay makes the same messages"


def test_notify_of_one_run_wakes_only_its_waiter_and_nobody_waiting_answers_empty() -> None:
    row = waiting(waiter("wfr_1"), waiter("wfr_2"))
    cmd = NotifyEvent(request_id="r", user_id="u", event_id="evt", data=b"d", at=1, run_id="wfr_2")
    d = waiters.on_notify(cmd, row, now_ms=1)
    assert d.row is not None
    assert [w.run_id for w in d.row.waiters] == ["wfr_1"]
    empty = waiters.on_notify(cmd, None, now_ms=1)
    [reply] = [e.value for e in empty.emits if isinstance(e.value, Notified)]
    assert reply.woken == []


def test_the_deadline_sends_the_timed_out_step_once() -> None:
    row = waiting(waiter("wfr_1", deadline=5_000), waiter("wfr_2", deadline=9_000))
    early = waiters.on_timeout(
        WaitTimeout(user_id="u", event_id="evt", due=5_000), row, now_ms=4_999
    )
    assert published(early) == []
    d = waiters.on_timeout(WaitTimeout(user_id="u", event_id="evt", due=5_000), row, now_ms=5_000)
    [req] = published(d)
    step = json.loads(req.message.body)
    assert step["waitTimeout"] is True
    assert "out" not in step
    assert d.row is not None
    assert [w.run_id for w in d.row.waiters] == ["wfr_2"]


def run_state(run_id: str) -> RunState:
    return RunState(user_id="u", run_id=run_id, url=URL, created_at=0, updated_at=0)


def through_run(cmd: WaitFor, run: RunState | None) -> tuple[RunState | None, list[WaitFor]]:
    """The wait as the run's row sees it: the row's new value and the waits it passes on."""
    d = workflow.on_wait(cmd, run, now_ms=1)
    passed = [e for e in d.emits if isinstance(e.value, WaitFor)]
    assert all(e.key == waiter_key("u", cmd.event_id) for e in passed)
    return d.run or run, [e.value for e in passed if isinstance(e.value, WaitFor)]


def drops(d: workflow.Decision) -> list[DropWaiters]:
    return [e.value for e in d.emits if isinstance(e.value, DropWaiters)]


@pytest.mark.parametrize(
    "end",
    [
        lambda run: workflow.on_end(
            EndRun(user_id="u", run_id=run.run_id, cancel=True, at=9), run, now_ms=9
        ),
        lambda run: workflow.on_end(
            EndRun(user_id="u", run_id=run.run_id, cancel=False, at=9), run, now_ms=9
        ),
        lambda run: workflow.on_fail(
            FailRun(user_id="u", run_id=run.run_id, message_id="m", dlq_id="d", at=9),
            run,
            now_ms=9,
        ),
    ],
    ids=["cancel", "success", "failure"],
)
def test_a_run_that_ends_takes_its_waiters_with_it(
    end: Callable[[RunState], workflow.Decision],
) -> None:
    run, [passed] = through_run(
        WaitFor(user_id="u", event_id="evt", waiter=waiter("wfr_1")), run_state("wfr_1")
    )
    assert run is not None
    assert run.waiting == ["evt"]
    assert passed.run_seen, "passed on to the waiters row once"
    row = waiting(waiter("wfr_1"), waiter("wfr_2"))

    ended = end(run)
    assert ended.run is not None
    assert ended.run.waiting == []
    [drop] = drops(ended)
    assert drop == DropWaiters(user_id="u", event_id="evt", run_id="wfr_1")
    d = waiters.on_drop(drop, row)
    assert d.row is not None
    assert [w.run_id for w in d.row.waiters] == ["wfr_2"], "another run's waiter stays"
    notify = NotifyEvent(request_id="r", user_id="u", event_id="evt", data=b"x", at=10)
    woken = waiters.on_notify(notify, d.row, now_ms=10)
    assert [r.message.workflow.run_id for r in published(woken) if r.message.workflow] == ["wfr_2"]


def test_the_last_waiter_dropped_deletes_the_row_and_a_wait_of_an_ended_run_is_refused() -> None:
    row = waiting(waiter("wfr_1"))
    d = waiters.on_drop(DropWaiters(user_id="u", event_id="evt", run_id="wfr_1"), row)
    assert d.delete
    assert [e.value for e in d.emits] == [None], "the read model's tombstone"
    again = waiters.on_drop(DropWaiters(user_id="u", event_id="evt", run_id="wfr_1"), None)
    assert again == waiters.Decision(), "a replayed drop changes nothing"

    cancelled = workflow.on_end(
        EndRun(user_id="u", run_id="wfr_1", cancel=True, at=1), run_state("wfr_1"), now_ms=1
    ).run
    late = WaitFor(user_id="u", event_id="evt", waiter=waiter("wfr_1"))
    assert through_run(late, cancelled) == (cancelled, []), "never registered"
    # A run this deployment does not know keeps the old behaviour: the wait is registered.
    assert len(through_run(late, None)[1]) == 1


def test_waiting_twice_on_one_event_notes_it_once() -> None:
    cmd = WaitFor(user_id="u", event_id="evt", waiter=waiter("wfr_1"))
    run, _ = through_run(cmd, run_state("wfr_1"))
    run, [passed] = through_run(cmd, run)
    assert run is not None
    assert run.waiting == ["evt"]
    assert isinstance(waiters.on_wait(passed, None).row, WaiterRow)


def test_a_webhook_waiter_wakes_as_its_own_step_type() -> None:
    hook = msgspec.structs.replace(
        waiter("wfr_1"),
        step=b'{"stepId":3,"stepName":"hook","stepType":"WaitForWebhook","concurrent":1}',
    )
    cmd = NotifyEvent(request_id="r", user_id="u", event_id="evt", data=b"{}", at=1)
    [req] = published(waiters.on_notify(cmd, waiting(hook), now_ms=1))
    assert json.loads(req.message.body)["stepType"] == "WaitForWebhook"
    odd = msgspec.structs.replace(waiter("wfr_1"), step=b'{"stepId":3,"stepType":"Run"}')
    [req] = published(waiters.on_notify(cmd, waiting(odd), now_ms=1))
    assert json.loads(req.message.body)["stepType"] == "Wait"
