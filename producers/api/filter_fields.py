"""Which fields each filtering endpoint accepts: a typo in a filter must never widen a call.

A bulk call (``DELETE /v2/messages``, ``DELETE /v2/dlq``, ``POST /v2/dlq/retry``) that ignored a
field it did not know would read ``?labeel=x`` as "no filter", i.e. "everything". So every
endpoint that filters declares its fields here (:data:`SPECS`), and one check refuses, before
anything is read or changed:

- an undeclared query field: 400 ``unknown filter field 'labeel'``;
- a filter field given only blank values (``?label=``), which would otherwise drop out too;
- a ``count`` that is not a positive integer, or above the endpoint's maximum (unless the
  endpoint documents that a larger one is treated as the maximum);
- a JSON body (the Python SDK's ``{"messageIds": [...]}`` / ``{"dlqIds": [...]}``) with any key
  but the declared one.

The field lists are what the official SDKs send (qstash 3.4.0, @upstash/qstash 2.12.0, see
qstash-api.md §3 and sdk-wire/) plus what QStash's own document lists; GET lists take the same
check, since QStash refuses unknown filter fields there as well. ``qstash_token`` (the query
alternative to the Authorization header) is accepted everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from kafstash.producers.api.errors import ApiError
from kafstash.schemas.defaults import EVENTS_PAGE_DEFAULT, EVENTS_PAGE_MAX

AUTH_FIELDS = frozenset({"qstash_token"})
# Fields that position or size a page; a blank value means "not given", never "everything".
_PAGING = frozenset({"cursor"})


@dataclass(frozen=True, slots=True)
class CountRule:
    """How an endpoint reads ``count``: at most ``maximum`` items per call.

    ``default`` applies when no count is given (None: no limit, every match). ``clamp`` says a
    count above the maximum is treated as the maximum (the DLQ's documented "default and max
    100") instead of refused.
    """

    default: int | None
    maximum: int
    clamp: bool = False


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """The query fields one endpoint accepts, its count rule, and its JSON body's one key."""

    query: frozenset[str]
    count: CountRule | None = None
    body_ids: str | None = None  # the key of an ids-only JSON body, if the endpoint takes one

    @property
    def accepted(self) -> frozenset[str]:
        return self.query | AUTH_FIELDS


def check_query(spec: FieldSpec, pairs: Iterable[tuple[str, str]]) -> None:
    """400 for an undeclared field, or a filter field whose every value is blank."""
    seen: dict[str, bool] = {}
    for key, value in pairs:
        if key not in spec.accepted:
            raise ApiError(f"unknown filter field {key!r}")
        seen[key] = seen.get(key, False) or bool(value.replace(",", "").strip())
    for key, filled in seen.items():
        if not filled and key not in _PAGING:
            raise ApiError(f"empty filter field {key!r}: give a value or leave the field out")


def parse_count(spec: FieldSpec, pairs: Iterable[tuple[str, str]]) -> int | None:
    """How many items the call may touch: ``count`` checked against the endpoint's rule."""
    rule = spec.count
    raw = [v.strip() for k, v in pairs if k == "count"]
    if rule is None:
        return None
    if not raw:
        return rule.default
    text = raw[0]
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise ApiError(f"invalid count: {text!r} is not a positive integer")
    count = int(text)
    if count > rule.maximum:
        if not rule.clamp:
            raise ApiError(f"invalid count: must be between 1 and {rule.maximum}")
        return rule.maximum
    return count


def checked(spec: FieldSpec, pairs: Iterable[tuple[str, str]]) -> int | None:
    """:func:`check_query`, then :func:`parse_count`: what every filtering endpoint calls."""
    items = list(pairs)
    check_query(spec, items)
    return parse_count(spec, items)


def decode_ids_body(spec: FieldSpec, raw: bytes) -> tuple[str, ...] | None:
    """The ids of a JSON body ``{"<body_ids>": [...]}``; None for an empty body.

    A body with any other key, or that is not such an object, is 400: a server that skipped it
    would take the request for "every match of the (absent) query filters".
    """
    if not raw.strip():
        return None
    key = spec.body_ids
    shape = f'{{"{key}": [...]}}'
    if key is None:
        raise ApiError("invalid request body: this endpoint takes no body")
    try:
        parsed = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ApiError(f"invalid request body: expected {shape}: {exc}") from None
    if not isinstance(parsed, dict):
        raise ApiError(f"invalid request body: expected {shape}")
    for field in parsed:
        if field != key:
            raise ApiError(f"unknown filter field {field!r}")
    ids = parsed.get(key)
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ApiError(f"invalid request body: expected {shape} with a list of strings")
    return tuple(dict.fromkeys(ids))


# -- the declared fields ---------------------------------------------------------------------

# Filters every message-shaped endpoint takes (JS UniversalFilterFields + identity fields; JS
# renames urlGroup to topicName and drops api). ``callerIP`` is the deprecated spelling.
_COMMON = frozenset(
    {
        "url",
        "topicName",
        "queueName",
        "scheduleId",
        "label",
        "callerIp",
        "callerIP",
        "flowControlKey",
        "fromDate",
        "toDate",
    }
)
_HOST_PATH = frozenset({"host", "path"})  # cancel and events only; QStash's DLQ refuses them

DLQ_MAX = 100
CANCEL_MAX = 500  # QStash's document: "between 1 and 500; if not provided, all matches"

CANCEL_MESSAGES = FieldSpec(
    query=_COMMON | _HOST_PATH | {"messageIds", "count"},
    count=CountRule(default=None, maximum=CANCEL_MAX),
    body_ids="messageIds",
)
DLQ = FieldSpec(
    query=_COMMON
    | {"dlqIds", "messageId", "responseStatus", "cursor", "count", "order", "source"}
    | {"workflowRunId", "workflowUrl", "workflowCreatedAt", "failureFunctionState"},
    count=CountRule(default=DLQ_MAX, maximum=DLQ_MAX, clamp=True),
    body_ids="dlqIds",
)
EVENTS = FieldSpec(
    query=_COMMON | _HOST_PATH | {"messageId", "messageIds", "state", "cursor", "count", "order"},
    count=CountRule(default=EVENTS_PAGE_DEFAULT, maximum=EVENTS_PAGE_MAX),
)

# -- Upstash Workflow (workflow-api.md §4; @upstash/workflow 1.3.3's Client) -------------------

# UniversalFilterFields of the Workflow SDK: every workflow filter takes them.
_WF_UNIVERSAL = frozenset({"fromDate", "toDate", "callerIp", "label", "flowControlKey"})
RUNS_MAX = 1000
# DELETE /v2/workflows/runs: cancel(ids) sends only workflowRunIds; cancel({filter}) and
# cancel({all}) send count (default 100). workflowUrl is a prefix unless workflowUrlExactMatch.
CANCEL_RUNS = FieldSpec(
    query=_WF_UNIVERSAL
    | _HOST_PATH
    | {"workflowRunIds", "workflowUrl", "workflowUrlExactMatch", "count"},
    count=CountRule(default=None, maximum=RUNS_MAX),
)
# GET /v2/workflows/events (and its alias /logs): logs({workflowRunId, workflowUrl, state,
# count, cursor, filter}); groupBy=workflowRunId is always sent.
WORKFLOW_LOGS = FieldSpec(
    query=_WF_UNIVERSAL
    | _HOST_PATH
    | {"workflowRunId", "workflowUrl", "workflowUrlExactMatch", "workflowCreatedAt"}
    | {"state", "messageId", "groupBy", "cursor", "count"},
    count=CountRule(default=10, maximum=RUNS_MAX, clamp=True),
)
# DELETE /v2/workflows/dlq, POST /v2/workflows/dlq/resume|restart: dlqIds, or the DLQ action
# filters (DLQActionFilterFields, failureFunctionState among them: the state the run's row
# records for its failure callback) with count (default 100) and cursor. The JSON body
# {"dlqIds": [...]} is taken as on /v2/dlq (no SDK sends it; it must never mean "all").
WORKFLOW_DLQ = FieldSpec(
    query=_WF_UNIVERSAL
    | {"dlqIds", "workflowRunId", "workflowUrl", "workflowCreatedAt", "cursor", "count"}
    | {"failureFunctionState"},
    count=CountRule(default=DLQ_MAX, maximum=DLQ_MAX, clamp=True),
    body_ids="dlqIds",
)
NO_QUERY = FieldSpec(query=frozenset())

FLOW_CONTROL_PIN = FieldSpec(query=frozenset({"parallelism", "rate", "period"}))
FLOW_CONTROL_UNPIN = FieldSpec(query=frozenset({"parallelism", "rate"}))
FLOW_CONTROL_PLAIN = NO_QUERY

# (method, path as in openapi.yaml) → spec; tests/unit/test_openapi.py holds the document to it.
SPECS: dict[tuple[str, str], FieldSpec] = {
    ("delete", "/v2/messages"): CANCEL_MESSAGES,
    ("get", "/v2/dlq"): DLQ,
    ("delete", "/v2/dlq"): DLQ,
    ("post", "/v2/dlq/retry"): DLQ,
    ("get", "/v2/events"): EVENTS,
    ("get", "/v2/logs"): EVENTS,
    ("post", "/v2/flowControl/{flowControlKey}/pin"): FLOW_CONTROL_PIN,
    ("post", "/v2/flowControl/{flowControlKey}/unpin"): FLOW_CONTROL_UNPIN,
    **{
        ("post", f"/v2/flowControl/{{flowControlKey}}/{action}"): FLOW_CONTROL_PLAIN
        for action in ("pause", "resume", "resetRate", "reset")
    },
    ("delete", "/v2/workflows/runs"): CANCEL_RUNS,
    ("get", "/v2/workflows/events"): WORKFLOW_LOGS,
    ("get", "/v2/workflows/logs"): WORKFLOW_LOGS,
    ("delete", "/v2/workflows/dlq"): WORKFLOW_DLQ,
    ("post", "/v2/workflows/dlq/resume"): WORKFLOW_DLQ,
    ("post", "/v2/workflows/dlq/restart"): WORKFLOW_DLQ,
    ("post", "/v2/workflows/dlq/callback/{dlqId}"): NO_QUERY,
}
