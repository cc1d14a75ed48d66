"""The callback and failure-callback messages (qstash-api.md §6): their JSON body and request.

Pure builders over schemas alone: the sender uses them after an attempt (sinks/http/callbacks.py),
and the API when it re-sends a dead-lettered workflow run's failure callback
(``POST /v2/workflows/dlq/callback/<dlqId>``).
"""

from __future__ import annotations

import base64
import json
from typing import Literal

from kafstash.schemas import ids
from kafstash.schemas.commands import DeliveryDue, PublishRequest
from kafstash.schemas.defaults import CALLBACK_SOURCE_BODY_LIMIT
from kafstash.schemas.message import CallbackOptions, Message
from kafstash.schemas.redact import redacted

Kind = Literal["callback", "failure-callback"]


def _b64(data: bytes | None) -> str:
    # Standard alphabet with padding: the JS SDK decodes these with atob().
    return base64.b64encode(data or b"").decode()


def callback_body(
    due: DeliveryDue,
    *,
    status: int | None,
    response_headers: dict[str, list[str]],
    response_body: bytes | None,
    error: str | None,
    dlq_id: str | None = None,
) -> bytes:
    """The JSON a callback URL receives about attempt ``due.retried`` of ``due.message``.

    The source's headers and body are shown as stored for reading (redacted fields stay
    redacted): the callback is itself a stored message. A source body over
    CALLBACK_SOURCE_BODY_LIMIT is truncated (QStash: "may be truncated"), so the callback's
    record always fits in a Kafka record.
    """
    m = due.message
    shown = redacted(m)
    out: dict[str, object] = {
        "status": status if status is not None else 0,
        "header": response_headers,
        "body": _b64(response_body),
        "retried": due.retried,
        "maxRetries": m.max_retries,
        "sourceMessageId": m.message_id,
        "url": m.url,
        "method": m.method,
        "sourceHeader": shown.header,
        "sourceBody": _b64(shown.body[:CALLBACK_SOURCE_BODY_LIMIT]),
        "notBefore": m.not_before,
        "createdAt": m.created_at,
    }
    optional: dict[str, object | None] = {
        "dlqId": dlq_id,
        "error": error if status is None else None,
        "topicName": m.topic_name,
        "endpointName": m.endpoint_name,
        "scheduleId": m.schedule_id,
        "callerIP": m.caller_ip,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    if m.workflow is not None:
        out.update(_workflow_fields(m))
    return json.dumps(out, separators=(",", ":")).encode()


def _workflow_fields(m: Message) -> dict[str, object]:
    """What a workflow's failure function reads (workflow-api.md §5): the run, and as
    ``sourceBody`` the run's initial payload, element 0 of the history this step carried."""
    assert m.workflow is not None
    out: dict[str, object] = {
        "workflowRunId": m.workflow.run_id,
        "workflowCreatedAt": m.workflow.created_at or m.created_at,
    }
    if m.workflow.url:
        out["workflowUrl"] = m.workflow.url
    if m.workflow.call_type == "step":
        try:
            history = json.loads(m.body)
            out["sourceBody"] = str(history[0]["body"])
        except (ValueError, LookupError, TypeError):
            pass  # not a history (a Kafka-native producer's message): the body as sent
    return out


def callback_request(
    source: Message,
    *,
    kind: Kind,
    retried: int,
    url: str,
    options: CallbackOptions | None,
    body: bytes,
    now_ms: int,
) -> PublishRequest:
    """The PublishRequest of one callback message; the same (id, dedup key) on every replay."""
    opts = options or CallbackOptions()
    attempt = str(retried) if kind == "callback" else "final"
    message_id = ids.derived_message_id(kind, source.message_id, attempt)
    message = Message(
        message_id=message_id,
        user_id=source.user_id,
        url=url,
        created_at=now_ms,
        not_before=now_ms + (opts.delay_ms or 0),
        method=opts.method,
        header={"Content-Type": ["application/json"], **opts.header},
        body=body,
        max_retries=source.max_retries if opts.retries is None else opts.retries,
        retry_delay_expression=opts.retry_delay_expression,
        timeout_ms=opts.timeout_ms,
        caller_ip=None,
        # No callback of its own: a failing callback must not start a chain of callbacks.
        workflow=opts.workflow,
    )
    return PublishRequest(
        request_id="req_" + message_id[len("msg_") :],
        message=message,
        dedup_key=f"{source.user_id}:{kind}:{message_id}",
    )
