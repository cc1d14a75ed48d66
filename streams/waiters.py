"""The waiters table's decisions: register a wait, wake waiters on notify, time them out.

A woken or timed-out waiter becomes a step message of its run, sent to the requests topic
under the run's key, so it joins the run's history like any step (streams/workflow.py). Its id
is derived from the waiter and the outcome: a replay after a crash makes the same message,
which the run's row recognises and does not append twice.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import msgspec

from kafstash.schemas import ids
from kafstash.schemas.commands import PublishRequest
from kafstash.schemas.message import Message
from kafstash.schemas.routing import request_key
from kafstash.schemas.waiters import (
    DropWaiters,
    Notified,
    NotifiedWaiter,
    NotifyEvent,
    Waiter,
    WaiterRow,
    WaitFor,
    WaitTimeout,
    waiters_state_key,
)
from kafstash.streams.effects import Emit

_WAIT_TYPES = ("Wait", "WaitForWebhook")


@dataclass(frozen=True, slots=True)
class Decision:
    row: WaiterRow | None = None  # the row's new value; None: unchanged
    delete: bool = False  # the row has no waiter left
    emits: tuple[Emit, ...] = ()
    wake_at: int | None = None


def _state(row: WaiterRow) -> Emit:
    return Emit("state", waiters_state_key(row.user_id, row.event_id), row)


def _changed(row: WaiterRow, waiters: list[Waiter], emits: tuple[Emit, ...]) -> Decision:
    out = msgspec.structs.replace(row, waiters=waiters)
    if not waiters:
        tomb = Emit("state", waiters_state_key(row.user_id, row.event_id), None)
        return Decision(delete=True, emits=(*emits, tomb))
    return Decision(row=out, emits=(*emits, _state(out)))


def on_wait(cmd: WaitFor, row: WaiterRow | None) -> Decision:
    current = row or WaiterRow(user_id=cmd.user_id, event_id=cmd.event_id)
    # The same wait again (a replayed record, or the SDK retrying its delivery) replaces itself.
    kept = [w for w in current.waiters if w.waiter_id != cmd.waiter.waiter_id]
    decision = _changed(current, [*kept, cmd.waiter], ())
    return Decision(row=decision.row, emits=decision.emits, wake_at=cmd.waiter.deadline)


def _step(waiter: Waiter, event_id: str, *, out: bytes | None) -> bytes:
    step = json.loads(waiter.step)
    if not isinstance(step, dict):
        step = {}
    # The waiter's own type stays: "Wait" (waitForEvent) or "WaitForWebhook"; the SDK checks it.
    if step.get("stepType") not in _WAIT_TYPES:
        step["stepType"] = "Wait"
    step.update({"waitEventId": event_id, "waitTimeout": out is None})
    if out is not None:
        step["out"] = base64.b64encode(out).decode()  # the JS SDK decodes it with atob()
    else:
        step.pop("out", None)
    return json.dumps(step, separators=(",", ":")).encode()


def _message(template: Message, waiter: Waiter, body: bytes, kind: str, now_ms: int) -> Message:
    mid = ids.derived_message_id(kind, waiter.waiter_id)
    return msgspec.structs.replace(
        template, message_id=mid, body=body, created_at=now_ms, not_before=now_ms
    )


def _publish(message: Message) -> Emit:
    req = PublishRequest(request_id="req_" + message.message_id[len("msg_") :], message=message)
    return Emit("requests", request_key(req), req)


def on_notify(cmd: NotifyEvent, row: WaiterRow | None, *, now_ms: int) -> Decision:
    waiters = row.waiters if row is not None else []
    woken = [w for w in waiters if cmd.run_id is None or w.run_id == cmd.run_id]
    emits: list[Emit] = []
    answered: list[NotifiedWaiter] = []
    for w in woken:
        body = _step(w, cmd.event_id, out=cmd.data)
        message = _message(w.notified, w, body, "notified", now_ms)
        emits.append(_publish(message))
        answered.append(NotifiedWaiter(waiter=w, message_id=message.message_id))
    reply = Emit("decisions", cmd.request_id, Notified(request_id=cmd.request_id, woken=answered))
    if row is None or not woken:
        return Decision(emits=(*emits, reply))
    left = [w for w in waiters if w not in woken]
    return _changed(row, left, (*emits, reply))


def on_timeout(cmd: WaitTimeout, row: WaiterRow | None, *, now_ms: int) -> Decision:
    if row is None:
        return Decision()
    due = [w for w in row.waiters if w.deadline <= now_ms]
    if not due:
        return Decision()
    emits = []
    for w in due:
        body = _step(w, row.event_id, out=None)
        emits.append(_publish(_message(w.timed_out, w, body, "wait-timeout", now_ms)))
    return _changed(row, [w for w in row.waiters if w not in due], tuple(emits))


def on_drop(cmd: DropWaiters, row: WaiterRow | None) -> Decision:
    """The run ended: its waiters of this event go, so neither ``GET /v2/waiters`` nor a
    notify sees them again."""
    if row is None:
        return Decision()
    left = [w for w in row.waiters if w.run_id != cmd.run_id]
    if len(left) == len(row.waiters):
        return Decision()
    return _changed(row, left, ())


def wake_times(row: WaiterRow) -> list[int]:
    return [w.deadline for w in row.waiters]
