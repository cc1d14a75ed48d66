"""What the sender appends after an attempt: events, the retry, the end of the message's life."""

import functools
from collections.abc import Iterable
from typing import TypedDict

from kafstash.schemas import ids
from kafstash.schemas.commands import DeliveryDue, PublishRequest, Schedule
from kafstash.schemas.dlq import DlqEntry, dlq_id, dlq_key
from kafstash.schemas.events import MessageEvent, State
from kafstash.schemas.message import Message
from kafstash.schemas.routing import request_key
from kafstash.schemas.workflow import FailRun, FailureCallbackDone, FailureFunction, run_key
from kafstash.sinks.http import slots
from kafstash.sinks.http.callbacks import callbacks_after
from kafstash.sinks.http.outcome import DeadLetter, Delivered, Outcome, RetryAt

RESPONSE_BODY_LIMIT = 4096  # bytes of a destination's answer kept in events (audit, DLQ)

Record = tuple[str, str, object | None]  # (topic role, key, record or tombstone)


def releases(message: Message, carried_by: slots.Carrier | None = None) -> list[Record]:
    """A finished message frees its queue / flow-control slots, except the queue slots its
    callback message now carries (sinks/http/slots.py), plus the slots it carries itself."""
    return slots.releases(message, carried_by=carried_by)


def after_attempt(
    due: DeliveryDue,
    outcome: Outcome,
    *,
    status: int | None,
    response_body: bytes | None,
    error: str | None,
    duration_ms: int,
    started_ms: int,
    now_ms: int,
    response_headers: dict[str, list[str]] | None = None,
) -> list[Record]:
    carrier = slots.carrier(
        due.message,
        final=not isinstance(outcome, RetryAt),
        failed=isinstance(outcome, DeadLetter),
    )
    records = _state_records(
        due,
        outcome,
        carrier=carrier,
        status=status,
        response_headers=response_headers,
        response_body=response_body,
        error=error,
        duration_ms=duration_ms,
        started_ms=started_ms,
        now_ms=now_ms,
    )
    return [
        *records,
        *_follow_ups(
            due,
            outcome,
            status=status,
            response_headers=response_headers or {},
            response_body=response_body,
            error=error,
            now_ms=now_ms,
            carrier=carrier,
        ),
    ]


def _follow_ups(
    due: DeliveryDue,
    outcome: Outcome,
    *,
    status: int | None,
    response_headers: dict[str, list[str]],
    response_body: bytes | None,
    error: str | None,
    now_ms: int,
    carrier: slots.Carrier | None = None,
) -> list[Record]:
    """The DLQ entry of a final failure, and the callback messages of the attempt."""
    m = due.message
    out: list[Record] = []
    final = isinstance(outcome, DeadLetter)
    dlq: str | None = None
    if isinstance(outcome, DeadLetter):
        dlq = dlq_id(message=m, retried=due.retried)
        entry = DlqEntry(
            dlq_id=dlq,
            message=m,
            failed_at=now_ms,
            retried=due.retried,
            response_status=status,
            response_header=response_headers,
            response_body=response_body[:RESPONSE_BODY_LIMIT] if response_body else None,
            error=error or outcome.reason,
        )
        out.append(("dlq", dlq_key(m.user_id, dlq), entry))
    callbacks = callbacks_after(
        due,
        final_failure=final,
        status=status,
        response_headers=response_headers,
        response_body=response_body,
        error=error,
        dlq_id=dlq,
        now_ms=now_ms,
        carrier=carrier,
    )
    tag = m.workflow
    if dlq is not None and tag is not None and tag.call_type in ("step", "fromCallback"):
        # A message to the workflow URL that failed for good fails its run.
        failed = FailRun(
            user_id=m.user_id,
            run_id=tag.run_id,
            message_id=m.message_id,
            dlq_id=dlq,
            at=now_ms,
            failure_function=_failure_function(
                m, callbacks, status=status, headers=response_headers, body=response_body
            ),
        )
        out.append(("requests", run_key(m.user_id, tag.run_id), failed))
    done = failure_callback_done(
        m, outcome, status=status, headers=response_headers, body=response_body, now_ms=now_ms
    )
    if done is not None:
        out.append(("requests", run_key(m.user_id, done.run_id), done))
    for req in callbacks:
        out.append(("requests", request_key(req), req))
    return out


def _text(body: bytes | None) -> str:
    return (body or b"")[:RESPONSE_BODY_LIMIT].decode("utf-8", errors="replace")


def _failure_function(
    m: Message,
    callbacks: list[PublishRequest],
    *,
    status: int | None,
    headers: dict[str, list[str]],
    body: bytes | None,
) -> FailureFunction | None:
    """The failure callback a failed run's last message sent (among ``callbacks``), as the run
    records it until the callback finishes: in progress, with the answer it reports."""
    mid = ids.derived_message_id("failure-callback", m.message_id, "final")
    sent = next((r.message for r in callbacks if r.message.message_id == mid), None)
    if sent is None:
        return None
    return FailureFunction(
        message_id=mid,
        url=sent.url,
        fail_status=status or 0,
        fail_response=_text(body),
        fail_headers=headers,
    )


def failure_callback_done(
    m: Message,
    outcome: Outcome,
    *,
    status: int | None,
    headers: dict[str, list[str]],
    body: bytes | None,
    now_ms: int,
) -> FailureCallbackDone | None:
    """The end of a workflow run's failure callback, for the run's row: delivered is
    CALLBACK_SUCCESS, dead-lettered CALLBACK_FAIL; None for any other message or a retry."""
    tag = m.workflow
    if tag is None or tag.call_type != "failureCall" or isinstance(outcome, RetryAt):
        return None
    return FailureCallbackDone(
        user_id=m.user_id,
        run_id=tag.run_id,
        message_id=m.message_id,
        state="CALLBACK_SUCCESS" if isinstance(outcome, Delivered) else "CALLBACK_FAIL",
        at=now_ms,
        response_status=status,
        response_body=_text(body) if body else None,
        response_headers=headers,
    )


def _state_records(
    due: DeliveryDue,
    outcome: Outcome,
    *,
    status: int | None,
    response_body: bytes | None,
    error: str | None,
    duration_ms: int,
    started_ms: int,
    now_ms: int,
    response_headers: dict[str, list[str]] | None = None,
    carrier: slots.Carrier | None = None,
) -> list[Record]:
    m = due.message
    mid = m.message_id
    run = workflow_fields(m)

    def event(state: State, at: int | None = None, **extra: object) -> MessageEvent:
        return MessageEvent(
            time=now_ms if at is None else at,
            message_id=mid,
            user_id=m.user_id,
            state=state,
            url=m.url,
            retried=due.retried,
            max_retries=m.max_retries,
            response_status=status,
            response_body=response_body[:RESPONSE_BODY_LIMIT] if response_body else None,
            duration_ms=duration_ms,
            response_headers=response_headers or None,
            **run,
            **extra,  # type: ignore[arg-type]
        )

    active = MessageEvent(
        time=started_ms,
        message_id=mid,
        user_id=m.user_id,
        state="ACTIVE",
        url=m.url,
        retried=due.retried,
        max_retries=m.max_retries,
        **run,
    )
    first: list[Record] = [("events", mid, active)]
    match outcome:
        case Delivered():
            return [
                *first,
                ("events", mid, event("DELIVERED")),
                ("messages", mid, None),
                *releases(m, carrier),
            ]
        case RetryAt(at_ms=at_ms, reason=reason):
            retry = Schedule(message=m, due=at_ms, retried=due.retried + 1)
            return [
                *first,
                ("events", mid, event("ERROR", error=error or reason)),
                ("events", mid, event("RETRY", next_delivery_time=at_ms, error=reason)),
                ("timers", mid, retry),
            ]
        case DeadLetter(reason=reason):
            return [
                *first,
                ("events", mid, event("ERROR", error=error or reason)),
                ("events", mid, event("FAILED", error=reason)),
                ("messages", mid, None),
                *releases(m, carrier),
            ]


class WorkflowFields(TypedDict, total=False):
    workflow_run_id: str
    step_id: int | None
    step_name: str | None
    step_type: str | None


def workflow_fields(m: Message) -> WorkflowFields:
    """The run and step a workflow message's events name (for the delivery log's analytics)."""
    tag = m.workflow
    if tag is None:
        return {}
    return WorkflowFields(
        workflow_run_id=tag.run_id,
        step_id=tag.step_id,
        step_name=tag.step_name,
        step_type=tag.step_type,
    )


def header_lists(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """A response's headers as QStash stores them: Go-canonical names to value lists."""
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(_canonical(name), []).append(value)
    return out


@functools.lru_cache(maxsize=1024)
def _canonical(name: str) -> str:
    # Destinations answer with the same few header names: computed once each.
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.split("-"))
