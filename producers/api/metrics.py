"""The API's Prometheus metrics: requests by route template and status, publish acks and 503s,
and the DLQ's size. Served on the role's own metrics listener (``kafstash/monitoring.py``),
never on the QStash port.

A request is labelled by its route's template (``/v2/messages/{message_id}``), never its raw
path, so ids and destination URLs cannot become label values; an unmatched path is
``unmatched``. Label children are cached per (route, method, status), a bounded set.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REGISTRY = CollectorRegistry()

UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})

REQUESTS = Counter(
    "kafstash_api_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "kafstash_api_request_duration_seconds",
    "Time to answer an HTTP request, by route template, method and status.",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
PUBLISH_ACKS = Counter(
    "kafstash_api_publish_acks",
    "Publish requests (one per message) acknowledged by Kafka.",
    registry=REGISTRY,
)
UNAVAILABLE = Counter(
    "kafstash_api_unavailable",
    "503 answers by reason: kafka (no acknowledgement) or decision (no dedup decision in time).",
    ["reason"],
    registry=REGISTRY,
)
DLQ_SIZE = Gauge(
    "kafstash_dlq_messages",
    "Entries in the dead-letter queue, all users (as the API's view of the DLQ topic holds).",
    registry=REGISTRY,
)


def route_label(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


def watch_dlq(count: Callable[[], int]) -> None:
    DLQ_SIZE.set_function(count)


class RequestMetrics:
    """ASGI middleware: counts and times every HTTP request by route template and status."""

    def __init__(self, app: ASGIApp, clock: Callable[[], float] = time.perf_counter) -> None:
        self.app = app
        self.clock = clock
        self._children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self.clock()
        status = 500  # what the server answers when the app raises before starting a response

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            key = (route_label(scope), method_label(scope["method"]), str(status))
            pair = self._children.get(key)
            if pair is None:
                pair = self._children[key] = (REQUESTS.labels(*key), REQUEST_SECONDS.labels(*key))
            pair[0].inc()
            pair[1].observe(self.clock() - started)
