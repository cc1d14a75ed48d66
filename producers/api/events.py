"""``GET /v2/events`` and ``GET /v2/logs``: paging, the query, and the log entry JSON (§8.3).

The SDKs call ``/v2/events`` and read ``events``; the newer OpenAPI path ``/v2/logs`` answers
the same entries under ``logs``. The cursor is opaque to clients (``<time>-<seq>``, the shape of
QStash's own) and is omitted on the last page: the Python SDK loops while it is not None.

Events newer than the horizon (now minus ``KAFSTASH_EVENTS_RETENTION``) come from the in-memory
view; older ones from the Iceberg delivery log through an :class:`EventHistory`, when one is
configured. A page that runs past the horizon continues there, with a history cursor
(``h<time>-<event id>``). History answers the filters the table can (ids, state, url, group,
queue, schedule, label, dates); a query filtering on host, path, caller IP or flow-control key
stops at the horizon.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from kafstash.producers.api.errors import ApiError
from kafstash.producers.api.filter_fields import EVENTS, checked
from kafstash.producers.api.filters import MessageFilter, MultiParams, parse_filter, values
from kafstash.producers.events_view import EventStore, Position
from kafstash.schemas.defaults import EVENTS_PAGE_DEFAULT
from kafstash.schemas.events import MessageEvent
from kafstash.schemas.history import EventHistory, HistoricalEvent, HistoryQuery
from kafstash.schemas.message import CallbackOptions, Message


@dataclass(frozen=True, slots=True)
class EventQuery:
    filter: MessageFilter
    count: int = EVENTS_PAGE_DEFAULT
    latest_first: bool = True
    after: Position | None = None
    history_after: tuple[int, str] | None = None
    in_history: bool = False  # the page continues in the delivery log (newest first)


HISTORY_START = "h"  # newest first: the view is done, the log starts at the horizon


def parse_history_cursor(raw: str) -> tuple[int, str]:
    time_part, sep, id_part = raw[1:].partition("-")
    try:
        if not sep or not time_part.isdigit():
            raise ValueError(raw)
        event_id = base64.urlsafe_b64decode(id_part + "=" * (-len(id_part) % 4)).decode()
    except (ValueError, binascii.Error):
        raise ApiError(f"invalid cursor: {raw!r}") from None
    return (int(time_part), event_id)


def render_history_cursor(time_ms: int, event_id: str) -> str:
    encoded = base64.urlsafe_b64encode(event_id.encode()).decode().rstrip("=")
    return f"h{time_ms}-{encoded}"


def parse_cursor(raw: str) -> Position:
    time_part, sep, seq_part = raw.partition("-")
    if not sep or not time_part.isdigit() or not seq_part.isdigit():
        raise ApiError(f"invalid cursor: {raw!r}")
    return (int(time_part), int(seq_part))


def render_cursor(position: Position) -> str:
    return f"{position[0]}-{position[1]}"


def parse_query(params: MultiParams) -> EventQuery:
    """The query of a listing; 400 for unknown fields and malformed values (filter_fields.py)."""
    count = checked(EVENTS, params.multi_items()) or EVENTS_PAGE_DEFAULT
    order = (values(params, "order") or ["latestFirst"])[0]
    if order not in ("latestFirst", "earliestFirst"):
        raise ApiError("invalid order: use latestFirst or earliestFirst")
    cursor = values(params, "cursor")
    historic = bool(cursor) and cursor[0].startswith("h")
    resumed = historic and cursor[0] != HISTORY_START
    return EventQuery(
        filter=parse_filter(params),
        count=count,
        latest_first=order == "latestFirst",
        after=parse_cursor(cursor[0]) if cursor and not historic else None,
        history_after=parse_history_cursor(cursor[0]) if resumed else None,
        in_history=historic,
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


def historical_json(e: HistoricalEvent) -> dict[str, Any]:
    """A log entry read back from the delivery log (it keeps no headers and no message body)."""
    out: dict[str, Any] = {
        "time": e.time,
        "messageId": e.message_id,
        "state": e.state,
        "url": e.url,
    }
    optional: dict[str, Any] = {
        "method": e.method,
        "maxRetries": e.max_retries,
        "responseStatus": e.response_status,
        "error": e.error,
        "nextDeliveryTime": e.next_delivery_time,
        "topicName": e.topic_name,
        "queueName": e.queue_name,
        "scheduleId": e.schedule_id,
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    if e.response_body is not None:
        out["responseBody"] = _b64(e.response_body.encode())
    if e.labels:
        out["label"] = e.labels[0]
        out["labels"] = e.labels
    return out


def history_query(
    query: EventQuery, user_id: str, *, horizon_ms: int, limit: int
) -> HistoryQuery | None:
    """The same question for the delivery log, or None when it cannot answer it."""
    f = query.filter
    if f.hosts or f.paths or f.caller_ips or f.flow_control_keys:
        return None
    return HistoryQuery(
        user_id=user_id,
        before_ms=horizon_ms,
        limit=limit,
        order="latestFirst" if query.latest_first else "earliestFirst",
        after=query.history_after,
        from_ms=f.from_ms,
        to_ms=f.to_ms,
        message_ids=sorted(f.message_ids),
        states=sorted(f.states),
        urls=sorted(f.urls),
        topic_names=sorted(f.topic_names),
        schedule_ids=sorted(f.schedule_ids),
        queue_names=sorted(f.queue_names),
        labels=sorted(f.labels),
    )


def list_events(
    store: EventStore,
    user_id: str,
    params: MultiParams,
    key: str,
    *,
    horizon_ms: int | None = None,
) -> dict[str, Any]:
    """The response body of ``GET /v2/events`` (``key="events"``) or ``/v2/logs`` (``"logs"``),
    from the in-memory view only (events at or after ``horizon_ms``)."""
    return _hot_page(store, user_id, parse_query(params), key, horizon_ms=horizon_ms)


def _hot_page(
    store: EventStore, user_id: str, query: EventQuery, key: str, *, horizon_ms: int | None
) -> dict[str, Any]:
    wanted = query.filter

    def matches(e: MessageEvent, m: Message | None) -> bool:
        if horizon_ms is not None and e.time < horizon_ms:
            return False  # the delivery log answers for it (pruning runs only now and then)
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


async def answer(
    store: EventStore,
    history: EventHistory | None,
    user_id: str,
    params: MultiParams,
    key: str,
    *,
    horizon_ms: int,
) -> dict[str, Any]:
    """The view's page, continued into (or coming from) the delivery log across the horizon.

    Newest first: the view, then the log. Oldest first: the log, then the view.
    """
    query = parse_query(params)
    if history is None:
        return _hot_page(store, user_id, query, key, horizon_ms=None)

    async def older(limit: int) -> tuple[list[dict[str, Any]], str | None]:
        hq = history_query(query, user_id, horizon_ms=horizon_ms, limit=limit)
        if hq is None or limit <= 0:
            return [], None
        rows = await asyncio.to_thread(history.query, hq)
        cursor = None
        if len(rows) == limit:
            cursor = render_history_cursor(rows[-1].time, rows[-1].event_id)
        return [historical_json(r) for r in rows], cursor

    if query.latest_first:
        if history_query(query, user_id, horizon_ms=horizon_ms, limit=1) is None:
            return _hot_page(store, user_id, query, key, horizon_ms=horizon_ms)
        return await _newest_first(store, user_id, query, key, older, horizon_ms=horizon_ms)
    return await _oldest_first(store, user_id, query, key, older, horizon_ms=horizon_ms)


Older = Callable[[int], Awaitable[tuple[list[dict[str, Any]], str | None]]]


async def _newest_first(
    store: EventStore, user_id: str, query: EventQuery, key: str, older: Older, *, horizon_ms: int
) -> dict[str, Any]:
    if query.in_history:
        entries, cursor = await older(query.count)
        return _page(key, entries, cursor)
    hot = _hot_page(store, user_id, query, key, horizon_ms=horizon_ms)
    if "cursor" in hot:
        return hot
    room = query.count - len(hot[key])
    if room == 0:  # the view is done and the page is full: the next page starts in the log
        return _page(key, hot[key], HISTORY_START)
    entries, cursor = await older(room)
    return _page(key, [*hot[key], *entries], cursor)


async def _oldest_first(
    store: EventStore, user_id: str, query: EventQuery, key: str, older: Older, *, horizon_ms: int
) -> dict[str, Any]:
    if query.after is not None:  # already past the log, in the view
        return _hot_page(store, user_id, query, key, horizon_ms=horizon_ms)
    entries, cursor = await older(query.count)
    if cursor is not None:
        return _page(key, entries, cursor)
    rest = replace(query, count=query.count - len(entries), history_after=None)
    hot = _hot_page(store, user_id, rest, key, horizon_ms=horizon_ms) if rest.count > 0 else {}
    return _page(key, [*entries, *hot.get(key, [])], hot.get("cursor"))


def _page(key: str, entries: list[dict[str, Any]], cursor: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {key: entries}
    if cursor is not None:
        out["cursor"] = cursor
    return out
