"""Which dead letters a ``/v2/dlq`` request means: filters, order and cursor paging (pure).

Filters follow qstash-api.md §3.8: values of one filter are OR-ed (repeated keys, or a comma
list), different filters are AND-ed; ``dlqIds`` alone selects by id and ignores the rest.
Entries are ordered by (failed_at, dlq id); the cursor is that key of the last entry returned,
so a page never repeats or skips an entry that existed when the previous page was read.
``count`` (default and maximum 100, a larger one is read as 100) bounds every list, delete and
retry; unknown fields and malformed values are 400 (filter_fields.py).

A workflow dead letter's failure callback state (``failureFunctionState``) is not in the entry:
the run's row records the callback's outcome (streams/workflow.py), so the caller passes a
lookup from entry to that record, built with :func:`failure_function_of`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kafstash.producers.api import filter_fields
from kafstash.producers.api.errors import ApiError
from kafstash.schemas.dlq import DlqEntry
from kafstash.schemas.workflow import CALLBACK_STATES, FailureFunction, RunState

MAX_COUNT = filter_fields.DLQ_MAX
_ORDERS = ("earliestFirst", "latestFirst")
# Query key → how an entry shows that value. ``url`` is never split on commas (URLs hold them).
_TEXT_FILTERS: dict[str, Callable[[DlqEntry], list[str | None]]] = {
    "messageId": lambda e: [e.message.message_id],
    "url": lambda e: [e.message.url],
    "topicName": lambda e: [e.message.topic_name],
    "scheduleId": lambda e: [e.message.schedule_id],
    "queueName": lambda e: [e.message.queue_name],
    "callerIp": lambda e: [e.message.caller_ip],
    "label": lambda e: list(e.message.labels),
    "flowControlKey": lambda e: [e.message.flow_control.key if e.message.flow_control else None],
    "responseStatus": lambda e: [str(e.response_status or 0)],
    # ``source=workflow`` (the Workflow SDK's dlq.list): dead letters of workflow runs.
    "source": lambda e: ["workflow" if e.message.workflow else "message"],
    "workflowRunId": lambda e: [e.message.workflow.run_id if e.message.workflow else None],
    "workflowUrl": lambda e: [e.message.workflow.url if e.message.workflow else None],
    "workflowCreatedAt": lambda e: [_run_created_at(e)],
}


def _run_created_at(entry: DlqEntry) -> str | None:
    """The run's creation time as the entry shows it (``workflowCreatedAt``, dlq.py)."""
    tag = entry.message.workflow
    return None if tag is None else str(tag.created_at or entry.message.created_at)


# Entry -> its run's failure callback record, if the entry is the dead letter that failed it.
FailureLookup = Callable[[DlqEntry], FailureFunction | None]


def no_failure_functions(_entry: DlqEntry) -> FailureFunction | None:
    return None


def failure_function_of(entry: DlqEntry, run: RunState | None) -> FailureFunction | None:
    """The failure callback record of ``run`` if ``entry`` is the dead letter that failed it (a
    run resumed or restarted since has dropped both)."""
    if run is None or entry.message.workflow is None or run.dlq_id != entry.dlq_id:
        return None
    return run.failure_function


@dataclass(frozen=True)
class DlqQuery:
    dlq_ids: frozenset[str] | None = None
    filters: dict[str, frozenset[str]] = field(default_factory=dict)
    from_date: int | None = None
    to_date: int | None = None
    count: int = MAX_COUNT
    cursor: tuple[int, str] | None = None
    latest_first: bool = False
    failure_states: frozenset[str] = frozenset()


def _values(pairs: list[tuple[str, str]], key: str, *, split: bool = True) -> list[str]:
    out: list[str] = []
    for k, v in pairs:
        if k != key:
            continue
        if split:
            out.extend(p.strip() for p in v.split(","))
        else:
            out.append(v)
    return [v for v in out if v]


def _int(pairs: list[tuple[str, str]], key: str) -> int | None:
    values = _values(pairs, key)
    if not values:
        return None
    try:
        return int(values[0])
    except ValueError:
        raise ApiError(f"invalid {key}: {values[0]!r} is not an integer") from None


def parse_query(
    pairs: list[tuple[str, str]], spec: filter_fields.FieldSpec = filter_fields.DLQ
) -> DlqQuery:
    """A DlqQuery from the request's query pairs; ApiError(400) on fields ``spec`` does not
    declare and on malformed values."""
    count = filter_fields.checked(spec, pairs)
    # Deprecated spelling, still sent by some clients.
    pairs = [("callerIp" if k == "callerIP" else k, v) for k, v in pairs]
    ids = _values(pairs, "dlqIds")
    filters: dict[str, frozenset[str]] = {}
    for key in _TEXT_FILTERS:
        values = _values(pairs, key, split=key != "url")
        if values:
            filters[key] = frozenset(values)
    for status in filters.get("responseStatus", ()):
        if not status.isascii() or not status.isdigit():
            raise ApiError(f"invalid responseStatus: {status!r} is not an HTTP status code")
    if "workflowCreatedAt" in filters:
        try:  # compared as the canonical decimal the entry shows
            filters["workflowCreatedAt"] = frozenset(
                str(int(v)) for v in filters["workflowCreatedAt"]
            )
        except ValueError:
            raise ApiError("invalid workflowCreatedAt: not a Unix time in milliseconds") from None
    for source in filters.get("source", ()):
        if source not in ("workflow", "message"):
            raise ApiError(f"invalid source: {source!r}, use workflow or message")
    failure_states = frozenset(_values(pairs, "failureFunctionState"))
    if bad := sorted(failure_states - CALLBACK_STATES):
        raise ApiError(
            f"invalid failureFunctionState: {bad[0]!r} is not one of "
            + ", ".join(sorted(CALLBACK_STATES))
        )
    order = (_values(pairs, "order") or ["earliestFirst"])[0]
    if order not in _ORDERS:
        raise ApiError("invalid order: use earliestFirst or latestFirst")
    cursors = _values(pairs, "cursor")
    cursor = _parse_cursor(cursors[0]) if cursors else None
    return DlqQuery(
        dlq_ids=frozenset(ids) if ids else None,
        filters=filters,
        from_date=_int(pairs, "fromDate"),
        to_date=_int(pairs, "toDate"),
        count=count or MAX_COUNT,
        cursor=cursor,
        latest_first=order == "latestFirst",
        failure_states=failure_states,
    )


def _parse_cursor(raw: str) -> tuple[int, str]:
    millis, sep, dlq_id = raw.partition("_")
    if not (sep and millis.isascii() and millis.isdigit() and dlq_id):
        raise ApiError("invalid cursor")
    return int(millis), dlq_id


def _order_key(entry: DlqEntry) -> tuple[int, str]:
    return entry.failed_at, entry.dlq_id


def format_cursor(key: tuple[int, str]) -> str:
    return f"{key[0]}_{key[1]}"


def matches(entry: DlqEntry, q: DlqQuery, failure: FailureLookup = no_failure_functions) -> bool:
    if q.dlq_ids is not None:
        return entry.dlq_id in q.dlq_ids
    if q.failure_states:
        found = failure(entry)
        if found is None or found.state not in q.failure_states:
            return False
    if q.from_date is not None and entry.failed_at < q.from_date:
        return False
    if q.to_date is not None and entry.failed_at > q.to_date:
        return False
    for key, wanted in q.filters.items():
        if not any(v is not None and v in wanted for v in _TEXT_FILTERS[key](entry)):
            return False
    return True


def select(
    entries: Iterable[DlqEntry], q: DlqQuery, failure: FailureLookup = no_failure_functions
) -> tuple[list[DlqEntry], str | None]:
    """One page of the matching entries in the asked order, and the cursor of the next page."""
    found = sorted(
        (e for e in entries if matches(e, q, failure)), key=_order_key, reverse=q.latest_first
    )
    if q.cursor is not None:
        c = q.cursor
        found = [e for e in found if (_order_key(e) < c if q.latest_first else _order_key(e) > c)]
    page = found[: q.count]
    more = len(found) > q.count
    return page, format_cursor(_order_key(page[-1])) if more else None
