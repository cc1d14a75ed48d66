"""The Starlette application: routes of the QStash v2 API over the Kafka adapter."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
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
    console,
    destination,
    dlq,
    events,
    flow_control,
    groups,
    keys,
    openapi,
    queues,
    schedules,
)
from kafstash.producers.api.auth import Authenticator
from kafstash.producers.api.errors import (
    ApiError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    error_response,
    handle_api_error,
)
from kafstash.producers.api.gates import (
    GateStateView,
    cancel_records,
    remember_gates,
    request_key,
    with_queue,
)
from kafstash.producers.api.limits import HeaderLimits, header_pairs_problem
from kafstash.producers.api.publish import HeaderView, PublishLimits, build_request
from kafstash.producers.api.ratelimit import RateLimiter
from kafstash.producers.api.schedule_view import (
    MessageStateFn,
    ScheduleView,
    event_message_state,
    pending_message_state,
)
from kafstash.producers.api.views import message_json
from kafstash.producers.events_view import EventsView
from kafstash.producers.kafka_log import (
    CompactedView,
    DecisionWaiter,
    KafkaLog,
    LogUnavailable,
    MessagesView,
)
from kafstash.schemas import codec
from kafstash.schemas.addresses import Allowlist
from kafstash.schemas.commands import PublishRequest
from kafstash.schemas.defaults import EVENTS_RETENTION_MS, MAX_BATCH_ITEMS
from kafstash.schemas.dlq import DlqEntry
from kafstash.schemas.groups import UrlGroup
from kafstash.schemas.history import EventHistory
from kafstash.schemas.keys import SigningKeys, rotate
from kafstash.schemas.message import Message
from kafstash.schemas.redact import redacted
from kafstash.schemas.topics import Topics
from kafstash.schemas.users import User

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiConfig:
    bootstrap: str
    topics: Topics
    users: tuple[User, ...]
    limits: PublishLimits
    allow_private_destinations: bool
    produce_timeout_s: float = 8.0
    decision_timeout_s: float = 10.0
    destination_allowlist: Allowlist = field(default_factory=Allowlist)
    rate_limit: float = 0.0  # requests per second per token; 0 = no limit
    rate_burst: int = 1
    events_retention_ms: int = EVENTS_RETENTION_MS  # how far back the in-memory view reaches
    history: EventHistory | None = None  # older events (the Iceberg delivery log), if any


class _BatchItem(msgspec.Struct):
    destination: str
    headers: dict[str, str] | None = None
    body: str | None = None
    queue: str | None = None


_batch_decoder = msgspec.json.Decoder(list[_BatchItem])


class Api:
    """Handlers; the Kafka pieces are attached by ``lifespan`` once the broker answered."""

    def __init__(self, config: ApiConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.auth = Authenticator(config.users)
        self.limiter = RateLimiter(config.rate_limit, config.rate_burst)
        self.log: KafkaLog | None = None
        self.waiter: DecisionWaiter | None = None
        self.view: MessagesView | None = None
        self.groups: CompactedView[UrlGroup] | None = None
        self.dlq: CompactedView[DlqEntry] | None = None
        self.events_view: EventsView | None = None
        self.key_view: keys.KeysView | None = None
        self.schedules: ScheduleView | None = None
        # The state of a schedule's last messages; None = derived from the messages view.
        self.message_state: MessageStateFn | None = None
        self.gate_state: GateStateView | None = None

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
        key_view: keys.KeysView = CompactedView(cfg.bootstrap, cfg.topics.keys, keys.decode)
        schedule_view = ScheduleView(cfg.bootstrap, cfg.topics.state)
        gate_view = GateStateView(cfg.bootstrap, cfg.topics.state)
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
            )
            self.log, self.waiter, self.view = log_, waiter, view
            self.groups, self.dlq, self.events_view = group_view, dlq_view, events_view
            self.key_view, self.schedules, self.gate_state = key_view, schedule_view, gate_view
            self.message_state = event_message_state(
                events_view.latest_state, pending_message_state(view)
            )
            log.info("api ready")
            yield

    # -- helpers -----------------------------------------------------------------------------

    def _user(self, request: Request) -> User:
        user = self.auth.user_for(
            request.headers.get("authorization"), request.query_params.get("qstash_token")
        )
        verdict = self.limiter.check(user.user_id, self.clock())
        if verdict is not None and not verdict.allowed:
            raise RateLimited(verdict.headers(), retry_after_s=verdict.reset_at - int(self.clock()))
        return user

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def _body(self, request: Request, limit: int | None = None) -> bytes:
        """The request body, refused with 413 as soon as it passes ``limit`` (never buffered)."""
        limit = self.config.limits.max_body_bytes if limit is None else limit
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"message body is larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"message body is larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _check_destination(self, dest: str) -> str:
        if "://" in dest and not destination.is_url(dest):
            raise ApiError("invalid destination url: endpoint has invalid scheme, use http(s)://")
        if not destination.is_url(dest):
            # URL groups arrive with the QStash v2 surface; until then a name is unknown.
            raise NotFound(f"url group {dest!r} not found")
        check = functools.partial(
            destination.validate_url,
            dest,
            allow_private=self.config.allow_private_destinations,
            allowlist=self.config.destination_allowlist,
        )
        if self.config.allow_private_destinations:
            return check()  # no DNS lookup happens on this path
        # The private-address check resolves the host: blocking DNS must not stall the loop.
        return await asyncio.to_thread(check)

    async def targets(self, user: User, dest: str) -> list[groups.Target]:
        """Where a publish to ``dest`` goes: the URL, or each endpoint of the URL group."""
        return await groups.targets(self, user, dest)

    async def _check_callbacks(self, message: Message) -> None:
        # Callback URLs get the destination's checks (scheme, SSRF) before anything is stored.
        for url in (message.callback, message.failure_callback):
            if url is not None:
                await self._check_destination(url)

    async def _submit(self, requests: list[PublishRequest]) -> list[tuple[str, bool]]:
        assert self.log
        assert self.waiter
        assert self.view
        topic = self.config.topics.requests
        waits = {r.request_id: self.waiter.expect(r.request_id) for r in requests if r.reply}
        records = [(topic, request_key(r).encode(), codec.encode(r)) for r in requests]
        try:
            await self.log.append_many(records)
            results: list[tuple[str, bool]] = []
            for r in requests:
                if not r.reply:
                    results.append((r.message.message_id, False))
                    continue
                async with asyncio.timeout(self.config.decision_timeout_s):
                    decision = await waits[r.request_id]
                results.append((decision.message_id, decision.deduplicated))
        except LogUnavailable as exc:
            log.warning("append failed: %s", exc)
            raise Unavailable("Kafka is unavailable; the message may not be stored, retry") from exc
        except TimeoutError as exc:
            raise Unavailable(
                "accepted, but the deduplication decision did not arrive in time; "
                "retrying with the same deduplication id is safe"
            ) from exc
        finally:
            for fut in waits.values():
                fut.cancel()  # no-op when resolved; otherwise stops tracking the request
        for r, (mid, dedup) in zip(requests, results, strict=True):
            if not dedup and mid == r.message.message_id:
                self.view.remember(redacted(r.message))
        assert self.gate_state
        remember_gates(self.gate_state, [r.message for r in requests], self._now_ms())
        return results

    # -- routes ------------------------------------------------------------------------------

    async def requests_for(
        self, request: Request, user: User, prefix: str
    ) -> tuple[bool, list[PublishRequest]]:
        """The PublishRequests of a publish-shaped request (publish, enqueue): one per target of
        the raw destination after ``prefix``; True when that destination is a URL group."""
        dest = destination.rebuild(
            request.scope.get("raw_path") or request.scope["path"].encode(),
            prefix,
            request.scope.get("query_string", b""),
        )
        targets = await self.targets(user, dest)
        body = await self._body(request)
        now = self._now_ms()
        reqs = [
            groups.for_target(
                build_request(
                    user=user,
                    url=t.url,
                    view=HeaderView(request.headers.items()),
                    body=body,
                    now_ms=now,
                    limits=self.config.limits,
                    caller_ip=request.client.host if request.client else None,
                ),
                t,
            )
            for t in targets
        ]
        await self._check_callbacks(reqs[0].message)  # SSRF rules before anything is stored
        return targets[0].topic_name is not None, reqs

    @staticmethod
    def accepted(
        to_group: bool, reqs: list[PublishRequest], results: list[tuple[str, bool]]
    ) -> Response:
        """QStash's answer: a URL group gets a bare array, one item per endpoint (both SDKs); a
        URL one object, 202 when it was deduplicated."""
        out = _results_json(reqs, results)
        if to_group:
            return JSONResponse(out, status_code=201)
        [(_, dedup)] = results
        return JSONResponse(out[0], status_code=202 if dedup else 201)

    async def publish(self, request: Request) -> Response:
        user = self._user(request)
        to_group, reqs = await self.requests_for(request, user, "/v2/publish/")
        return self.accepted(to_group, reqs, await self._submit(reqs))

    async def batch(self, request: Request) -> Response:
        user = self._user(request)
        # A batch carries up to MAX_BATCH_ITEMS bodies; JSON string escaping can double them.
        raw = await self._body(request, limit=self.config.limits.max_body_bytes * 4)
        try:
            items = _batch_decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ApiError(f"invalid batch request: {exc}") from None
        if not items:
            raise ApiError("invalid batch request: empty array")
        if len(items) > MAX_BATCH_ITEMS:
            raise ApiError(f"invalid batch request: at most {MAX_BATCH_ITEMS} messages")
        now = self._now_ms()
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
                        groups.for_target(
                            build_request(
                                user=user,
                                url=t.url,
                                view=HeaderView((item.headers or {}).items()),
                                body=(item.body or "").encode(),
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
                await self._check_callbacks(requests[start].message)
                spans.append((start, len(requests), targets[0].topic_name is not None))
            except ApiError as exc:
                exc.args = (f"batch item {i}: {exc}",)
                raise
        results = await self._submit(requests)
        out: list[Any] = []
        for start, end, is_group in spans:
            entries = _results_json(requests[start:end], results[start:end])
            # A URL-group item answers with a nested array (qstash-api.md §3.3).
            out.append(entries if is_group else entries[0])
        return JSONResponse(out, status_code=201)

    async def get_message(self, request: Request) -> Response:
        user = self._user(request)
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
            await self.log.append_many(cancel_records(self.config.topics, message, self._now_ms()))
        except LogUnavailable as exc:
            raise Unavailable("Kafka is unavailable; retry the cancel") from exc
        self.view.forget(message_id)
        return True

    async def cancel_message(self, request: Request) -> Response:
        user = self._user(request)
        if not await self._cancel_one(user, request.path_params["message_id"]):
            raise NotFound("message not found")
        return JSONResponse({"cancelled": 1})

    async def cancel_messages(self, request: Request) -> Response:
        user = self._user(request)
        assert self.view
        selection = cancel.parse_selection(request.query_params, await self._body(request))
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
        user = self._user(request)
        assert self.events_view
        key = "logs" if request.url.path.endswith("/logs") else "events"
        body = await events.answer(
            self.events_view.store,
            self.config.history,
            user.user_id,
            request.query_params,
            key,
            horizon_ms=self._now_ms() - self.config.events_retention_ms,
        )
        return JSONResponse(body)

    async def keys(self, request: Request) -> Response:
        user = self._user(request)
        return JSONResponse(keys.keys_json(keys.keys_of(self.key_view, user)))

    async def rotate_keys(self, request: Request) -> Response:
        user = self._user(request)
        assert self.key_view
        assert self.log
        rotated: SigningKeys = rotate(keys.keys_of(self.key_view, user), now_ms=self._now_ms())
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

    # Public names for the route modules (queues.py, flow_control.py, ...).
    user = _user
    now_ms = _now_ms
    read_body = _body
    check_destination = _check_destination
    submit = _submit


async def _enter_all(stack: contextlib.AsyncExitStack, *managers: Any) -> None:
    """Enter async context managers concurrently; each entered one is exited by ``stack``."""
    results = await asyncio.gather(*(m.__aenter__() for m in managers), return_exceptions=True)
    for manager, result in zip(managers, results, strict=True):
        if not isinstance(result, BaseException):
            stack.push_async_exit(manager)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _results_json(
    requests: list[PublishRequest], results: list[tuple[str, bool]]
) -> list[dict[str, Any]]:
    out = []
    for r, (mid, dedup) in zip(requests, results, strict=True):
        entry: dict[str, Any] = {"messageId": mid, "url": r.message.url}
        if dedup:
            entry["deduplicated"] = True
        out.append(entry)
    return out


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, str(exc.detail).lower(), headers)


async def _internal_error(_request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal server error")


def create_app(config: ApiConfig, clock: Callable[[], float] = time.time) -> Starlette:
    api = Api(config, clock)
    routes = [
        Route("/v2/publish/{destination:path}", api.publish, methods=["POST"]),
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
        *console.routes(),
    ]
    return Starlette(
        routes=routes,
        lifespan=api.lifespan,
        middleware=[Middleware(HeaderLimits)],
        exception_handlers={
            ApiError: handle_api_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )
