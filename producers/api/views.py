"""Stored records rendered in QStash's JSON shapes (qstash-api.md §8)."""

import base64
from typing import Any

from kafstash.schemas.message import FlowControl, Message


def body_fields(body: bytes) -> dict[str, str]:
    """``body`` when it is valid UTF-8, else ``bodyBase64`` (QStash's convention)."""
    if not body:
        return {}
    try:
        return {"body": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"bodyBase64": base64.b64encode(body).decode()}


def message_json(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {
        "messageId": m.message_id,
        "url": m.url,
        "method": m.method,
        "header": m.header,
        "maxRetries": m.max_retries,
        "notBefore": m.not_before,
        "createdAt": m.created_at,
        **body_fields(m.body),
    }
    optional = {
        "callback": m.callback,
        "failureCallback": m.failure_callback,
        "retryDelayExpression": m.retry_delay_expression,
        "topicName": m.topic_name,
        "endpointName": m.endpoint_name,
        "queueName": m.queue_name,
        "scheduleId": m.schedule_id,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    if m.timeout_ms is not None:
        out["timeout"] = -(-m.timeout_ms // 1000)  # seconds, rounded up: 500 ms is not 0
    if m.caller_ip:
        # PY-sdk reads callerIP, JS types say callerIp: both are emitted.
        out["callerIP"] = out["callerIp"] = m.caller_ip
    if m.callback_options is not None and m.callback_options.header:
        out["callbackHeader"] = m.callback_options.header
    if m.failure_callback_options is not None and m.failure_callback_options.header:
        out["failureCallbackHeader"] = m.failure_callback_options.header
    if m.flow_control is not None:
        out.update(flow_control_json(m.flow_control))
    if m.labels:
        out["label"] = m.labels[0]
        out["labels"] = m.labels
    return out


def flow_control_json(fc: FlowControl) -> dict[str, Any]:
    """``flowControlKey`` and the limits that were set; ``period`` in seconds (always present)."""
    out: dict[str, Any] = {"flowControlKey": fc.key, "period": fc.period}
    if fc.parallelism is not None:
        out["parallelism"] = fc.parallelism
    if fc.rate is not None:
        out["rate"] = fc.rate
    return out
