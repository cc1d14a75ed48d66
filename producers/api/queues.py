"""Queues: ``POST /v2/enqueue/{queue}/{destination}`` and the ``/v2/queues`` admin routes.

A queue is a gate (streams/gate.py) owned by the stream worker; these routes append gate
commands and read the queue read models from the ``state`` topic (qstash-api.md §3.2, §3.6).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from msgspec import structs
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kafstash.producers.api.errors import ApiError, NotFound, Unavailable
from kafstash.producers.api.gates import (
    Record,
    check_queue_name,
    gate_record,
    with_queue,
)
from kafstash.producers.kafka_log import LogUnavailable
from kafstash.schemas.gates import DeleteQueue, QueueState, UpsertQueue, queue_gate, state_key

if TYPE_CHECKING:
    from kafstash.producers.api.context import ApiContext

_MAX_PARALLELISM = 1000


class _Upsert(msgspec.Struct, rename="camel"):
    queue_name: str
    parallelism: int = 1
    paused: bool = False


_upsert_decoder = msgspec.json.Decoder(_Upsert)


def queue_json(q: QueueState) -> dict[str, Any]:
    return {
        "name": q.name,
        "parallelism": q.parallelism,
        "createdAt": q.created_at,
        "updatedAt": q.updated_at,
        "lag": q.lag,
        "paused": q.paused,
    }


def routes(api: ApiContext) -> list[Route]:  # noqa: PLR0915 - one closure per route
    def state_of(user_id: str, name: str) -> QueueState | None:
        assert api.gate_state
        found = api.gate_state.get(state_key(queue_gate(user_id, name)))
        return found if isinstance(found, QueueState) else None

    async def append(records: list[Record]) -> None:
        assert api.log
        try:
            await api.log.append_many(records)
        except LogUnavailable as exc:
            raise Unavailable("Kafka is unavailable; retry") from exc

    async def enqueue(request: Request) -> Response:
        user = api.user(request)
        queue = check_queue_name(request.path_params["queue"])
        # A URL or a URL group name: a group fans out, one queued message per endpoint.
        to_group, built = await api.requests_for(request, user, f"/v2/enqueue/{queue}/")
        reqs = [with_queue(r, queue) for r in built]
        return api.accepted(to_group, reqs, await api.submit(reqs))

    async def upsert(request: Request) -> Response:
        user = api.user(request)
        try:
            spec = _upsert_decoder.decode(await api.read_body(request))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ApiError(f"invalid queue: {exc}") from None
        name = check_queue_name(spec.queue_name)
        if not 1 <= spec.parallelism <= _MAX_PARALLELISM:
            raise ApiError(f"invalid parallelism: must be 1..{_MAX_PARALLELISM}")
        gate = queue_gate(user.user_id, name)
        now = api.now_ms()
        cmd = UpsertQueue(parallelism=spec.parallelism, paused=spec.paused, at=now)
        await append([gate_record(api.config.topics, gate, cmd)])
        old = state_of(user.user_id, name)
        assert api.gate_state
        api.gate_state.put(
            state_key(gate),
            QueueState(
                name=name,
                parallelism=spec.parallelism,
                created_at=old.created_at if old else now,
                updated_at=now,
                lag=old.lag if old else 0,
                paused=spec.paused,
                admin_at=now,
            ),
        )
        return Response(status_code=200)

    async def list_queues(request: Request) -> Response:
        user = api.user(request)
        assert api.gate_state
        found = api.gate_state.scan(f"queue/{user.user_id}/")
        return JSONResponse([queue_json(q) for _, q in found if isinstance(q, QueueState)])

    async def get_queue(request: Request) -> Response:
        user = api.user(request)
        q = state_of(user.user_id, request.path_params["name"])
        if q is None:
            raise NotFound("queue not found")
        return JSONResponse(queue_json(q))

    async def delete_queue(request: Request) -> Response:
        user = api.user(request)
        name = check_queue_name(request.path_params["name"])
        gate = queue_gate(user.user_id, name)
        now = api.now_ms()
        await append([gate_record(api.config.topics, gate, DeleteQueue(at=now))])
        assert api.gate_state
        api.gate_state.drop(state_key(gate), at=now)
        return Response(status_code=200)

    def pauser(paused: bool) -> Any:
        async def handle(request: Request) -> Response:
            user = api.user(request)
            name = check_queue_name(request.path_params["name"])
            gate = queue_gate(user.user_id, name)
            now = api.now_ms()
            await append([gate_record(api.config.topics, gate, UpsertQueue(paused=paused, at=now))])
            old = state_of(user.user_id, name)
            assert api.gate_state
            api.gate_state.put(
                state_key(gate),
                structs.replace(old, paused=paused, updated_at=now, admin_at=now)
                if old
                else QueueState(
                    name=name,
                    parallelism=1,
                    created_at=now,
                    updated_at=now,
                    lag=0,
                    paused=paused,
                    admin_at=now,
                ),
            )
            return Response(status_code=200)

        return handle

    return [
        Route("/v2/enqueue/{queue}/{destination:path}", enqueue, methods=["POST"]),
        Route("/v2/queues", upsert, methods=["POST"]),
        Route("/v2/queues", list_queues, methods=["GET"]),
        Route("/v2/queues/{name}", get_queue, methods=["GET"]),
        Route("/v2/queues/{name}", delete_queue, methods=["DELETE"]),
        Route("/v2/queues/{name}/pause", pauser(True), methods=["POST"]),
        Route("/v2/queues/{name}/resume", pauser(False), methods=["POST"]),
    ]
