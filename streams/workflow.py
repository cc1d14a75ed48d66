"""The workflow table's decisions: a run's step history, and how each of its messages leaves.

Every message and command of a run reaches the partition owning the run's row in publish order
(schemas/routing.py). A message joins the history when it arrives; a delivery to the workflow
URL carries the history *up to and including* its own message, which is what makes parallel
steps work (workflow-api.md §3.2). The message then goes on as any message does (dedup.accept:
delay, gates, delivery), with the history as its body.

Replays: a worker that crashed before committing sees a message again whose id is already in
the history. It is sent on again with the history as it was when the message joined, so a
replay delivers the same body under the same message id (receivers dedupe on it).

The SDKs do not dedupe on the message id: a step delivered twice (a replay above, or a sender
killed mid-delivery) runs its body again and publishes its result again, under a new id. That
second result does not join the history: a run's history holds each step once (the SDKs would
skip it anyway, keeping the first), and the run's log shows each step once.

Analytics: each message leaves tagged with the step it carries (:func:`step_of`), and a run's
start and end go to the events topic as run events (:func:`run_event`), so the delivery log
answers runs per status, run durations and step timings (docs/iceberg.md, "Workflow runs").
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import msgspec

from kafstash.schemas import ids
from kafstash.schemas.commands import Accepted, Cancel, PublishRequest
from kafstash.schemas.defaults import DEFAULT_RETRIES
from kafstash.schemas.events import RUN_EVENT_STATES, MessageEvent
from kafstash.schemas.message import Message
from kafstash.schemas.routing import request_key
from kafstash.schemas.waiters import DropWaiters, WaitFor, waiter_key
from kafstash.schemas.workflow import (
    ACTIVE,
    CREATED_AT_HEADER,
    RUN_ID_HEADER,
    SDK_VERSION_HEADER,
    URL_HEADER,
    EndRun,
    FailRun,
    FailureCallbackDone,
    HistoryEntry,
    ReviveRun,
    RunState,
    RunStatus,
    run_key,
)
from kafstash.schemas.workflow_tag import WorkflowTag
from kafstash.streams.effects import Emit

_history_encoder = msgspec.json.Encoder()

# Forwarded step headers of a context.call's messages (workflow-api.md §3.3), Go-canonical.
_STEP_ID_HEADER = "Upstash-Workflow-Stepid"
_STEP_NAME_HEADER = "Upstash-Workflow-Stepname"
_STEP_TYPE_HEADER = "Upstash-Workflow-Steptype"


class _StepJson(msgspec.Struct, frozen=True, rename="camel"):
    """The fields of the SDK's step JSON the analytics need (workflow-api.md §2.2)."""

    step_id: int | None = None
    step_name: str | None = None
    step_type: str | None = None


_step_decoder = msgspec.json.Decoder(_StepJson)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the runtime does with one record: the row's new value (None: unchanged), the
    request to pass on to dedup.accept (None: nothing is delivered), and extra records."""

    run: RunState | None = None
    forward: PublishRequest | None = None
    emits: tuple[Emit, ...] = ()
    note: str | None = None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def history_body(history: list[HistoryEntry]) -> bytes:
    return _history_encoder.encode(history)


def _deliverable(run: RunState, message: Message, upto: int) -> Message:
    """``message`` as it leaves for its destination, given the history index it holds."""
    assert message.workflow is not None
    tag = replace_tag(message, run)
    header = dict(message.header)
    call_type = tag.call_type
    body = message.body
    if call_type == "step":
        body = history_body(run.history[: upto + 1])
        header[RUN_ID_HEADER] = [run.run_id]
        header[URL_HEADER] = [run.url]
        header[CREATED_AT_HEADER] = [str(run.created_at)]
    elif call_type in ("fromCallback", "failureCall"):
        header[RUN_ID_HEADER] = [run.run_id]
        header.pop(SDK_VERSION_HEADER, None)
    # toCallback goes to a third party: its own body, and no workflow header of ours.
    failure_callback = message.failure_callback
    failure_options = message.failure_callback_options
    if call_type == "step" and failure_callback is None and run.failure_callback is not None:
        # JS sets the failure callback on the run's first message only; every step of the run
        # may be the one that fails it, so each carries it to the sender.
        failure_callback, failure_options = run.failure_callback, run.failure_callback_options
    out = msgspec.structs.replace(
        message,
        body=body,
        header=header,
        workflow=tag,
        failure_callback=failure_callback,
        failure_callback_options=failure_options,
        labels=message.labels or run.labels,
    )
    if call_type != "step" or tag.init:
        return out
    # A step without settings of its own takes the run's (Python repeats them on every step,
    # JS sends them on the start only; a step cannot tell "3" from "not sent", and 3 is the
    # default either way).
    return msgspec.structs.replace(
        out,
        max_retries=run.max_retries if out.max_retries == DEFAULT_RETRIES else out.max_retries,
        retry_delay_expression=out.retry_delay_expression or run.retry_delay_expression,
        flow_control=out.flow_control or run.flow_control,
    )


def replace_tag(message: Message, run: RunState) -> WorkflowTag:
    assert message.workflow is not None
    step_id, step_name, step_type = step_of(message)
    return msgspec.structs.replace(
        message.workflow,
        created_at=run.created_at,
        url=message.workflow.url or run.url,
        step_id=step_id,
        step_name=step_name,
        step_type=step_type,
    )


def step_of(message: Message) -> tuple[int | None, str | None, str | None]:
    """(step id, name, type) of the step a run's message carries; Nones where it names none.

    A step's body is the SDK's step JSON; a context.call's messages name their step in the
    forwarded headers (the call's result) or the callback's (the call itself). The start's body
    is the user's payload, and a body the publisher redacted is not read.
    """
    tag = message.workflow
    if tag is None or tag.init:
        return None, None, None
    if tag.call_type == "step":
        if "body" in message.redact:
            return None, None, None
        try:
            step = _step_decoder.decode(message.body)
        except msgspec.DecodeError:  # ValidationError is a DecodeError
            return None, None, None
        return step.step_id, step.step_name, step.step_type
    header = message.header
    if tag.call_type == "toCallback":
        header = message.callback_options.header if message.callback_options else {}
    if tag.call_type not in ("fromCallback", "toCallback") or _STEP_NAME_HEADER not in header:
        return None, None, None
    raw_id = _first(header, _STEP_ID_HEADER)
    step_id = int(raw_id) if raw_id is not None and raw_id.isdigit() else None
    return step_id, _first(header, _STEP_NAME_HEADER), _first(header, _STEP_TYPE_HEADER)


def _first(header: dict[str, list[str]], name: str) -> str | None:
    values = header.get(name)
    return values[0] if values else None


def run_event(run: RunState, status: RunStatus, at: int) -> Emit:
    """A run's start or end as an event of the events topic, keyed by the run's key. An end
    carries the run's duration from its (latest) start."""
    event = MessageEvent(
        time=at,
        message_id=run.run_id,
        user_id=run.user_id,
        state=RUN_EVENT_STATES[status],
        url=run.url,
        duration_ms=None if status == ACTIVE else max(0, at - run.created_at),
        workflow_run_id=run.run_id,
        run_status=status,
    )
    return Emit("events", run_key(run.user_id, run.run_id), event)


def _index(run: RunState, message_id: str) -> int | None:
    for i, entry in enumerate(run.history):
        if entry.message_id == message_id:
            return i
    return None


def _state(run: RunState) -> Emit:
    return Emit("state", run_key(run.user_id, run.run_id), run)


def _joined(run: RunState, message: Message, now_ms: int) -> RunState:
    assert message.workflow is not None
    entry = HistoryEntry(
        message_id=message.message_id,
        body=_b64(message.body),
        call_type=message.workflow.call_type,
    )
    sleeping = dict(run.sleeping)
    if message.not_before > now_ms:
        sleeping[message.message_id] = message.not_before
    # What has come due is no longer held back: a cancel has nothing to withdraw there.
    sleeping = {k: v for k, v in sleeping.items() if v > now_ms}
    return msgspec.structs.replace(
        run, history=[*run.history, entry], sleeping=sleeping, updated_at=now_ms
    )


StepId = tuple[int, int | None]


def step_id(body: bytes) -> StepId | None:
    """A step result's identity as the SDKs dedupe steps: (stepId, targetStep). None when the
    body is no step result (an initial payload) or names none unambiguously (a plan, stepId 0,
    without its targetStep)."""
    try:
        step = json.loads(body)
    except ValueError:
        return None
    if not isinstance(step, dict):
        return None
    sid, target = step.get("stepId"), step.get("targetStep")
    if type(sid) is not int or (target is not None and type(target) is not int):
        return None
    if sid == 0 and target is None:
        return None
    return (sid, target)


def _recorded(run: RunState, step: StepId) -> str | None:
    """The message id of the history's result of ``step``, if the history holds one."""
    for entry in run.history[1:]:
        if entry.call_type == "step" and step_id(base64.b64decode(entry.body)) == step:
            return entry.message_id
    return None


def on_message(req: PublishRequest, run: RunState | None, *, now_ms: int) -> Decision:
    message = req.message
    tag = message.workflow
    assert tag is not None
    if (outside := _outside_history(req, run)) is not None:
        return outside
    started = tag.init and run is None
    if tag.init:
        if run is not None:
            # Another start of a run id that exists: no second run (workflow-api.md §1.3).
            reply: tuple[Emit, ...] = ()
            if req.reply:
                first = run.history[0].message_id if run.history else message.message_id
                decision = Accepted(request_id=req.request_id, message_id=first, deduplicated=True)
                reply = (Emit("decisions", req.request_id, decision),)
            return Decision(emits=reply, note="deduplicated: run exists")
        run = RunState(
            user_id=message.user_id,
            run_id=tag.run_id,
            url=tag.url or message.url,
            created_at=now_ms,
            updated_at=now_ms,
            labels=list(message.labels),
            failure_callback=message.failure_callback,
            failure_callback_options=message.failure_callback_options,
            caller_ip=message.caller_ip,
            max_retries=message.max_retries,
            retry_delay_expression=message.retry_delay_expression,
            flow_control=message.flow_control,
            invoker=req.invoker,
        )
    elif run is None:
        # Not a run this deployment started (a Kafka-native producer's message, or a callback
        # naming some run id): delivered as the plain message it also is; nothing accepted
        # is dropped for a run we cannot know.
        return Decision(forward=req, note="unknown workflow run: delivered as a plain message")
    elif run.state != ACTIVE:
        return Decision(note=f"dropped: run is {run.state}")
    elif (
        tag.call_type == "step"
        and (step := step_id(message.body)) is not None
        and (recorded := _recorded(run, step)) is not None
    ):
        # A step that ran again: its first result stays the only one (module docstring).
        reply = ()
        if req.reply:
            decision = Accepted(request_id=req.request_id, message_id=recorded, deduplicated=True)
            reply = (Emit("decisions", req.request_id, decision),)
        return Decision(emits=reply, note=f"dropped: step {step} already recorded")
    joined = _joined(run, message, now_ms)
    forward = _with(req, _deliverable(joined, message, len(joined.history) - 1))
    start = (run_event(joined, ACTIVE, joined.created_at),) if started else ()
    return Decision(run=joined, forward=forward, emits=(*start, _state(joined)))


def _outside_history(req: PublishRequest, run: RunState | None) -> Decision | None:
    """A message that does not join the history now: a failure function's call (it only names
    the run), or a replay of one that joined before."""
    message = req.message
    assert message.workflow is not None
    if message.workflow.call_type == "failureCall":
        if run is None:
            return Decision(forward=req)
        return Decision(forward=_with(req, _deliverable(run, message, len(run.history) - 1)))
    if run is not None and (at := _index(run, message.message_id)) is not None:
        return Decision(
            forward=_with(req, _deliverable(run, message, at)), note="replayed: already joined"
        )
    return None


def _with(req: PublishRequest, message: Message) -> PublishRequest:
    return msgspec.structs.replace(req, message=message)


def on_wait(cmd: WaitFor, run: RunState | None, *, now_ms: int) -> Decision:
    """A ``waitForEvent`` of the run: the row notes the event id (its waiters there go when the
    run ends), then the wait goes on to the event's waiters row. A wait of an ended run is
    dropped; one naming a run we do not know is registered as it comes (nothing to drop it)."""
    seen = msgspec.structs.replace(cmd, run_seen=True)
    passed = Emit("requests", waiter_key(cmd.user_id, cmd.event_id), seen)
    if run is None:
        return Decision(emits=(passed,), note="wait of an unknown run: registered as it is")
    if run.state != ACTIVE:
        return Decision(note=f"wait dropped: run is {run.state}")
    if cmd.event_id in run.waiting:
        return Decision(emits=(passed,))
    noted = msgspec.structs.replace(run, waiting=[*run.waiting, cmd.event_id], updated_at=now_ms)
    return Decision(run=noted, emits=(_state(noted), passed))


def _drop_waiters(run: RunState) -> tuple[Emit, ...]:
    """An ended run's waiters: removed from every event it waited on (workflow-api.md §3.5, §5)."""
    return tuple(
        Emit(
            "requests",
            waiter_key(run.user_id, event_id),
            DropWaiters(user_id=run.user_id, event_id=event_id, run_id=run.run_id),
        )
        for event_id in run.waiting
    )


def on_run_end(
    cmd: EndRun | FailRun | FailureCallbackDone, run: RunState | None, *, now_ms: int
) -> Decision:
    """The commands that end a run or follow its end: success or cancel, failure, and the
    failure callback's outcome."""
    match cmd:
        case EndRun():
            return on_end(cmd, run, now_ms=now_ms)
        case FailRun():
            return on_fail(cmd, run, now_ms=now_ms)
        case FailureCallbackDone():
            return on_failure_callback(cmd, run, now_ms=now_ms)


def on_end(cmd: EndRun, run: RunState | None, *, now_ms: int) -> Decision:
    if run is None or run.state != ACTIVE:
        return Decision(note="ignored: run is not active")
    ended = msgspec.structs.replace(
        run,
        state="RUN_CANCELED" if cmd.cancel else "RUN_SUCCESS",
        completed_at=cmd.at,
        response=None if cmd.cancel else cmd.response,
        sleeping={},
        waiting=[],
        updated_at=now_ms,
    )
    # A cancelled run's held-back messages (sleeps) are withdrawn; a finished run has none the
    # SDK still expects, and a late one would meet the ended row and nothing else.
    withdraw = tuple(
        Emit("timers", mid, Cancel(message_id=mid, user_id=run.user_id, requested_at=now_ms))
        for mid, due in run.sleeping.items()
        if due > now_ms
    )
    result = _invoke_result(ended, now_ms)
    end = run_event(ended, ended.state, cmd.at)
    return Decision(run=ended, emits=(*withdraw, *_drop_waiters(run), *result, end, _state(ended)))


def on_fail(cmd: FailRun, run: RunState | None, *, now_ms: int) -> Decision:
    if run is None or run.state != ACTIVE:
        return Decision(note="ignored: run is not active")
    failed = msgspec.structs.replace(
        run,
        state="RUN_FAILED",
        completed_at=cmd.at,
        dlq_id=cmd.dlq_id,
        waiting=[],
        updated_at=now_ms,
        failure_function=cmd.failure_function,
    )
    end = run_event(failed, "RUN_FAILED", cmd.at)
    return Decision(
        run=failed,
        emits=(*_drop_waiters(run), *_invoke_result(failed, now_ms), end, _state(failed)),
    )


def on_failure_callback(cmd: FailureCallbackDone, run: RunState | None, *, now_ms: int) -> Decision:
    """A failed run's failure callback finished: the run's ``failureFunction`` (and its dead
    letter's ``failureCallbackInfo``) shows how. A callback sent again from the DLQ
    (``dlq.retryFailureFunction``) has a new message id, and its outcome counts as well; one of
    a run that went on since (resumed, restarted) is no longer the run's."""
    if run is None or run.state != "RUN_FAILED" or run.failure_function is None:
        return Decision(note="ignored: the run has no failure callback in flight")
    done = msgspec.structs.replace(
        run.failure_function,
        message_id=cmd.message_id,
        state=cmd.state,
        response_status=cmd.response_status,
        response_body=cmd.response_body,
        response_headers=cmd.response_headers,
    )
    recorded = msgspec.structs.replace(run, failure_function=done, updated_at=now_ms)
    return Decision(run=recorded, emits=(_state(recorded),))


def _invoke_result(run: RunState, now_ms: int) -> tuple[Emit, ...]:
    """The invoker's Invoke step, once this invoked run has ended (workflow-api.md §3.6)."""
    invoker = run.invoker
    if invoker is None:
        return ()
    step = json.loads(invoker.step)
    if not isinstance(step, dict):
        step = {}
    if step.get("stepId") == 0 and isinstance(step.get("targetStep"), int):
        step["stepId"] = step["targetStep"]  # a parallel plan's result takes its target's id
    out = {
        "body": run.response,
        "isFailed": run.state == "RUN_FAILED",
        "isCanceled": run.state == "RUN_CANCELED",
    }
    step.update({"stepType": "Invoke", "out": json.dumps(out)})
    mid = ids.derived_message_id("invoke-result", run.user_id, run.run_id)
    message = msgspec.structs.replace(
        invoker.template,
        message_id=mid,
        body=json.dumps(step, separators=(",", ":")).encode(),
        created_at=now_ms,
        not_before=now_ms,
    )
    req = PublishRequest(request_id="req_" + mid[len("msg_") :], message=message)
    return (Emit("requests", request_key(req), req),)


def on_revive(cmd: ReviveRun, run: RunState | None, *, now_ms: int) -> Decision:
    if run is None or run.state != "RUN_FAILED":
        return Decision(note="ignored: only a failed run is resumed or restarted")
    req = PublishRequest(request_id="req_" + cmd.message.message_id[4:], message=cmd.message)
    # The call's retries and flow control hold for the rest of the run (later JS steps name none).
    run = msgspec.structs.replace(
        run,
        max_retries=run.max_retries if cmd.max_retries is None else cmd.max_retries,
        flow_control=cmd.flow_control or run.flow_control,
    )
    if cmd.restart:
        fresh = msgspec.structs.replace(
            run,
            state=ACTIVE,
            history=[],
            sleeping={},
            created_at=now_ms,
            updated_at=now_ms,
            completed_at=None,
            dlq_id=None,
            response=None,
            failure_function=None,
        )
        joined = _joined(fresh, cmd.message, now_ms)
        forward = _with(req, _deliverable(joined, cmd.message, 0))
        start = run_event(joined, ACTIVE, now_ms)
        return Decision(run=joined, forward=forward, emits=(start, _state(joined)))
    at = _index(run, cmd.failed_id)
    if at is None:
        return Decision(note="ignored: the failed message is not in the history")
    resumed = msgspec.structs.replace(
        run,
        state=ACTIVE,
        completed_at=None,
        dlq_id=None,
        failure_function=None,
        updated_at=now_ms,
    )
    # Not a new step: the failed delivery again (new id), with the history it carried.
    return Decision(
        run=resumed,
        forward=_with(req, _deliverable(resumed, cmd.message, at)),
        emits=(run_event(resumed, ACTIVE, now_ms), _state(resumed)),
    )
