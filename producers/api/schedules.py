"""Schedule routes (qstash-api.md §3.5, §8.4): create/overwrite, get, list, delete, pause, resume.

The API only writes :class:`ScheduleSpec` records (or tombstones) to the compacted schedules
topic; the stream worker owning the key keeps the cron table, fires ticks and publishes the
state this module reads back through :class:`ScheduleView`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kafstash.producers.api import destination, groups
from kafstash.producers.api.errors import ApiError, NotFound, Unavailable
from kafstash.producers.api.publish import HeaderView, build_request
from kafstash.producers.api.schedule_view import (
    MessageStateFn,
    ScheduleView,
    pending_message_state,
    schedule_json,
)
from kafstash.producers.kafka_log import LogUnavailable
from kafstash.schemas import codec, cron, headers, ids
from kafstash.schemas.schedules import SCHEDULE_ID_PATTERN, ScheduleSpec, ScheduleState

if TYPE_CHECKING:
    from kafstash.producers.api.context import ApiContext

_PREFIX = "/v2/schedules/"


def _name_header(view: HeaderView, name: str, label: str) -> str | None:
    raw = view.get(name)
    if raw is None:
        return None
    value = raw.strip()
    if not SCHEDULE_ID_PATTERN.fullmatch(value):
        raise ApiError(f"invalid {label}: {value!r}, only letters, digits, '.', '_' and '-'")
    return value


class ScheduleRoutes:
    def __init__(self, api: ApiContext) -> None:
        self.api = api

    @property
    def view(self) -> ScheduleView:
        assert self.api.schedules is not None, "lifespan not started"
        return self.api.schedules

    async def _append(self, key: str, spec: ScheduleSpec | None) -> None:
        assert self.api.log
        value = None if spec is None else codec.encode(spec)
        try:
            await self.api.log.append_many(
                [(self.api.config.topics.schedules, key.encode(), value)]
            )
        except LogUnavailable as exc:
            raise Unavailable(
                "Kafka is unavailable; the schedule may not be stored, retry"
            ) from exc

    def _owned(self, request: Request) -> ScheduleState:
        user = self.api.user(request)
        state = self.view.get(user.user_id, request.path_params["schedule_id"])
        if state is None:
            raise NotFound("schedule not found")
        return state

    async def create(self, request: Request) -> Response:
        api = self.api
        user = api.user(request)
        dest = destination.rebuild(
            request.scope.get("raw_path") or request.scope["path"].encode(),
            _PREFIX,
            request.scope.get("query_string", b""),
        )
        view = HeaderView(request.headers.items())
        raw_cron = view.get(headers.CRON)
        if raw_cron is None:
            raise ApiError("Upstash-Cron header is required")
        try:
            parsed = cron.parse(raw_cron)
        except cron.InvalidCron as exc:
            raise ApiError(str(exc)) from None
        schedule_id = _name_header(view, headers.SCHEDULE_ID, "schedule id") or ids.schedule_id()
        queue_name = _name_header(view, headers.QUEUE_NAME, "queue name")
        # A URL group must exist now (404 as for publish); its endpoints resolve at each tick.
        url_group = await groups.schedule_group(api, user, dest)
        url = dest if url_group is not None else await api.check_destination(dest)
        body = await api.read_body(request)
        now = api.now_ms()
        req = build_request(
            user=user,
            url=url,
            view=view,
            body=body,
            now_ms=now,
            limits=api.config.limits,
            caller_ip=request.client.host if request.client else None,
        )
        template = req.message
        # Every tick calls them: the destination's checks now, not a DLQ entry per tick later.
        await api.check_callbacks(template)
        existing = self.view.get(user.user_id, schedule_id)
        spec = ScheduleSpec(
            schedule_id=schedule_id,
            user_id=user.user_id,
            cron=parsed.text,
            destination=url,
            # An overwrite replaces every setting but stays the same schedule.
            created_at=existing.spec.created_at if existing else now,
            updated_at=now,
            template=template,
            targets=[] if url_group is not None else [url],
            # Only Upstash-Delay applies to schedules (Upstash-Not-Before is a publish header).
            delay_ms=template.not_before - now if view.get(headers.DELAY) is not None else 0,
            queue_name=queue_name,
            caller_ip=template.caller_ip,
            url_group=url_group,
        )
        await self._append(spec.key, spec)
        nxt = cron.next_tick(spec.cron, now)
        if existing is not None and existing.spec.cron == spec.cron:
            nxt = existing.next_schedule_time or nxt
        self.view.put(
            ScheduleState(
                spec=spec,
                next_schedule_time=nxt,
                last_schedule_time=existing.last_schedule_time if existing else None,
                last_message_ids=existing.last_message_ids if existing else [],
            )
        )
        return JSONResponse({"scheduleId": schedule_id}, status_code=201)

    async def get(self, request: Request) -> Response:
        state = self._owned(request)
        return JSONResponse(schedule_json(state, self._message_state()))

    async def list(self, request: Request) -> Response:
        user = self.api.user(request)
        states = self.view.list(user.user_id)
        message_state = self._message_state()
        return JSONResponse([schedule_json(s, message_state) for s in states])

    async def delete(self, request: Request) -> Response:
        spec = self._owned(request).spec
        await self._append(spec.key, None)
        self.view.drop(spec.user_id, spec.schedule_id, self.api.now_ms())
        return Response(status_code=200)

    async def pause(self, request: Request) -> Response:
        return await self._set_paused(request, paused=True)

    async def resume(self, request: Request) -> Response:
        return await self._set_paused(request, paused=False)

    async def _set_paused(self, request: Request, *, paused: bool) -> Response:
        state = self._owned(request)
        if state.spec.paused != paused:  # idempotent: nothing to write when already so
            now = max(self.api.now_ms(), state.spec.updated_at + 1)
            spec = msgspec.structs.replace(state.spec, paused=paused, updated_at=now)
            await self._append(spec.key, spec)
            self.view.put(msgspec.structs.replace(state, spec=spec))
        return Response(status_code=200)

    def _message_state(self) -> MessageStateFn:
        assert self.api.view is not None
        return self.api.message_state or pending_message_state(self.api.view)


def routes(api: ApiContext) -> list[Route]:
    r = ScheduleRoutes(api)
    return [
        # Before the destination route: ``{schedule_id}`` never contains a slash, a URL does.
        Route("/v2/schedules/{schedule_id}/pause", r.pause, methods=["PATCH", "POST"]),
        Route("/v2/schedules/{schedule_id}/resume", r.resume, methods=["PATCH", "POST"]),
        Route("/v2/schedules", r.list, methods=["GET"]),
        Route("/v2/schedules/{schedule_id}", r.get, methods=["GET"]),
        Route("/v2/schedules/{schedule_id}", r.delete, methods=["DELETE"]),
        Route("/v2/schedules/{destination:path}", r.create, methods=["POST"]),
    ]
