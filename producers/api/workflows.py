"""``/v2/workflows/...``: the Upstash Workflow runs the stream workers keep (workflow-api.md §4).

Runs are read from the ``state`` topic (``wf/<user>/<run id>``, written by the run's stream
worker); ending or cancelling one appends an EndRun command under the run's key, so it meets
the run's row after every step published before it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kafstash.producers.api import filter_fields, workflow_query
from kafstash.producers.api.context import ApiContext
from kafstash.producers.api.dlq import failure_lookup
from kafstash.producers.api.dlq_query import DlqQuery, parse_query, select
from kafstash.producers.api.errors import ApiError, NotFound, Unavailable
from kafstash.producers.api.filter_fields import CANCEL_RUNS, WORKFLOW_DLQ, WORKFLOW_LOGS
from kafstash.producers.api.flow_control_value import parse_flow_control
from kafstash.producers.api.publish import HeaderView
from kafstash.producers.kafka_log import LogUnavailable
from kafstash.schemas import codec, ids
from kafstash.schemas import headers as h
from kafstash.schemas.callbacks import callback_body, callback_request
from kafstash.schemas.commands import DeliveryDue, PublishRequest
from kafstash.schemas.defaults import MAX_RETRIES
from kafstash.schemas.dlq import DlqEntry, dlq_key
from kafstash.schemas.message import FlowControl
from kafstash.schemas.users import User
from kafstash.schemas.workflow import (
    ACTIVE,
    RUN_STATE_PREFIX,
    EndRun,
    ReviveRun,
    RunState,
    run_key,
)
from kafstash.views.compacted import CompactedView

_run = msgspec.json.Decoder(RunState)


def _decode(key: str, value: bytes) -> RunState | None:
    if not key.startswith(RUN_STATE_PREFIX):
        return None
    try:
        return _run.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def open_view(bootstrap: str, state_topic: str) -> CompactedView[RunState]:
    return CompactedView(bootstrap, state_topic, _decode, version=lambda r: r.updated_at)


# -- answers -----------------------------------------------------------------------------------


def history_json(run: RunState) -> list[dict[str, str]]:
    return [
        {"messageId": e.message_id, "body": e.body, "callType": e.call_type} for e in run.history
    ]


def _step_logs(run: RunState) -> list[dict[str, Any]]:
    """The run's steps grouped as QStash's logs show them: sequential, or one parallel group."""
    groups: list[dict[str, Any]] = []
    for entry in run.history[1:]:
        if entry.call_type != "step":
            continue
        try:
            step = json.loads(base64.b64decode(entry.body))
        except ValueError:
            continue
        if not isinstance(step, dict) or step.get("stepId") == 0:
            continue  # a parallel group's plan, not a step that ran
        log = {**step, "messageId": entry.message_id, "callType": "step", "state": "STEP_SUCCESS"}
        concurrent = step.get("concurrent", 1)
        last = groups[-1] if groups else None
        if isinstance(concurrent, int) and concurrent > 1:
            if last is not None and last["type"] == "parallel" and len(last["steps"]) < concurrent:
                last["steps"].append(log)
                continue
            groups.append({"type": "parallel", "steps": [log]})
        else:
            groups.append({"type": "sequential", "steps": [log]})
    return groups


def run_log(run: RunState) -> dict[str, Any]:
    out: dict[str, Any] = {
        "workflowRunId": run.run_id,
        "workflowUrl": run.url,
        "workflowState": run.state,
        "workflowRunCreatedAt": run.created_at,
        "steps": _step_logs(run),
    }
    if run.completed_at is not None:
        out["workflowRunCompletedAt"] = run.completed_at
    if run.response is not None:
        out["workflowRunResponse"] = run.response
    if run.labels:
        out["label"] = run.labels[0]
        out["labels"] = run.labels
    if run.dlq_id is not None:
        out["dlqId"] = run.dlq_id
    if (failure := run.failure_function) is not None:
        out["failureFunction"] = {
            "messageId": failure.message_id,
            "url": failure.url,
            "state": failure.state,
            "failStatus": failure.fail_status,
            "failResponse": failure.fail_response,
            "failHeaders": failure.fail_headers,
            "dlqId": run.dlq_id or "",
        }
    return out


# -- selection ---------------------------------------------------------------------------------


def _runs(api: ApiContext, user: User) -> list[RunState]:
    view = api.runs
    assert view is not None
    return [r for _, r in view.scan(run_key(user.user_id, ""))]


async def _end(api: ApiContext, run: RunState, *, cancel: bool, response: str | None) -> None:
    assert api.log is not None
    assert api.runs is not None
    now = api.now_ms()
    cmd = EndRun(user_id=run.user_id, run_id=run.run_id, cancel=cancel, at=now, response=response)
    key = run_key(run.user_id, run.run_id)
    try:
        await api.log.append_many([(api.config.topics.requests, key.encode(), codec.encode(cmd))])
    except LogUnavailable as exc:
        raise Unavailable("Kafka is unavailable; retry") from exc
    # Read-your-writes: the run shows as ended at once; the worker's record replaces this.
    api.runs.put(
        key,
        msgspec.structs.replace(
            run,
            state="RUN_CANCELED" if cancel else "RUN_SUCCESS",
            completed_at=now,
            response=None if cancel else response,
            updated_at=now,
        ),
    )


@dataclass(frozen=True, slots=True)
class ReviveOptions:
    """The optional headers of ``dlq.resume`` / ``dlq.restart`` (workflow-api.md §4): the
    revived run's retries and flow control; None keeps the run's own."""

    max_retries: int | None = None
    flow_control: FlowControl | None = None


def revive_options(view: HeaderView) -> ReviveOptions:
    """The call's ``Upstash-Retries`` and ``Upstash-Flow-Control-Key/Value``; 400 if malformed."""
    retries: int | None = None
    if (raw := view.get(h.RETRIES)) is not None:
        text = raw.strip()
        if not (text.isascii() and text.isdigit()) or int(text) > MAX_RETRIES:
            raise ApiError(f"invalid Upstash-Retries header: must be 0..{MAX_RETRIES}")
        retries = int(text)
    flow_control = parse_flow_control(view.get(h.FLOW_CONTROL_KEY), view.get(h.FLOW_CONTROL_VALUE))
    return ReviveOptions(max_retries=retries, flow_control=flow_control)


def _revived(
    entry: DlqEntry, *, restart: bool, now: int, options: ReviveOptions = ReviveOptions()
) -> ReviveRun:
    """The command that makes a failed run go on from its dead letter ``entry``, with the
    call's ``options``."""
    m = entry.message
    assert m.workflow is not None
    message = msgspec.structs.replace(
        m,
        message_id=ids.message_id(),
        created_at=now,
        not_before=now,
        max_retries=m.max_retries if options.max_retries is None else options.max_retries,
        flow_control=options.flow_control or m.flow_control,
    )
    if restart:
        history = json.loads(m.body)  # the failed delivery's history: element 0 is the payload
        payload = base64.b64decode(history[0]["body"]) if history else b""
        tag = msgspec.structs.replace(m.workflow, init=True, call_type="step")
        message = msgspec.structs.replace(message, body=payload, workflow=tag)
    return ReviveRun(
        user_id=m.user_id,
        run_id=m.workflow.run_id,
        restart=restart,
        failed_id=m.message_id,
        message=message,
        at=now,
        max_retries=options.max_retries,
        flow_control=options.flow_control,
    )


def failure_callback_again(entry: DlqEntry, *, now: int) -> PublishRequest:
    """The failure callback of the run that dead-lettered as ``entry``, sent once more.

    The body is the one the sender built when the run failed (the last attempt's answer, the
    run's payload as ``sourceBody``, ``dlqId``); the message id is new, so dedup does not take
    it for the first one, and each call sends exactly one.
    """
    m = entry.message
    assert m.failure_callback is not None
    due = DeliveryDue(message=m, retried=entry.retried, due=entry.failed_at)
    body = callback_body(
        due,
        status=entry.response_status,
        response_headers=entry.response_header,
        response_body=entry.response_body,
        error=entry.error,
        dlq_id=entry.dlq_id,
    )
    req = callback_request(
        m,
        kind="failure-callback",
        retried=entry.retried,
        url=m.failure_callback,
        options=m.failure_callback_options,
        body=body,
        now_ms=now,
    )
    fresh = ids.message_id()
    return msgspec.structs.replace(
        req,
        request_id="req_" + fresh[len("msg_") :],
        message=msgspec.structs.replace(req.message, message_id=fresh),
        dedup_key=None,
    )


def routes(api: ApiContext) -> list[Route]:  # noqa: PLR0915 - one closure per route
    def user_run(user: User, run_id: str) -> RunState | None:
        assert api.runs is not None
        return api.runs.get(run_key(user.user_id, run_id))

    async def get_run(request: Request) -> Response:
        user = api.user(request)
        run = user_run(user, request.path_params["run_id"])
        if run is None or run.state != ACTIVE:
            # The JS SDK's lazy fetch reads 404 as "the run has ended" (workflow-api.md §4).
            raise NotFound("workflow run not found or not active")
        return JSONResponse(history_json(run))

    async def end_run(request: Request) -> Response:
        user = api.user(request)
        raw = request.query_params.get("cancel", "false").strip().lower()
        if raw not in ("true", "false"):
            raise ApiError("invalid cancel: use true or false")
        body = await api.read_body(request)
        run = user_run(user, request.path_params["run_id"])
        if run is None:
            raise NotFound("workflow run not found")
        if run.state == ACTIVE:
            text = body.decode("utf-8", errors="replace")
            await _end(api, run, cancel=raw == "true", response=text)
        return JSONResponse({"cancelled": 1 if raw == "true" else 0})

    async def cancel_runs(request: Request) -> Response:
        user = api.user(request)
        q = workflow_query.parse(CANCEL_RUNS, request.query_params.multi_items())
        filter_fields.decode_ids_body(CANCEL_RUNS, await api.read_body(request))
        active = sorted(
            (r for r in _runs(api, user) if r.state == ACTIVE and workflow_query.matches(r, q)),
            key=lambda r: (r.created_at, r.run_id),
        )
        chosen = active if q.count is None else active[: q.count]
        for run in chosen:
            await _end(api, run, cancel=True, response=None)
        return JSONResponse({"cancelled": len(chosen)})

    async def logs(request: Request) -> Response:
        user = api.user(request)
        q = workflow_query.parse(WORKFLOW_LOGS, request.query_params.multi_items())
        count = q.count or 10
        found = sorted(
            (r for r in _runs(api, user) if workflow_query.matches(r, q)),
            key=lambda r: (r.created_at, r.run_id),
            reverse=True,  # newest first, as QStash's logs
        )
        if q.cursor is not None:
            found = [r for r in found if (r.created_at, r.run_id) < q.cursor]
        page = found[:count]
        cursor = f"{page[-1].created_at}_{page[-1].run_id}" if len(found) > count else ""
        return JSONResponse({"cursor": cursor, "runs": [run_log(r) for r in page]})

    async def dead_letters(request: Request, user: User) -> tuple[list[DlqEntry], str | None]:
        """The workflow dead letters a bulk call means, and the next page's cursor; the query
        and the body are both checked before anything is read (a body naming ids is taken
        as those ids only, never as "no filter")."""
        pairs = request.query_params.multi_items()
        q = parse_query(pairs, WORKFLOW_DLQ)
        ids_ = filter_fields.decode_ids_body(WORKFLOW_DLQ, await api.read_body(request))
        if ids_ is not None:
            q = DlqQuery(dlq_ids=frozenset(ids_), count=q.count)
        assert api.dlq is not None
        entries = (e for _, e in api.dlq.scan(dlq_key(user.user_id, "")))
        workflow_entries = (e for e in entries if e.message.workflow is not None)
        page, cursor = select(workflow_entries, q, failure_lookup(api))
        return page, cursor

    def with_cursor(out: dict[str, Any], cursor: str | None) -> JSONResponse:
        if cursor is not None:
            out["cursor"] = cursor  # more remain: the SDK's loop calls again with it
        return JSONResponse(out)

    async def revive(request: Request) -> Response:
        user = api.user(request)
        assert api.log is not None
        assert api.dlq is not None
        restart = request.url.path.endswith("/restart")
        options = revive_options(HeaderView(request.headers.items()))
        entries, cursor = await dead_letters(request, user)
        now = api.now_ms()
        out = []
        for entry in entries:
            cmd = _revived(entry, restart=restart, now=now, options=options)
            key = run_key(user.user_id, cmd.run_id)
            tomb = dlq_key(user.user_id, entry.dlq_id)
            try:
                await api.log.append_many(
                    [
                        (api.config.topics.requests, key.encode(), codec.encode(cmd)),
                        (api.config.topics.dlq, tomb.encode(), None),
                    ]
                )
            except LogUnavailable as exc:
                raise Unavailable("Kafka is unavailable; retry") from exc
            api.dlq.drop(tomb)
            tag = entry.message.workflow
            assert tag is not None
            created = now if restart else (tag.created_at or entry.message.created_at)
            out.append({"workflowRunId": cmd.run_id, "workflowCreatedAt": created})
        return with_cursor({"workflowRuns": out}, cursor)

    async def delete_dead_letters(request: Request) -> Response:
        user = api.user(request)
        assert api.log is not None
        assert api.dlq is not None
        entries, cursor = await dead_letters(request, user)
        keys = [dlq_key(user.user_id, e.dlq_id) for e in entries]
        if keys:
            try:
                await api.log.append_many([(api.config.topics.dlq, k.encode(), None) for k in keys])
            except LogUnavailable as exc:
                raise Unavailable("Kafka is unavailable; retry") from exc
            for k in keys:
                api.dlq.drop(k)
        return with_cursor({"deleted": len(keys)}, cursor)

    async def retry_failure_function(request: Request) -> Response:
        """The JS SDK's ``dlq.retryFailureFunction({dlqId})``: the run's failure callback is
        sent again; the run stays failed and its dead letter stays (resume/restart take it)."""
        user = api.user(request)
        filter_fields.checked(filter_fields.NO_QUERY, request.query_params.multi_items())
        filter_fields.decode_ids_body(filter_fields.NO_QUERY, await api.read_body(request))
        assert api.dlq is not None
        dlq_id = request.path_params["dlq_id"]
        entry = api.dlq.get(dlq_key(user.user_id, dlq_id))
        tag = entry.message.workflow if entry is not None else None
        if entry is None or tag is None:
            raise NotFound(f"workflow dlq message {dlq_id!r} not found")
        if entry.message.failure_callback is None:
            raise ApiError(f"workflow run {tag.run_id} has no failure function or failure URL")
        await api.submit([failure_callback_again(entry, now=api.now_ms())])
        created = tag.created_at or entry.message.created_at
        return JSONResponse({"workflowRunId": tag.run_id, "workflowCreatedAt": created})

    return [
        Route("/v2/workflows/dlq/resume", revive, methods=["POST"]),
        Route("/v2/workflows/dlq/restart", revive, methods=["POST"]),
        Route("/v2/workflows/dlq/callback/{dlq_id}", retry_failure_function, methods=["POST"]),
        Route("/v2/workflows/dlq", delete_dead_letters, methods=["DELETE"]),
        Route("/v2/workflows/runs/{run_id}", get_run, methods=["GET"]),
        Route("/v2/workflows/runs/{run_id}", end_run, methods=["DELETE"]),
        Route("/v2/workflows/runs", cancel_runs, methods=["DELETE"]),
        Route("/v2/workflows/events", logs, methods=["GET"]),
        Route("/v2/workflows/logs", logs, methods=["GET"]),
    ]
