"""The Starlette application: routes of the QStash v2 API over the Kafka adapter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kafstash.producers.api import (
    cancel,
    collector,
    console,
    dlq,
    events,
    flow_control,
    groups,
    hooks,
    keys,
    metrics,
    openapi,
    queues,
    schedules,
    waiters,
    workflows,
)
from kafstash.producers.api.context import ApiConfig, ApiContext, results_json
from kafstash.producers.api.errors import (
    ApiError,
    NotFound,
    Unavailable,
    error_response,
    handle_api_error,
)
from kafstash.producers.api.fanout import for_target
from kafstash.producers.api.gates import cancel_records, open_gate_state_view, with_queue
from kafstash.producers.api.limits import HeaderLimits, header_pairs_problem
from kafstash.producers.api.publish import HeaderView, build_request
from kafstash.producers.api.publish_route import PublishRoute
from kafstash.producers.api.schedule_view import (
    ScheduleView,
    event_message_state,
    pending_message_state,
)
from kafstash.producers.api.views import message_json
from kafstash.producers.events_view import EventsView
from kafstash.producers.kafka_log import DecisionWaiter, KafkaLog, LogUnavailable, MessagesView
from kafstash.schemas import codec
from kafstash.schemas.commands import PublishRequest
from kafstash.schemas.defaults import MAX_BATCH_ITEMS
from kafstash.schemas.keys import SigningKeys, rotate
from kafstash.schemas.users import User

log = logging.getLogger(__name__)


class _BatchItem(msgspec.Struct):
    destination: str
    headers: dict[str, str] | None = None
    # The JS Workflow SDK's context.call puts a JSON object or array here as is (not a string);
    # it is the call's body, JSON-encoded.
    body: str | dict[str, Any] | list[Any] | int | float | bool | None = None
    queue: str | None = None

    def body_bytes(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, str):
            return self.body.encode()
        return msgspec.json.encode(self.body)


_batch_decoder = msgspec.json.Decoder(list[_BatchItem])


class Api(ApiContext):
    """The app's own routes, and the lifespan that opens the Kafka pieces the routes read."""

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        cfg = self.config
        log_ = KafkaLog(cfg.bootstrap, timeout_s=cfg.produce_timeout_s)
        waiter = DecisionWaiter(cfg.bootstrap, cfg.topics.decisions)
        view = MessagesView(cfg.bootstrap, cfg.topics.messages)
        group_view = groups.open_view(cfg.bootstrap, cfg.topics.state)
        dlq_view = dlq.open_view(cfg.bootstrap, cfg.topics.dlq)
        events_view = EventsView(
            cfg.bootstrap, cfg.topics.events, retention_ms=cfg.events_retention_ms, clock=self.clock
        )
        key_view = keys.open_view(cfg.bootstrap, cfg.topics.keys)
        schedule_view = ScheduleView(cfg.bootstrap, cfg.topics.state)
        gate_view = open_gate_state_view(cfg.bootstrap, cfg.topics.state)
        runs_view = workflows.open_view(cfg.bootstrap, cfg.topics.state)
        waiters_view = waiters.open_view(cfg.bootstrap, cfg.topics.state)
        async with contextlib.AsyncExitStack() as stack:
            # Each view reads its topic up to the end before the API may answer; reading them
            # one after another made every start (and every restart after a crash) wait for
            # the sum of those catch-ups.
            await _enter_all(
                stack,
                log_,
                waiter,
                view,
                group_view,
                dlq_view,
                events_view,
                key_view,
                schedule_view,
                gate_view,
                runs_view,
                waiters_view,
            )
            self.log, self.waiter, self.view = log_, waiter, view
            self.groups, self.dlq, self.events_view = group_view, dlq_view, events_view
            self.key_view, self.schedules, self.gate_state = key_view, schedule_view, gate_view
            self.runs, self.waiter_rows = runs_view, waiters_view
            self.message_state = event_message_state(
                events_view.latest_state, pending_message_state(view)
            )
            metrics.watch_dlq(dlq_view.count)
            stack.enter_context(collector.PauseWatch())
            frozen = collector.settle()  # the views are loaded: keep full collections off them
            await stack.enter_async_context(collector.Refreeze())  # and what they add later
            log.info("api ready (%d objects frozen out of garbage collection)", frozen)
            yield

    # -- routes ------------------------------------------------------------------------------

    async def publish(self, request: Request) -> Response:
        user = self.user(request)
        to_group, reqs = await self.requests_for(request, user, "/v2/publish/")
        return self.accepted(to_group, reqs, await self.submit(reqs))

    async def batch(self, request: Request) -> Response:
        user = self.user(request)
        # A batch carries up to MAX_BATCH_ITEMS bodies; JSON string escaping can double them.
        raw = await self.read_body(request, limit=self.config.limits.max_body_bytes * 4)
        try:
            items = _batch_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ApiError(f"invalid batch request: {exc}") from None
        if not items:
            raise ApiError("invalid batch request: empty array")
        if len(items) > MAX_BATCH_ITEMS:
            raise ApiError(f"invalid batch request: at most {MAX_BATCH_ITEMS} messages")
        now = self.now_ms()
        requests: list[PublishRequest] = []
        spans: list[tuple[int, int, bool]] = []  # per item: its requests, and "is a group"
        for i, item in enumerate(items):
            try:
                if problem := header_pairs_problem((item.headers or {}).items()):
                    raise ApiError(problem)
                targets = await self.targets(user, item.destination)
                start = len(requests)
                for t in targets:
                    requests.append(
                        for_target(
                            build_request(
                                user=user,
                                url=t.url,
                                view=HeaderView((item.headers or {}).items()),
                                body=item.body_bytes(),
                                now_ms=now,
                                limits=self.config.limits,
                                caller_ip=request.client.host if request.client else None,
                            ),
                            t,
                        )
                    )
                if item.queue:
                    for j in range(start, len(requests)):
                        requests[j] = with_queue(requests[j], item.queue)
                await self.check_callbacks(requests[start].message)
                spans.append((start, len(requests), targets[0].topic_name is not None))
            except ApiError as exc:
                exc.args = (f"batch item {i}: {exc}",)
                raise
        results = await self.submit(requests)
        out: list[Any] = []
        for start, end, is_group in spans:
            entries = results_json(requests[start:end], results[start:end])
            # A URL-group item answers with a nested array (qstash-api.md §3.3).
            out.append(entries if is_group else entries[0])
        return JSONResponse(out, status_code=201)

    async def get_message(self, request: Request) -> Response:
        user = self.user(request)
        assert self.view
        message = self.view.get(request.path_params["message_id"])
        if message is None or message.user_id != user.user_id:
            raise NotFound("message not found")
        return JSONResponse(message_json(message))  # the view holds the redacted copy

    async def _cancel_one(self, user: User, message_id: str) -> bool:
        """Cancel one pending message of ``user``; False when there is none with that id."""
        assert self.view
        assert self.log
        message = self.view.get(message_id)
        if message is None or message.user_id != user.user_id:
            return False
        try:
            # Also withdraws a queued / flow-controlled message from its gates.
            await self.log.append_many(cancel_records(self.config.topics, message, self.now_ms()))
        except LogUnavailable as exc:
            raise Unavailable("Kafka is unavailable; retry the cancel") from exc
        self.view.forget(message_id)
        return True

    async def cancel_message(self, request: Request) -> Response:
        user = self.user(request)
        if not await self._cancel_one(user, request.path_params["message_id"]):
            raise NotFound("message not found")
        return JSONResponse({"cancelled": 1})

    async def cancel_messages(self, request: Request) -> Response:
        user = self.user(request)
        assert self.view
        selection = cancel.parse_selection(request.query_params, await self.read_body(request))
        if selection.message_ids is not None:
            found = (self.view.get(i) for i in selection.message_ids)
            pending = [m for m in found if m is not None and m.user_id == user.user_id]
        else:
            pending = self.view.pending(user.user_id)
        targets = cancel.select(selection, pending)
        done = 0
        for start in range(0, len(targets), 100):  # bounded concurrency of appends
            chunk = targets[start : start + 100]
            results = await asyncio.gather(*(self._cancel_one(user, m.message_id) for m in chunk))
            done += sum(results)
        return JSONResponse({"cancelled": done})

    async def list_events(self, request: Request) -> Response:
        user = self.user(request)
        assert self.events_view
        key = "logs" if request.url.path.endswith("/logs") else "events"
        body = await events.answer(
            self.events_view.store,
            self.config.history,
            user.user_id,
            request.query_params,
            key,
            horizon_ms=self.now_ms() - self.config.events_retention_ms,
        )
        return JSONResponse(body)

    async def keys(self, request: Request) -> Response:
        user = self.user(request)
        return JSONResponse(keys.keys_json(keys.keys_of(self.key_view, user)))

    async def rotate_keys(self, request: Request) -> Response:
        user = self.user(request)
        assert self.key_view
        assert self.log
        rotated: SigningKeys = rotate(keys.keys_of(self.key_view, user), now_ms=self.now_ms())
        try:
            await self.log.append_many(
                [(self.config.topics.keys, user.user_id.encode(), codec.encode(rotated))]
            )
        except LogUnavailable as exc:
            raise Unavailable("Kafka is unavailable; the keys were not rotated, retry") from exc
        self.key_view.put(user.user_id, rotated)
        return JSONResponse(keys.keys_json(rotated))

    async def health(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def openapi(self, _request: Request) -> Response:
        return Response(openapi.document_json(), media_type="application/json")


async def _enter_all(stack: contextlib.AsyncExitStack, *managers: Any) -> None:
    """Enter async context managers concurrently; each entered one is exited by ``stack``."""
    results = await asyncio.gather(*(m.__aenter__() for m in managers), return_exceptions=True)
    for manager, result in zip(managers, results, strict=True):
        if not isinstance(result, BaseException):
            stack.push_async_exit(manager)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, str(exc.detail).lower(), headers)


async def _internal_error(_request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal server error")


def create_app(config: ApiConfig, clock: Callable[[], float] = time.time) -> Starlette:
    api = Api(config, clock)
    publish = Route("/v2/publish/{destination:path}", api.publish, methods=["POST"])
    routes = [
        publish,
        Route("/v2/batch", api.batch, methods=["POST"]),
        Route("/v2/messages/{message_id}", api.get_message, methods=["GET"]),
        Route("/v2/messages/{message_id}", api.cancel_message, methods=["DELETE"]),
        Route("/v2/keys", api.keys, methods=["GET"]),
        Route("/v2/messages", api.cancel_messages, methods=["DELETE"]),
        Route("/v2/events", api.list_events, methods=["GET"]),
        Route("/v2/logs", api.list_events, methods=["GET"]),
        Route("/v2/keys/rotate", api.rotate_keys, methods=["POST"]),
        Route("/healthz", api.health, methods=["GET"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
        *groups.routes(api),
        *dlq.routes(api),
        *schedules.routes(api),
        *queues.routes(api),
        *flow_control.routes(api),
        *workflows.routes(api),
        *waiters.routes(api),
        *hooks.routes(api),
        *console.routes(),
    ]
    return Starlette(
        routes=routes,
        lifespan=api.lifespan,
        middleware=[
            Middleware(metrics.RequestMetrics),
            Middleware(HeaderLimits),
            # Publishes are answered here, past the limits and inside the metrics; the route
            # above serves the few it passes on (a token in the query string).
            Middleware(PublishRoute, api=api, route=publish),
        ],
        exception_handlers={
            ApiError: handle_api_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )
