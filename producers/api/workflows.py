"""``/v2/workflows/...``: the Upstash Workflow runs the stream workers keep (workflow-api.md §4).

Runs are read from the ``state`` topic (``wf/<user>/<run id>``, written by the run's stream
worker); ending or cancelling one appends an EndRun command under the run's key, so it meets
the run's row after every step published before it.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlsplit

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kafstash.producers.api import filter_fields
from kafstash.producers.api.context import ApiContext
from kafstash.producers.api.dlq_query import parse_query, select
from kafstash.producers.api.errors import ApiError, NotFound, Unavailable
from kafstash.producers.api.filter_fields import CountRule, FieldSpec
from kafstash.producers.kafka_log import LogUnavailable
from kafstash.schemas import codec, ids
from kafstash.schemas.dlq import DlqEntry, dlq_key
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

_RUN_FILTERS = frozenset(
    {
        "workflowRunIds",
        "workflowUrl",
        "workflowUrlExactMatch",
        "label",
        "fromDate",
        "toDate",
        "callerIp",
        "host",
        "path",
    }
)
CANCEL_RUNS = FieldSpec(query=_RUN_FILTERS | {"count"}, count=CountRule(default=None, maximum=1000))
LOGS = FieldSpec(
    query=(_RUN_FILTERS - {"workflowRunIds"})
    | {"workflowRunId", "state", "messageId", "workflowCreatedAt", "groupBy", "cursor", "count"},
    count=CountRule(default=10, maximum=1000, clamp=True),
)
_STATES = frozenset({"RUN_STARTED", "RUN_SUCCESS", "RUN_FAILED", "RUN_CANCELED"})


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
    return out


# -- selection ---------------------------------------------------------------------------------


def _values(pairs: list[tuple[str, str]], key: str) -> list[str]:
    return [v.strip() for k, v in pairs if k == key and v.strip()]


def _int(pairs: list[tuple[str, str]], key: str) -> int | None:
    values = _values(pairs, key)
    if not values:
        return None
    if not values[0].isascii() or not values[0].isdigit():
        raise ApiError(f"invalid {key}: {values[0]!r} is not a Unix time in milliseconds")
    return int(values[0])


def _matches(run: RunState, pairs: list[tuple[str, str]]) -> bool:  # noqa: PLR0911 - one per filter
    ids = _values(pairs, "workflowRunIds") + _values(pairs, "workflowRunId")
    if ids and run.run_id not in ids:
        return False
    states = _values(pairs, "state")
    if states and run.state not in states:
        return False
    for url in _values(pairs, "workflowUrl"):
        exact = _values(pairs, "workflowUrlExactMatch") == ["true"]
        if (run.url != url) if exact else not run.url.startswith(url):
            return False
    labels = _values(pairs, "label")
    if labels and not set(labels) & set(run.labels):
        return False
    low, high = _int(pairs, "fromDate"), _int(pairs, "toDate")
    if (low is not None and run.created_at < low) or (high is not None and run.created_at > high):
        return False
    created = _int(pairs, "workflowCreatedAt")
    if created is not None and run.created_at != created:
        return False
    callers = _values(pairs, "callerIp")
    if callers and run.caller_ip not in callers:
        return False
    parts = urlsplit(run.url)
    hosts, paths = _values(pairs, "host"), _values(pairs, "path")
    if (hosts and parts.hostname not in hosts) or (paths and parts.path not in paths):
        return False
    message_ids = _values(pairs, "messageId")
    return not message_ids or any(e.message_id in message_ids for e in run.history)


def _runs(api: ApiContext, user: User) -> list[RunState]:
    view = api.runs
    assert view is not None
    return [r for _, r in view.scan(run_key(user.user_id, ""))]


def _check_states(pairs: list[tuple[str, str]]) -> None:
    for state in _values(pairs, "state"):
        if state not in _STATES:
            raise ApiError(f"invalid state: {state!r} is not one of " + ", ".join(sorted(_STATES)))


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


def _revived(entry: DlqEntry, *, restart: bool, now: int) -> ReviveRun:
    """The command that makes a failed run go on from its dead letter ``entry``."""
    m = entry.message
    assert m.workflow is not None
    message = msgspec.structs.replace(
        m, message_id=ids.message_id(), created_at=now, not_before=now
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
        pairs = request.query_params.multi_items()
        count = filter_fields.checked(CANCEL_RUNS, pairs)
        if (await api.read_body(request)).strip():
            raise ApiError("invalid request body: this endpoint takes its filters in the query")
        active = sorted(
            (r for r in _runs(api, user) if r.state == ACTIVE and _matches(r, pairs)),
            key=lambda r: (r.created_at, r.run_id),
        )
        chosen = active if count is None else active[:count]
        for run in chosen:
            await _end(api, run, cancel=True, response=None)
        return JSONResponse({"cancelled": len(chosen)})

    async def logs(request: Request) -> Response:
        user = api.user(request)
        pairs = request.query_params.multi_items()
        count = filter_fields.checked(LOGS, pairs) or 10
        _check_states(pairs)
        found = sorted(
            (r for r in _runs(api, user) if _matches(r, pairs)),
            key=lambda r: (r.created_at, r.run_id),
            reverse=True,  # newest first, as QStash's logs
        )
        cursors = _values(pairs, "cursor")
        if cursors:
            at, _, rid = cursors[0].partition("_")
            if not (at.isdigit() and rid):
                raise ApiError("invalid cursor")
            found = [r for r in found if (r.created_at, r.run_id) < (int(at), rid)]
        page = found[:count]
        cursor = f"{page[-1].created_at}_{page[-1].run_id}" if len(found) > count else ""
        return JSONResponse({"cursor": cursor, "runs": [run_log(r) for r in page]})

    def dead_letters(user: User, pairs: list[tuple[str, str]]) -> list[DlqEntry]:
        q = parse_query([*pairs, ("source", "workflow")])
        assert api.dlq is not None
        entries = (e for _, e in api.dlq.scan(dlq_key(user.user_id, "")))
        return [e for e in select(entries, q)[0] if e.message.workflow is not None]

    async def revive(request: Request) -> Response:
        user = api.user(request)
        assert api.log is not None
        assert api.dlq is not None
        restart = request.url.path.endswith("/restart")
        entries = dead_letters(user, request.query_params.multi_items())
        now = api.now_ms()
        out = []
        for entry in entries:
            cmd = _revived(entry, restart=restart, now=now)
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
        return JSONResponse({"workflowRuns": out})

    async def delete_dead_letters(request: Request) -> Response:
        user = api.user(request)
        assert api.log is not None
        assert api.dlq is not None
        entries = dead_letters(user, request.query_params.multi_items())
        keys = [dlq_key(user.user_id, e.dlq_id) for e in entries]
        if keys:
            try:
                await api.log.append_many([(api.config.topics.dlq, k.encode(), None) for k in keys])
            except LogUnavailable as exc:
                raise Unavailable("Kafka is unavailable; retry") from exc
            for k in keys:
                api.dlq.drop(k)
        return JSONResponse({"deleted": len(keys)})

    return [
        Route("/v2/workflows/dlq/resume", revive, methods=["POST"]),
        Route("/v2/workflows/dlq/restart", revive, methods=["POST"]),
        Route("/v2/workflows/dlq", delete_dead_letters, methods=["DELETE"]),
        Route("/v2/workflows/runs/{run_id}", get_run, methods=["GET"]),
        Route("/v2/workflows/runs/{run_id}", end_run, methods=["DELETE"]),
        Route("/v2/workflows/runs", cancel_runs, methods=["DELETE"]),
        Route("/v2/workflows/events", logs, methods=["GET"]),
        Route("/v2/workflows/logs", logs, methods=["GET"]),
    ]
