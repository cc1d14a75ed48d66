"""The dead-letter queue over HTTP (qstash-api.md §3.8, §8.2).

The sender writes one DlqEntry per failed message to the compacted ``<prefix>.dlq`` topic; this
module reads them through a CompactedView and removes them with tombstones. A retry publishes a
NEW message from the stored original (unredacted: redaction only hides values from readers)
and then tombstones the entry, so the old dlqId answers 404 afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kafstash.producers.api import filter_fields
from kafstash.producers.api.dlq_query import (
    DlqQuery,
    FailureLookup,
    failure_function_of,
    no_failure_functions,
    parse_query,
    select,
)
from kafstash.producers.api.errors import NotFound, Unavailable
from kafstash.producers.api.filter_fields import decode_ids_body
from kafstash.producers.api.publish import HeaderView, build_request
from kafstash.producers.api.views import body_fields, message_json
from kafstash.producers.kafka_log import LogUnavailable
from kafstash.schemas import codec, ids
from kafstash.schemas import headers as h
from kafstash.schemas.commands import PublishRequest
from kafstash.schemas.dlq import DlqEntry, dlq_key
from kafstash.schemas.message import Message
from kafstash.schemas.redact import redacted
from kafstash.schemas.workflow import FailureFunction, run_key
from kafstash.views.compacted import CompactedView

if TYPE_CHECKING:
    from kafstash.producers.api.context import ApiContext
    from kafstash.schemas.users import User


def _decode(_key: str, value: bytes) -> DlqEntry | None:
    try:
        return codec.decode(value, DlqEntry)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def open_view(bootstrap: str, dlq_topic: str) -> CompactedView[DlqEntry]:
    return CompactedView(bootstrap, dlq_topic, _decode)


def failure_lookup(api: ApiContext) -> FailureLookup:
    """Entry -> the failure callback record on its run's row (the API's runs view)."""
    runs = api.runs
    if runs is None:
        return no_failure_functions

    def lookup(entry: DlqEntry) -> FailureFunction | None:
        tag = entry.message.workflow
        if tag is None:
            return None
        return failure_function_of(entry, runs.get(run_key(entry.message.user_id, tag.run_id)))

    return lookup


def failure_callback_info(failure: FailureFunction) -> dict[str, Any]:
    """A workflow dead letter's ``failureCallbackInfo`` (workflow-api.md §4)."""
    out: dict[str, Any] = {"state": failure.state}
    if failure.response_status is not None:
        out["responseStatus"] = failure.response_status
    if failure.response_body is not None:
        out["responseBody"] = failure.response_body
    if failure.response_headers:
        out["responseHeaders"] = failure.response_headers
    return out


def dlq_json(entry: DlqEntry, failure: FailureFunction | None = None) -> dict[str, Any]:
    """The message as readers see it (redacted), plus the last failed attempt's answer; a
    workflow run's dead letter also shows how its failure callback (``failure``) stands."""
    out = message_json(redacted(entry.message))
    out["dlqId"] = entry.dlq_id
    out["responseStatus"] = entry.response_status or 0  # required by the Python SDK
    if entry.response_header:
        out["responseHeader"] = entry.response_header
    for key, value in body_fields(entry.response_body or b"").items():
        out["response" + key[0].upper() + key[1:]] = value  # responseBody / responseBodyBase64
    if entry.error:
        out["error"] = entry.error
    tag = entry.message.workflow
    if tag is not None:
        out["workflowRunId"] = tag.run_id
        out["workflowCreatedAt"] = tag.created_at or entry.message.created_at
        out["workflowUrl"] = tag.url or entry.message.url
        if entry.message.failure_callback:
            out["failureCallback"] = entry.message.failure_callback
        if failure is not None:
            out["failureCallbackInfo"] = failure_callback_info(failure)
    return out


# Which Upstash-* request headers of a single retry override which fields of the original.
_OVERRIDES: dict[str, tuple[str, ...]] = {
    h.METHOD: ("method",),
    h.RETRIES: ("max_retries",),
    h.RETRY_DELAY: ("retry_delay_expression",),
    h.TIMEOUT: ("timeout_ms",),
    h.DELAY: ("not_before",),
    h.NOT_BEFORE: ("not_before",),
    h.CALLBACK: ("callback", "callback_options"),
    h.FAILURE_CALLBACK: ("failure_callback", "failure_callback_options"),
    h.LABEL: ("labels",),
}


def republished(
    original: Message, *, view: HeaderView | None, built: Message | None, now_ms: int
) -> Message:
    """A new message with the original's settings, overridden by the headers the retry sent.

    ``built`` is the message ``build_request`` made from the retry's own headers (validated);
    only fields whose header was sent are taken from it; forwarded headers are merged per name.
    """
    changes: dict[str, object] = {
        "message_id": ids.message_id(),
        "created_at": now_ms,
        "not_before": now_ms,
        "dedup_id": None,
        # The queue slot a failed callback held was freed when it failed: a retry holds none.
        "release_of": None,
        "release_gates": [],
    }
    if view is not None and built is not None:
        for header, fields in _OVERRIDES.items():
            if view.get(header) is not None:
                changes.update({f: getattr(built, f) for f in fields})
        # Only Upstash-Forward-* headers override: the retry request's own Content-Type (a
        # client's default for an empty POST) says nothing about the stored message.
        forwarded = {
            k: v
            for k, v in built.header.items()
            if view.get(h.FORWARD_PREFIX + k.lower()) is not None
        }
        if forwarded:
            changes["header"] = {**original.header, **forwarded}
    return msgspec.structs.replace(original, **changes)


def _user_entry(api: ApiContext, user: User, dlq_id: str) -> DlqEntry:
    assert api.dlq is not None
    entry = api.dlq.get(dlq_key(user.user_id, dlq_id))
    if entry is None:
        raise NotFound(f"dlq message {dlq_id!r} not found")
    return entry


def _selected(api: ApiContext, user: User, q: DlqQuery) -> tuple[list[DlqEntry], str | None]:
    assert api.dlq is not None
    entries = (e for _, e in api.dlq.scan(dlq_key(user.user_id, "")))
    return select(entries, q, failure_lookup(api))


async def _remove(api: ApiContext, user: User, entries: list[DlqEntry]) -> None:
    assert api.log is not None
    assert api.dlq is not None
    keys = [dlq_key(user.user_id, e.dlq_id) for e in entries]
    if not keys:
        return
    topic = api.config.topics.dlq
    try:
        await api.log.append_many([(topic, k.encode(), None) for k in keys])
    except LogUnavailable as exc:
        raise Unavailable("Kafka is unavailable; retry") from exc
    for k in keys:
        api.dlq.drop(k)


async def _retry(api: ApiContext, user: User, entries: list[tuple[DlqEntry, Message]]) -> list[str]:
    requests = [
        PublishRequest(request_id=ids.request_id(), message=message) for _, message in entries
    ]
    results = await api.submit(requests)
    await _remove(api, user, [e for e, _ in entries])
    return [mid for mid, _ in results]


async def _bulk_query(api: ApiContext, request: Request) -> DlqQuery:
    """What a bulk delete or retry means; the query is checked even when a body names the ids.

    The Python SDK's delete_many sends its ids as a JSON body on DELETE; a server that ignored
    it would take the request for "delete everything", so a body is always read (retry too).
    """
    q = parse_query(request.query_params.multi_items())
    ids = decode_ids_body(filter_fields.DLQ, await api.read_body(request))
    return q if ids is None else DlqQuery(dlq_ids=frozenset(ids), count=q.count)


def routes(api: ApiContext) -> list[Route]:
    async def list_messages(request: Request) -> Response:
        user = api.user(request)
        page, cursor = _selected(api, user, parse_query(request.query_params.multi_items()))
        failure = failure_lookup(api)
        out: dict[str, Any] = {"messages": [dlq_json(e, failure(e)) for e in page]}
        if cursor is not None:
            out["cursor"] = cursor
        return JSONResponse(out)

    async def get_message(request: Request) -> Response:
        user = api.user(request)
        entry = _user_entry(api, user, request.path_params["dlq_id"])
        return JSONResponse(dlq_json(entry, failure_lookup(api)(entry)))

    async def delete_message(request: Request) -> Response:
        user = api.user(request)
        entry = _user_entry(api, user, request.path_params["dlq_id"])
        await _remove(api, user, [entry])
        return JSONResponse({"deleted": 1})

    async def delete_many(request: Request) -> Response:
        user = api.user(request)
        page, cursor = _selected(api, user, await _bulk_query(api, request))
        await _remove(api, user, page)
        out: dict[str, Any] = {"deleted": len(page)}
        if cursor is not None:
            out["cursor"] = cursor
        return JSONResponse(out)

    async def retry_many(request: Request) -> Response:
        user = api.user(request)
        page, cursor = _selected(api, user, await _bulk_query(api, request))
        now = api.now_ms()
        fresh = [(e, republished(e.message, view=None, built=None, now_ms=now)) for e in page]
        out: dict[str, Any] = {
            "responses": [{"messageId": mid} for mid in await _retry(api, user, fresh)]
        }
        if cursor is not None:
            out["cursor"] = cursor
        return JSONResponse(out, status_code=201)

    async def retry_one(request: Request) -> Response:
        user = api.user(request)
        entry = _user_entry(api, user, request.path_params["dlq_id"])
        view = HeaderView(request.headers.items())
        now = api.now_ms()
        built = build_request(
            user=user,
            url=entry.message.url,
            view=view,
            body=entry.message.body,
            now_ms=now,
            limits=api.config.limits,
        ).message
        message = republished(entry.message, view=view, built=built, now_ms=now)
        await api.check_callbacks(message)
        [mid] = await _retry(api, user, [(entry, message)])
        return JSONResponse({"messageId": mid}, status_code=201)

    return [
        Route("/v2/dlq", list_messages, methods=["GET"]),
        Route("/v2/dlq", delete_many, methods=["DELETE"]),
        Route("/v2/dlq/retry", retry_many, methods=["POST"]),
        Route("/v2/dlq/retry/{dlq_id}", retry_one, methods=["POST"]),
        Route("/v2/dlq/{dlq_id}", get_message, methods=["GET"]),
        Route("/v2/dlq/{dlq_id}", delete_message, methods=["DELETE"]),
    ]
