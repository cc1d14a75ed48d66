"""What every route answers a request with: who is asking, the body, the destination checks, and
the one way a publish-shaped request reaches Kafka.

The route modules (groups, dlq, schedules, queues, flow_control, ...) and the app's own routes
take an :class:`ApiContext`; the app (app.py) is the subclass that opens the Kafka pieces in its
lifespan and wires the routes. Nothing here imports a route module or the app, so the routes
never have to import the app either (import-linter's acyclic contract holds it).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive

from kafstash.producers.api import destination, keys, metrics
from kafstash.producers.api.auth import Authenticator
from kafstash.producers.api.errors import (
    ApiError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
)
from kafstash.producers.api.fanout import Target, for_target
from kafstash.producers.api.gates import GateStateView, remember_gates
from kafstash.producers.api.publish import HeaderView, PublishLimits, build_request
from kafstash.producers.api.ratelimit import RateLimiter
from kafstash.producers.api.schedule_view import MessageStateFn, ScheduleView
from kafstash.producers.events_view import EventsView
from kafstash.producers.kafka_log import DecisionWaiter, KafkaLog, LogUnavailable, MessagesView
from kafstash.schemas import codec
from kafstash.schemas.addresses import Allowlist
from kafstash.schemas.commands import Accepted, PublishRequest
from kafstash.schemas.defaults import EVENTS_RETENTION_MS
from kafstash.schemas.dlq import DlqEntry
from kafstash.schemas.groups import UrlGroup, group_key, valid_name
from kafstash.schemas.history import EventHistory
from kafstash.schemas.message import Message
from kafstash.schemas.redact import redacted
from kafstash.schemas.routing import request_key
from kafstash.schemas.topics import Topics
from kafstash.schemas.users import User
from kafstash.schemas.waiters import WaiterRow
from kafstash.schemas.workflow import ACTIVE, RunState, run_key
from kafstash.views.compacted import CompactedView

log = logging.getLogger(__name__)

# How long a step of a run the runs view calls ended waits for the view to read up to now.
RUN_STATE_SYNC_S = 2.0


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


class ApiContext:
    """The request helpers and the Kafka pieces; those stay None until the lifespan opened them."""

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
        self.runs: CompactedView[RunState] | None = None  # workflow runs (producers/api/workflows)
        self.waiter_rows: CompactedView[WaiterRow] | None = None  # waitForEvent (api/waiters.py)

    def user(self, request: Request) -> User:
        """The authenticated caller, refused with 429 past its rate limit."""
        user = self.auth.user_for(
            request.headers.get("authorization"), request.query_params.get("qstash_token")
        )
        self.within_rate(user)
        return user

    def within_rate(self, user: User) -> None:
        """Refuse with 429 past ``user``'s rate limit (also for the token-less webhook route)."""
        verdict = self.limiter.check(user.user_id, self.clock())
        if verdict is not None and not verdict.allowed:
            raise RateLimited(verdict.headers(), retry_after_s=verdict.reset_at - int(self.clock()))

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def read_body(self, request: Request, limit: int | None = None) -> bytes:
        """The request body, refused with 413 as soon as it passes ``limit`` (never buffered)."""
        limit = self.config.limits.max_body_bytes if limit is None else limit
        return await receive_body(request.receive, request.headers.get("content-length"), limit)

    async def check_destination(self, dest: str) -> str:
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

    async def check_callbacks(self, message: Message) -> None:
        # Callback URLs get the destination's checks (scheme, SSRF) before anything is stored.
        for url in (message.callback, message.failure_callback):
            if url is not None:
                await self.check_destination(url)

    async def targets(self, user: User, dest: str) -> list[Target]:
        """The URLs a publish to ``dest`` delivers to: itself, or every endpoint of the group."""
        if "://" in dest or destination.is_url(dest):
            return [Target(url=await self.check_destination(dest))]
        if not valid_name(dest):
            raise ApiError(f"invalid destination: {dest!r} is neither a URL nor a url group name")
        assert self.groups is not None
        group = self.groups.get(group_key(user.user_id, dest))
        if group is None:
            raise NotFound(f"url group {dest!r} not found")
        return [
            Target(url=e.url, topic_name=group.name, endpoint_name=e.name) for e in group.endpoints
        ]

    async def submit(self, requests: list[PublishRequest]) -> list[tuple[str, bool]]:
        """Append ``requests`` and await their dedup decisions: (message id, deduplicated) each."""
        assert self.log
        assert self.waiter
        assert self.view
        await self.check_runs_active(requests)
        topic = self.config.topics.requests
        waits = {r.request_id: self.waiter.expect(r.request_id) for r in requests if r.reply}
        records = [(topic, request_key(r).encode(), codec.encode(r)) for r in requests]
        try:
            await self.log.append_many(records)
            metrics.PUBLISH_ACKS.inc(len(records))
            results: list[tuple[str, bool]] = []
            for r in requests:
                if not r.reply:
                    results.append((r.message.message_id, False))
                    continue
                async with asyncio.timeout(self.config.decision_timeout_s):
                    decision = await waits[r.request_id]
                assert isinstance(decision, Accepted)
                results.append((decision.message_id, decision.deduplicated))
        except LogUnavailable as exc:
            log.warning("append failed: %s", exc)
            metrics.UNAVAILABLE.labels("kafka").inc()
            raise Unavailable("Kafka is unavailable; the message may not be stored, retry") from exc
        except TimeoutError as exc:
            metrics.UNAVAILABLE.labels("decision").inc()
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
        remember_gates(self.gate_state, [r.message for r in requests], self.now_ms())
        return results

    async def check_runs_active(self, requests: list[PublishRequest]) -> None:
        """400 for a step of a workflow run that has ended: the JS SDK reads it as "cancelled
        or finished" and stops quietly (workflow-api.md §2.3). The run's stream worker drops
        such a step anyway; this tells the SDK at once.

        An ended run can be active again (a DLQ resume or restart): the step may come from the
        revived run's first delivery, sent after the stream worker wrote the run's new state, while
        this view still shows the old one. So "ended" is decided only on a view that has read
        the state topic up to now; a refusal on a lagging view left the revived run waiting for
        a step the SDK believed refused, for good.
        """
        if self.runs is None:
            return
        ended: list[tuple[str, str]] = []  # (run id, view key) of steps the view calls ended
        for r in requests:
            tag = r.message.workflow
            if tag is None or tag.init or tag.call_type == "failureCall":
                continue
            key = run_key(r.message.user_id, tag.run_id)
            run = self.runs.get(key)
            if run is not None and run.state != ACTIVE:
                ended.append((tag.run_id, key))
        if not ended or not await self.runs.sync(RUN_STATE_SYNC_S):
            return  # none, or unsure: the run's stream worker decides for good
        for run_id, key in ended:
            run = self.runs.get(key)
            if run is not None and run.state != ACTIVE:
                raise ApiError(f"workflow run {run_id} is not active: {run.state}")

    async def requests_for(
        self, request: Request, user: User, prefix: str
    ) -> tuple[bool, list[PublishRequest]]:
        """The PublishRequests of a publish-shaped request (publish, enqueue): one per target of
        the raw destination after ``prefix``; True when that destination is a URL group."""
        return await self.requests_to(
            user,
            destination.rebuild(
                request.scope.get("raw_path") or request.scope["path"].encode(),
                prefix,
                request.scope.get("query_string", b""),
            ),
            request.headers.items(),
            functools.partial(self.read_body, request),
            request.client.host if request.client else None,
        )

    async def requests_to(
        self,
        user: User,
        dest: str,
        header_pairs: Iterable[tuple[str, str]],
        read_body: Callable[[], Awaitable[bytes]],
        caller_ip: str | None,
    ) -> tuple[bool, list[PublishRequest]]:
        """:meth:`requests_for` from plain values (the raw-ASGI publish route calls it too)."""
        targets = await self.targets(user, dest)
        body = await read_body()
        now = self.now_ms()
        view = HeaderView(header_pairs)
        reqs = [
            for_target(
                build_request(
                    user=user,
                    url=t.url,
                    view=view,
                    body=body,
                    now_ms=now,
                    limits=self.config.limits,
                    caller_ip=caller_ip,
                ),
                t,
            )
            for t in targets
        ]
        await self.check_callbacks(reqs[0].message)  # SSRF rules before anything is stored
        return targets[0].topic_name is not None, reqs

    @staticmethod
    def accepted(
        to_group: bool, reqs: list[PublishRequest], results: list[tuple[str, bool]]
    ) -> Response:
        """QStash's answer: a URL group gets a bare array, one item per endpoint (both SDKs); a
        URL one object, 202 when it was deduplicated."""
        status, out = accepted_json(to_group, reqs, results)
        return JSONResponse(out, status_code=status)


def accepted_json(
    to_group: bool, reqs: list[PublishRequest], results: list[tuple[str, bool]]
) -> tuple[int, Any]:
    """The status and JSON body of :meth:`ApiContext.accepted`."""
    out = results_json(reqs, results)
    if to_group:
        return 201, out
    [(_, dedup)] = results
    return (202 if dedup else 201), out[0]


class ClientGone(ClientDisconnect):
    """The caller disconnected before its body arrived: there is nobody to answer."""


async def receive_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """An ASGI request's body, refused with 413 on a ``declared`` length past ``limit`` or as
    soon as what arrived passes it."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"message body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"message body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def results_json(
    requests: list[PublishRequest], results: list[tuple[str, bool]]
) -> list[dict[str, Any]]:
    out = []
    for r, (mid, dedup) in zip(requests, results, strict=True):
        entry: dict[str, Any] = {"messageId": mid, "url": r.message.url}
        if dedup:
            entry["deduplicated"] = True
        out.append(entry)
    return out
