"""URL groups over HTTP (qstash-api.md §3.7, §8.6) and the fan-out of a publish to a group.

The group records live in the compacted ``<prefix>.state`` topic (schemas/groups.py); this API is
their only writer, so a read-modify-append here, followed by ``put`` into the view, is enough
(concurrent edits of one group from two API instances: the later append wins).

:func:`schedule_group` is how a schedule names its group; the fan-out of a publish to a group's
endpoints is ApiContext.targets and fanout.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kafstash.producers.api import destination
from kafstash.producers.api.errors import ApiError, NotFound, Unavailable
from kafstash.producers.kafka_log import LogUnavailable
from kafstash.schemas import codec
from kafstash.schemas.groups import (
    Endpoint,
    RemoveSpec,
    UrlGroup,
    decode_group,
    group_key,
    remove,
    upsert,
    valid_name,
)
from kafstash.views.compacted import CompactedView

if TYPE_CHECKING:
    from kafstash.producers.api.context import ApiContext
    from kafstash.schemas.users import User

_MAX_ENDPOINTS = 100


# The wire shapes refuse unknown keys (``{"nmae": "a"}`` would otherwise match no endpoint and
# answer 200); the stored records (schemas/groups.py) stay lenient for newer writers.
class _EndpointIn(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    name: str | None = None


class _RemoveIn(msgspec.Struct, forbid_unknown_fields=True):
    url: str | None = None
    name: str | None = None


class _AddBody(msgspec.Struct, forbid_unknown_fields=True):
    endpoints: list[_EndpointIn]


class _RemoveBody(msgspec.Struct, forbid_unknown_fields=True):
    endpoints: list[_RemoveIn]


def open_view(bootstrap: str, state_topic: str) -> CompactedView[UrlGroup]:
    return CompactedView(bootstrap, state_topic, decode_group)


def group_json(group: UrlGroup) -> dict[str, object]:
    return {
        "name": group.name,
        "createdAt": group.created_at,
        "updatedAt": group.updated_at,
        "endpoints": [
            {"url": e.url, **({"name": e.name} if e.name is not None else {})}
            for e in group.endpoints
        ],
    }


async def schedule_group(api: ApiContext, user: User, dest: str) -> str | None:
    """The URL group a schedule to ``dest`` targets, or None when ``dest`` is a URL.

    Raises NotFound when no such group exists for ``user``: a schedule resolves the group's
    endpoints at every tick, but it must not be created for a group that does not exist.
    """
    if "://" in dest or destination.is_url(dest):
        return None
    await api.targets(user, dest)  # the 400 / 404 rules of a publish to a group
    return dest


def _name(request: Request) -> str:
    name: str = request.path_params["name"]
    if not valid_name(name):
        raise ApiError("invalid url group name: only letters, digits, '.', '_' and '-' are allowed")
    return name


async def _write(api: ApiContext, key: str, group: UrlGroup | None) -> None:
    assert api.log is not None
    assert api.groups is not None
    value = None if group is None else codec.encode(group)
    try:
        await api.log.append_many([(api.config.topics.state, key.encode(), value)])
    except LogUnavailable as exc:
        raise Unavailable("Kafka is unavailable; retry") from exc
    if group is None:
        api.groups.drop(key)
    else:
        api.groups.put(key, group)


def routes(api: ApiContext) -> list[Route]:
    async def add_endpoints(request: Request) -> Response:
        user = api.user(request)
        name = _name(request)
        try:
            body = msgspec.json.decode(await api.read_body(request), type=_AddBody)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ApiError(f"invalid request body: {exc}") from None
        if not body.endpoints:
            raise ApiError("invalid request body: endpoints must not be empty")
        endpoints = [Endpoint(url=e.url, name=e.name) for e in body.endpoints]
        for e in endpoints:
            if not destination.is_url(e.url):
                raise ApiError(f"invalid endpoint url {e.url!r}: use http:// or https://")
            await api.check_destination(e.url)
        assert api.groups is not None
        key = group_key(user.user_id, name)
        group = upsert(
            api.groups.get(key),
            user_id=user.user_id,
            name=name,
            endpoints=endpoints,
            now_ms=api.now_ms(),
        )
        if len(group.endpoints) > _MAX_ENDPOINTS:
            raise ApiError(f"a url group has at most {_MAX_ENDPOINTS} endpoints")
        await _write(api, key, group)
        return Response(status_code=200)

    async def remove_endpoints(request: Request) -> Response:
        user = api.user(request)
        name = _name(request)
        try:
            body = msgspec.json.decode(await api.read_body(request), type=_RemoveBody)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ApiError(f"invalid request body: {exc}") from None
        assert api.groups is not None
        key = group_key(user.user_id, name)
        group = api.groups.get(key)
        if group is None:
            raise NotFound(f"url group {name!r} not found")
        specs = [RemoveSpec(url=e.url, name=e.name) for e in body.endpoints]
        await _write(api, key, remove(group, specs=specs, now_ms=api.now_ms()))
        return Response(status_code=200)

    async def get_group(request: Request) -> Response:
        user = api.user(request)
        assert api.groups is not None
        group = api.groups.get(group_key(user.user_id, _name(request)))
        if group is None:
            raise NotFound("url group not found")
        return JSONResponse(group_json(group))

    async def list_groups(request: Request) -> Response:
        user = api.user(request)
        assert api.groups is not None
        found = api.groups.scan(group_key(user.user_id, ""))
        return JSONResponse([group_json(g) for _, g in found])

    async def delete_group(request: Request) -> Response:
        user = api.user(request)
        assert api.groups is not None
        key = group_key(user.user_id, _name(request))
        # 2xx for a missing group too: the Python SDK's own tests delete before creating.
        if api.groups.get(key) is not None:
            await _write(api, key, None)
        return Response(status_code=200)

    return [
        Route("/v2/topics/{name}/endpoints", add_endpoints, methods=["POST"]),
        Route("/v2/topics/{name}/endpoints", remove_endpoints, methods=["DELETE"]),
        Route("/v2/topics", list_groups, methods=["GET"]),
        Route("/v2/topics/{name}", get_group, methods=["GET"]),
        Route("/v2/topics/{name}", delete_group, methods=["DELETE"]),
    ]
