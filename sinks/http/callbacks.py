"""Callbacks and failure callbacks (qstash-api.md §6): new messages the sender publishes.

After every attempt of a message with ``callback``, and after the final failure of one with
``failure_callback``, the sender appends a PublishRequest for a new message to that URL, whose
JSON body describes the attempt. The new message travels the normal path (dedup, delay, sender,
SSRF guard, signature with ``sub`` = the callback URL) with its own options.

Replays: a sender that crashes after appending but before committing its offset repeats the
attempt's follow-ups. The callback's id and dedup key are derived from (source id, attempt,
kind), so the repeat meets the first one's dedup row and is dropped: one callback per attempt.
The bodies and requests themselves are built in schemas/callbacks.py.
"""

from __future__ import annotations

from kafstash.schemas.callbacks import Kind, callback_body, callback_request
from kafstash.schemas.commands import DeliveryDue, PublishRequest
from kafstash.sinks.http import slots


def callbacks_after(
    due: DeliveryDue,
    *,
    final_failure: bool,
    status: int | None,
    response_headers: dict[str, list[str]],
    response_body: bytes | None,
    error: str | None,
    dlq_id: str | None,
    now_ms: int,
    carrier: Kind | None = None,
) -> list[PublishRequest]:
    """The callback messages that follow one attempt (none when the message asked for none);
    the one of kind ``carrier`` also frees the source's queue slots when it finishes."""
    m = due.message
    out: list[PublishRequest] = []

    def body(dlq: str | None = None) -> bytes:
        return callback_body(
            due,
            status=status,
            response_headers=response_headers,
            response_body=response_body,
            error=error,
            dlq_id=dlq,
        )

    if m.callback:
        out.append(
            callback_request(
                m,
                kind="callback",
                retried=due.retried,
                url=m.callback,
                options=m.callback_options,
                body=body(),
                now_ms=now_ms,
            )
        )
    if carrier == "callback" and out:
        out[-1] = slots.carrying(out[-1], m)
    if final_failure and m.failure_callback:
        out.append(
            callback_request(
                m,
                kind="failure-callback",
                retried=due.retried,
                url=m.failure_callback,
                options=m.failure_callback_options,
                body=body(dlq_id),
                now_ms=now_ms,
            )
        )
        if carrier == "failure-callback":
            out[-1] = slots.carrying(out[-1], m)
    return out
