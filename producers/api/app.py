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

from producers.api import destination, flow_control, queues
from producers.api.auth import Authenticator
from producers.api.errors import (
    ApiError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    error_response,
    handle_api_error,
)
from producers.api.gates import (
    GateStateView,
    cancel_records,
    remember_gates,
    request_key,
    with_queue,
)
from producers.api.limits import HeaderLimits, header_pairs_problem
from producers.api.publish import HeaderView, PublishLimits, build_request
from producers.api.ratelimit import RateLimiter
from producers.api.views import message_json
from producers.kafka_log import DecisionWaiter, KafkaLog, LogUnavailable, MessagesView
from schemas import codec
from schemas.addresses import Allowlist
from schemas.commands import PublishRequest
from schemas.defaults import MAX_BATCH_ITEMS
from schemas.topics import Topics
from schemas.users import User

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
        self.gate_state: GateStateView | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        cfg = self.config
        async with contextlib.AsyncExitStack() as stack:
            self.log = await stack.enter_async_context(
                KafkaLog(cfg.bootstrap, timeout_s=cfg.produce_timeout_s)
            )
            self.waiter = await stack.enter_async_context(
                DecisionWaiter(cfg.bootstrap, cfg.topics.decisions)
            )
            self.view = await stack.enter_async_context(
                MessagesView(cfg.bootstrap, cfg.topics.messages)
            )
            self.gate_state = await stack.enter_async_context(
                GateStateView(cfg.bootstrap, cfg.topics.state)
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
                self.view.remember(r.message)
        assert self.gate_state
        remember_gates(self.gate_state, [r.message for r in requests], self._now_ms())
        return results

    # -- routes ------------------------------------------------------------------------------

    async def publish(self, request: Request) -> Response:
        user = self._user(request)
        dest = destination.rebuild(
            request.scope.get("raw_path") or request.scope["path"].encode(),
            "/v2/publish/",
            request.scope.get("query_string", b""),
        )
        url = await self._check_destination(dest)
        body = await self._body(request)
        req = build_request(
            user=user,
            url=url,
            view=HeaderView(request.headers.items()),
            body=body,
            now_ms=self._now_ms(),
            limits=self.config.limits,
            caller_ip=request.client.host if request.client else None,
        )
        [(message_id, dedup)] = await self._submit([req])
        out: dict[str, Any] = {"messageId": message_id, "url": url}
        if dedup:
            out["deduplicated"] = True
        return JSONResponse(out, status_code=202 if dedup else 201)

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
        for i, item in enumerate(items):
            try:
                if problem := header_pairs_problem((item.headers or {}).items()):
                    raise ApiError(problem)
                url = await self._check_destination(item.destination)
                requests.append(
                    build_request(
                        user=user,
                        url=url,
                        view=HeaderView((item.headers or {}).items()),
                        body=(item.body or "").encode(),
                        now_ms=now,
                        limits=self.config.limits,
                        caller_ip=request.client.host if request.client else None,
                    )
                )
                if item.queue:
                    requests[-1] = with_queue(requests[-1], item.queue)
            except ApiError as exc:
                exc.args = (f"batch item {i}: {exc}",)
                raise
        results = await self._submit(requests)
        out = []
        for r, (mid, dedup) in zip(requests, results, strict=True):
            entry: dict[str, Any] = {"messageId": mid, "url": r.message.url}
            if dedup:
                entry["deduplicated"] = True
            out.append(entry)
        return JSONResponse(out, status_code=201)

    async def get_message(self, request: Request) -> Response:
        user = self._user(request)
        assert self.view
        message = self.view.get(request.path_params["message_id"])
        if message is None or message.user_id != user.user_id:
            raise NotFound("message not found")
        return JSONResponse(message_json(message))

    async def cancel_message(self, request: Request) -> Response:
        user = self._user(request)
        assert self.view
        assert self.log
        message_id = request.path_params["message_id"]
        message = self.view.get(message_id)
        if message is None or message.user_id != user.user_id:
            raise NotFound("message not found")
        try:
            # Also withdraws a queued / flow-controlled message from its gates.
            await self.log.append_many(cancel_records(self.config.topics, message, self._now_ms()))
        except LogUnavailable as exc:
            raise Unavailable("Kafka is unavailable; retry the cancel") from exc
        self.view.forget(message_id)
        return JSONResponse({"cancelled": 1})

    async def keys(self, request: Request) -> Response:
        user = self._user(request)
        return JSONResponse({"current": user.current_signing_key, "next": user.next_signing_key})

    async def health(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    # Public names for the route modules (queues.py, flow_control.py, ...).
    user = _user
    now_ms = _now_ms
    read_body = _body
    check_destination = _check_destination
    submit = _submit


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
        Route("/healthz", api.health, methods=["GET"]),
        *queues.routes(api),
        *flow_control.routes(api),
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
