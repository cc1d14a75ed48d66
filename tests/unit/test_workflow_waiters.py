"""The waiters table's decisions (streams/waiters.py), without a broker."""

from __future__ import annotations

import base64
import json

from kafstash.schemas.commands import PublishRequest
from kafstash.schemas.message import Message
from kafstash.schemas.waiters import Notified, NotifyEvent, Waiter, WaitFor, WaitTimeout
from kafstash.schemas.workflow_tag import WorkflowTag
from kafstash.streams import waiters

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


def waiting(*ws: Waiter) -> waiters.WaiterRow:
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
