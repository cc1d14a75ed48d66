"""``POST /v2/publish/{destination}`` as a raw ASGI route: the hot path of every publish.

It sits inside the app's middleware (request metrics, header limits and the 500 handler still
wrap it) and answers a publish without Starlette's router, exception middleware, ``Request``
and ``JSONResponse``: those layers were a third of the API's CPU per publish in the profile of
``benchmarks/run.py --only publish --py-spy``. What a publish *does* is shared with the
Starlette routes (``ApiContext.requests_to``, ``submit``, ``accepted_json``), so the two paths
cannot drift apart; a request this route does not take (another method or path, or a token in
the query string) goes on to the router unchanged.
"""

from __future__ import annotations

import functools
import logging

import msgspec
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from kafstash.producers.api import destination
from kafstash.producers.api.context import ApiContext, ClientGone, accepted_json, receive_body
from kafstash.producers.api.errors import ApiError, error_response

log = logging.getLogger(__name__)

PREFIX = "/v2/publish/"
_TOKEN_PARAM = b"qstash_token"
_JSON = (b"content-type", b"application/json")
_encode = msgspec.json.Encoder().encode


class PublishRoute:
    """ASGI middleware answering publishes itself; ``route`` labels them in the metrics."""

    def __init__(self, app: ASGIApp, api: ApiContext, route: Route) -> None:
        self.app = app
        self.api = api
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].startswith(PREFIX)
            or _TOKEN_PARAM in scope["query_string"]
        ):
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route  # what the router would set: the metrics' route label
        try:
            status, body = await self._publish(scope, receive)
        except ApiError as exc:
            await error_response(exc.status, str(exc), exc.headers)(scope, receive, send)
            return
        except ClientGone:
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [_JSON, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _publish(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        api = self.api
        pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        authorization = next((v for k, v in pairs if k == "authorization"), None)
        user = api.auth.user_for(authorization)
        api.within_rate(user)
        declared = next((v for k, v in pairs if k == "content-length"), None)
        dest = destination.rebuild(
            scope.get("raw_path") or scope["path"].encode(), PREFIX, scope["query_string"]
        )
        client = scope.get("client")
        to_group, reqs = await api.requests_to(
            user,
            dest,
            pairs,
            functools.partial(receive_body, receive, declared, api.config.limits.max_body_bytes),
            client[0] if client else None,
        )
        status, out = accepted_json(to_group, reqs, await api.submit(reqs))
        return status, _encode(out)
