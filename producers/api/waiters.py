"""``/v2/wait``, ``/v2/notify`` and ``/v2/waiters`` (workflow-api.md §3.4).

A wait is built here into the two step messages it may become (notified, timed out), so the
stream worker that keeps the event's waiters never parses publish headers; a notify waits for
the worker's answer, which lists the waiters it woke and the message each became.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kafstash.producers.api.context import ApiContext
from kafstash.producers.api.errors import ApiError, Unavailable
from kafstash.producers.api.publish import HeaderView, build_request
from kafstash.producers.durations import parse_duration_ms
from kafstash.producers.kafka_log import LogUnavailable
from kafstash.schemas import codec, defaults, ids
from kafstash.schemas.message import Message
from kafstash.schemas.users import User
from kafstash.schemas.waiters import (
    WAITERS_STATE_PREFIX,
    Notified,
    NotifyEvent,
    Waiter,
    WaiterRow,
    WaitFor,
    waiter_key,
    waiters_state_key,
)
from kafstash.schemas.workflow import run_key
from kafstash.views.compacted import CompactedView

_DEFAULT_TIMEOUT = "7d"
_row = msgspec.json.Decoder(WaiterRow)


class _WaitBody(msgspec.Struct, rename="camel"):
    url: str
    step: dict[str, Any]
    timeout: str | int | None = None
    timeout_url: str | None = None
    timeout_headers: dict[str, list[str]] = {}
    timeout_body: str | None = None


_wait_body = msgspec.json.Decoder(_WaitBody)


def _decode(key: str, value: bytes) -> WaiterRow | None:
    if not key.startswith(WAITERS_STATE_PREFIX):
        return None
    try:
        return _row.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def open_view(bootstrap: str, state_topic: str) -> CompactedView[WaiterRow]:
    return CompactedView(bootstrap, state_topic, _decode)


def waiter_json(w: Waiter) -> dict[str, Any]:
    out: dict[str, Any] = {
        "url": w.url,
        "deadline": w.deadline // 1000,  # Unix seconds, as QStash's Waiter
        "headers": w.headers,
        "timeoutHeaders": w.timeout_headers,
    }
    if w.timeout_url is not None:
        out["timeoutUrl"] = w.timeout_url
    return out


def _timeout_ms(raw: str | int | None) -> int:
    text = _DEFAULT_TIMEOUT if raw is None else str(raw)
    try:
        ms = parse_duration_ms(text)
    except ValueError as exc:
        raise ApiError(f"invalid timeout: {exc}") from None
    if not 0 < ms <= defaults.MAX_DELAY_MS:
        raise ApiError("invalid timeout: must be positive and at most the maximum delay")
    return ms


async def _append(api: ApiContext, key: str, record: msgspec.Struct) -> None:
    assert api.log is not None
    try:
        await api.log.append_many(
            [(api.config.topics.requests, key.encode(), codec.encode(record))]
        )
    except LogUnavailable as exc:
        raise Unavailable("Kafka is unavailable; retry") from exc


async def notify_event(api: ApiContext, cmd: NotifyEvent) -> Notified:
    """Append ``cmd`` under its event's waiter key and wait for the worker's answer: the waiters
    it woke (also what ``/v2/workflows/hooks`` notifies with)."""
    assert api.waiter is not None
    answer = api.waiter.expect(cmd.request_id)
    try:
        await _append(api, waiter_key(cmd.user_id, cmd.event_id), cmd)
        async with asyncio.timeout(api.config.decision_timeout_s):
            decision = await answer
    except TimeoutError as exc:
        raise Unavailable("the notify was accepted but its answer did not arrive in time") from exc
    finally:
        answer.cancel()
    assert isinstance(decision, Notified)
    return decision


def routes(api: ApiContext) -> list[Route]:
    def template(user: User, url: str, pairs: list[tuple[str, str]], now: int) -> Message:
        return build_request(
            user=user,
            url=url,
            view=HeaderView(pairs),
            body=b"",
            now_ms=now,
            limits=api.config.limits,
        ).message

    async def wait(request: Request) -> Response:
        user = api.user(request)
        event_id = request.path_params["event_id"]
        try:
            body = _wait_body.decode(await api.read_body(request))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ApiError(f"invalid wait request: {exc}") from None
        now = api.now_ms()
        url = await api.check_destination(body.url)
        notified = template(user, url, list(request.headers.items()), now)
        if notified.workflow is None:
            raise ApiError("a wait needs the Upstash-Workflow-RunId header of its run")
        timeout_url = await api.check_destination(body.timeout_url or url)
        pairs = [(k, v) for k, values in body.timeout_headers.items() for v in values]
        timed_out = template(user, timeout_url, pairs, now)
        if timed_out.workflow is None:
            timed_out = msgspec.structs.replace(timed_out, workflow=notified.workflow)
        step = msgspec.json.encode(body.step)
        run_id = notified.workflow.run_id
        waiter = Waiter(
            waiter_id=ids.derived_message_id(
                "waiter", user.user_id, event_id, run_id, step.decode()
            ),
            run_id=run_id,
            url=url,
            deadline=now + _timeout_ms(body.timeout),
            created_at=now,
            step=step,
            notified=notified,
            timed_out=timed_out,
            headers=notified.header,
            timeout_url=timeout_url,
            timeout_headers=body.timeout_headers,
        )
        cmd = WaitFor(user_id=user.user_id, event_id=event_id, waiter=waiter)
        # Through the run's row first: it notes the event id, so the run's end drops the waiter.
        await _append(api, run_key(user.user_id, run_id), cmd)
        return JSONResponse({})

    async def notify(request: Request) -> Response:
        user = api.user(request)
        event_id = request.path_params["event_id"]
        cmd = NotifyEvent(
            request_id=ids.request_id(),
            user_id=user.user_id,
            event_id=event_id,
            data=await api.read_body(request),
            at=api.now_ms(),
            run_id=request.path_params.get("run_id"),
        )
        decision = await notify_event(api, cmd)
        return JSONResponse(
            [
                {"waiter": waiter_json(n.waiter), "messageId": n.message_id, "error": ""}
                for n in decision.woken
            ]
        )

    async def list_waiters(request: Request) -> Response:
        user = api.user(request)
        assert api.waiter_rows is not None
        row = api.waiter_rows.get(waiters_state_key(user.user_id, request.path_params["event_id"]))
        return JSONResponse([waiter_json(w) for w in (row.waiters if row else [])])

    return [
        Route("/v2/wait/{event_id}", wait, methods=["POST"]),
        Route("/v2/notify/{event_id}", notify, methods=["POST"]),
        Route("/v2/notify/{run_id}/{event_id}", notify, methods=["POST"]),
        Route("/v2/waiters/{event_id}", list_waiters, methods=["GET"]),
    ]
