"""``/v2/workflows/hooks/<user id>/<run id>/<event id>``: the URL ``context.createWebhook``
hands out (workflow-api.md §3.7, JS 1.3.x).

The SDK builds the URL itself (``<QSTASH_URL>/v2/workflows/hooks/<UserID of the token>/<run
id>/<event id>``) and ``context.waitForWebhook`` is an ordinary wait on that event id. A
request to the URL, with any method, is a notify of that run's waiters of that event
(``NotifyEvent`` with the run id: the one waiter the URL belongs to), whose data is a JSON
description of the request, ``{method, proto, host, url, header, body}`` (``body`` in standard
base64); the woken step carries it base64-encoded as its ``out``, as the SDK decodes it.

Authentication: none by token, since the caller is a third party that knows only the URL.
What guards the route is what guards Upstash's: the event id is one the SDK draws at random
(``evt_`` and 15 nanoid characters, about 89 bits), and the notify is scoped to the run named
in the URL, so a request can wake only the waiter its URL was made for. The user must exist
(else 404, the same answer as "nobody waits", so the route tells nothing about which users
exist), and requests count against that user's rate limit. A request that finds no waiter
(the hook called before ``waitForWebhook`` registered, or after the wait ended) is not kept:
it is answered 404, which webhook senders retry.
"""

from __future__ import annotations

import base64
import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kafstash.producers.api.context import ApiContext
from kafstash.producers.api.errors import NotFound
from kafstash.producers.api.waiters import notify_event
from kafstash.schemas import ids
from kafstash.schemas.waiters import NotifyEvent

HOOK_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# They describe this connection, not the request the workflow reads (``host`` has its field).
_CONNECTION_HEADERS = frozenset(
    {"host", "connection", "keep-alive", "transfer-encoding", "content-length"}
)
_NOBODY = "no run is waiting on this webhook"


def _canonical(name: str) -> str:
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.split("-"))


def describe(request: Request, body: bytes) -> bytes:
    """What ``waitForWebhook`` returns as its ``request``: the SDK rebuilds a ``Request`` from
    ``<proto>://<host><url>``, ``method``, ``header`` and the decoded ``body``."""
    header: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        if name not in _CONNECTION_HEADERS:
            header.setdefault(_canonical(name), []).append(value)
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    url = raw_path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
    described = {
        "method": request.method,
        "proto": request.url.scheme,
        "host": request.headers.get("host") or request.url.netloc,
        "url": url,
        "header": header,
        "body": base64.b64encode(body).decode(),
    }
    return json.dumps(described, separators=(",", ":")).encode()


def routes(api: ApiContext) -> list[Route]:
    users = {u.user_id: u for u in api.config.users}

    async def hook(request: Request) -> Response:
        user = users.get(request.path_params["user_id"])
        if user is None:
            raise NotFound(_NOBODY)
        api.within_rate(user)
        # The description is about 1.8 times the body once encoded twice; keep it in a record.
        body = await api.read_body(request, api.config.limits.max_body_bytes * 3 // 4)
        cmd = NotifyEvent(
            request_id=ids.request_id(),
            user_id=user.user_id,
            event_id=request.path_params["event_id"],
            data=describe(request, body),
            at=api.now_ms(),
            run_id=request.path_params["run_id"],
        )
        decision = await notify_event(api, cmd)
        if not decision.woken:
            raise NotFound(_NOBODY)
        return JSONResponse({"notified": len(decision.woken)})

    return [
        Route("/v2/workflows/hooks/{user_id}/{run_id}/{event_id}", hook, methods=list(HOOK_METHODS))
    ]
