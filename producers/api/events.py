"""``GET /v2/events`` and ``GET /v2/logs``: paging, the query, and the log entry JSON (§8.3).

The SDKs call ``/v2/events`` and read ``events``; the newer OpenAPI path ``/v2/logs`` answers
the same entries under ``logs``. The cursor is opaque to clients (``<time>-<seq>``, the shape of
QStash's own) and is omitted on the last page: the Python SDK loops while it is not None.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from producers.api.errors import ApiError
from producers.api.filters import MessageFilter, MultiParams, parse_filter, values
from producers.events_view import EventStore, Position
from schemas.defaults import EVENTS_PAGE_DEFAULT, EVENTS_PAGE_MAX
from schemas.events import MessageEvent
from schemas.message import CallbackOptions, Message


@dataclass(frozen=True, slots=True)
class EventQuery:
    filter: MessageFilter
    count: int = EVENTS_PAGE_DEFAULT
    latest_first: bool = True
    after: Position | None = None


def parse_cursor(raw: str) -> Position:
    time_part, sep, seq_part = raw.partition("-")
    if not sep or not time_part.isdigit() or not seq_part.isdigit():
        raise ApiError(f"invalid cursor: {raw!r}")
    return (int(time_part), int(seq_part))


def render_cursor(position: Position) -> str:
    return f"{position[0]}-{position[1]}"


def parse_query(params: MultiParams) -> EventQuery:
    count = EVENTS_PAGE_DEFAULT
    if raw := values(params, "count"):
        try:
            count = int(raw[0])
        except ValueError:
            raise ApiError(f"invalid count: {raw[0]!r} is not an integer") from None
        if not 1 <= count <= EVENTS_PAGE_MAX:
            raise ApiError(f"invalid count: must be between 1 and {EVENTS_PAGE_MAX}")
    order = (values(params, "order") or ["latestFirst"])[0]
    if order not in ("latestFirst", "earliestFirst"):
        raise ApiError("invalid order: use latestFirst or earliestFirst")
    cursor = values(params, "cursor")
    return EventQuery(
        filter=parse_filter(params),
        count=count,
        latest_first=order == "latestFirst",
        after=parse_cursor(cursor[0]) if cursor else None,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _message_fields(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {
        "url": m.url,
        "method": m.method,
        "header": m.header,
        "maxRetries": m.max_retries,
        "body": _b64(m.body),
    }
    optional: dict[str, Any] = {
        "topicName": m.topic_name,
        "endpointName": m.endpoint_name,
        "queueName": m.queue_name,
        "scheduleId": m.schedule_id,
        "callback": m.callback,
        "failureCallback": m.failure_callback,
        "timeout": m.timeout_ms,  # milliseconds in log entries (OAS LogEntry.timeout)
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    if m.retry_delay_expression is not None:
        # qstash-py reads retryDelayExpr, the OpenAPI document says retryDelayExpression.
        out["retryDelayExpr"] = out["retryDelayExpression"] = m.retry_delay_expression
    for key, options in (
        ("callbackHeaders", m.callback_options),
        ("failureCallbackHeaders", m.failure_callback_options),
    ):
        if isinstance(options, CallbackOptions) and options.header:
            out[key] = options.header
    if m.labels:
        out["label"] = m.labels[0]
        out["labels"] = m.labels
    if m.caller_ip:
        out["callerIP"] = out["callerIp"] = m.caller_ip
    if fc := m.flow_control:
        out["flowControlKey"] = fc.key
        out["period"] = fc.period
        if fc.parallelism is not None:
            out["parallelism"] = fc.parallelism
        if fc.rate is not None:
            out["rate"] = fc.rate
    return out


def event_json(e: MessageEvent, message: Message | None) -> dict[str, Any]:
    """One log entry; ``message`` is the (redacted) message of its CREATED event, if known."""
    out: dict[str, Any] = _message_fields(message) if message is not None else {}
    out.update({"time": e.time, "messageId": e.message_id, "state": e.state})
    if e.url or "url" not in out:
        out["url"] = e.url
    out.setdefault("maxRetries", e.max_retries)
    optional: dict[str, Any] = {
        "error": e.error,
        "nextDeliveryTime": e.next_delivery_time,
        "responseStatus": e.response_status,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    if e.response_body is not None:
        out["responseBody"] = _b64(e.response_body)
    if e.response_headers:
        # qstash-py reads responseHeader, the OpenAPI document says responseHeaders.
        out["responseHeader"] = out["responseHeaders"] = e.response_headers
    return out


def list_events(store: EventStore, user_id: str, params: MultiParams, key: str) -> dict[str, Any]:
    """The response body of ``GET /v2/events`` (``key="events"``) or ``/v2/logs`` (``"logs"``)."""
    query = parse_query(params)
    wanted = query.filter

    def matches(e: MessageEvent, m: Message | None) -> bool:
        return wanted.matches(
            message_id=e.message_id,
            url=m.url if m is not None else e.url,
            message=m,
            at_ms=e.time,
            state=e.state,
        )

    page = store.select(
        user_id,
        matches,
        count=query.count,
        latest_first=query.latest_first,
        after=query.after,
        message_ids=wanted.message_ids,
    )
    out: dict[str, Any] = {
        key: [event_json(x.event, store.message(x.event.message_id)) for x in page.entries]
    }
    if page.next_after is not None:
        out["cursor"] = render_cursor(page.next_after)
    return out
