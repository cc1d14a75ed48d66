"""Requests of the QStash v2 API as values: what to send and how to read the answer. No I/O.

Each builder returns a ``Call``; ``Client`` and ``AsyncClient`` only send it. The requests are
the ones the official Python SDK (qstash 3.4.0) sends (qstash-api.md §1, §3, §4 and
``sdk-wire/py_requests.jsonl``): the destination travels raw in the path, every user header
gets ``Upstash-Forward-``, the batch body carries explicit nulls. Two differences, both
documented on the public API: integer durations are milliseconds (the SDK's are seconds) and
are sent as ``<n>s`` when whole seconds, else as kafstash's ``<n>ms``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Required, TypedDict, TypeVar, cast
from urllib.parse import quote

import httpx

from kafstash.producers.client import _results
from kafstash.producers.client._errors import InvalidArgument, api_error
from kafstash.producers.client._results import Message, PublishResult, Schedule
from kafstash.producers.durations import parse_duration_ms

__all__ = [
    "BatchMessage",
    "Call",
    "Duration",
    "HttpMethod",
    "MessageOptions",
    "PublishOptions",
]

_T = TypeVar("_T")

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
Duration = str | int
"""``"10s"``, ``"5m"``, ``"1d2h"``, ``"500ms"``, or an int of **milliseconds**."""

JSON_CONTENT_TYPE = "application/json"
DEFAULT_BASE_URL = "http://127.0.0.1:8080"  # `kafstash dev`
DEFAULT_TIMEOUT_S = 30.0  # the API answers after the broker's ack, within KAFSTASH_PRODUCE_TIMEOUT

# Header names as the official SDKs spell them on the wire (the server compares them
# case-insensitively; schemas/headers.py holds the server's lower-case forms).
CONTENT_TYPE = "Content-Type"
METHOD = "Upstash-Method"
FORWARD_PREFIX = "Upstash-Forward-"
RETRIES = "Upstash-Retries"
RETRY_DELAY = "Upstash-Retry-Delay"
CALLBACK = "Upstash-Callback"
FAILURE_CALLBACK = "Upstash-Failure-Callback"
DELAY = "Upstash-Delay"
NOT_BEFORE = "Upstash-Not-Before"
DEDUP_ID = "Upstash-Deduplication-Id"
CONTENT_DEDUP = "Upstash-Content-Based-Deduplication"
TIMEOUT = "Upstash-Timeout"
LABEL = "Upstash-Label"
CRON = "Upstash-Cron"
SCHEDULE_ID = "Upstash-Schedule-Id"
QUEUE_NAME = "Upstash-Queue-Name"


class MessageOptions(TypedDict, total=False):
    """Options of every produced message: publish, enqueue, batch items and schedules."""

    content_type: str
    method: HttpMethod
    headers: Mapping[str, str]  # forwarded to the destination (``Upstash-Forward-<name>``)
    retries: int
    retry_delay: str | int  # expression in milliseconds, variable ``retried``
    callback: str
    failure_callback: str
    delay: Duration
    timeout: Duration
    label: str | Sequence[str]


class PublishOptions(MessageOptions, total=False):
    """``MessageOptions`` plus the ones of a single message (not of a schedule)."""

    not_before: int  # Unix seconds, as the header; overrides ``delay``
    deduplication_id: str
    content_based_deduplication: bool


class BatchMessage(PublishOptions, total=False):
    """One item of ``batch``: a destination URL, a body, an optional queue and the options."""

    url: Required[str]
    body: str | bytes
    queue: str


_MESSAGE_KEYS = MessageOptions.__optional_keys__
_PUBLISH_KEYS = PublishOptions.__optional_keys__
_BATCH_KEYS = BatchMessage.__optional_keys__ | BatchMessage.__required_keys__


@dataclass(frozen=True, slots=True)
class Call(Generic[_T]):
    """One HTTP request relative to the base URL, and the reader of its 2xx answer."""

    method: str
    path: str  # raw: "/v2/publish/https://host/p?x=1" (httpx keeps it, as the SDK relies on)
    read: Callable[[bytes], _T]
    headers: tuple[tuple[str, str], ...] = ()
    content: bytes | None = None


# -- values ----------------------------------------------------------------------------------


def duration(value: Duration, *, option: str) -> str:
    """Header value of a duration: strings are checked and kept, ints are milliseconds."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidArgument(f"{option}: expected a duration such as '5m' or int milliseconds")
    if isinstance(value, int):
        if value < 0:
            raise InvalidArgument(f"{option}: {value} ms is negative")
        return f"{value // 1000}s" if value % 1000 == 0 else f"{value}ms"
    try:
        parse_duration_ms(value)
    except ValueError as exc:
        raise InvalidArgument(f"{option}: {exc}") from None
    return value.strip()


def _body(body: str | bytes) -> bytes:
    return body.encode() if isinstance(body, str) else bytes(body)


def _check_keys(options: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InvalidArgument(f"{where}: unknown option(s) {', '.join(unknown)}")


def _quote(identifier: str) -> str:
    return quote(identifier, safe="")


def _forwarded(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """User headers for the destination: each gets ``Upstash-Forward-`` unless it has it."""
    prefix = FORWARD_PREFIX.lower()
    return [
        (name if name.lower().startswith(prefix) else FORWARD_PREFIX + name, str(value))
        for name, value in headers.items()
    ]


def message_headers(options: MessageOptions) -> list[tuple[str, str]]:
    """Headers of the options every message has, in the official SDK's order (§4)."""
    h: list[tuple[str, str]] = []
    if "content_type" in options:
        h.append((CONTENT_TYPE, options["content_type"]))
    if "method" in options:
        h.append((METHOD, options["method"]))
    h += _forwarded(options.get("headers") or {})
    if "retries" in options:
        h.append((RETRIES, str(int(options["retries"]))))
    if "retry_delay" in options:
        h.append((RETRY_DELAY, str(options["retry_delay"])))
    if "callback" in options:
        h.append((CALLBACK, options["callback"]))
    if "failure_callback" in options:
        h.append((FAILURE_CALLBACK, options["failure_callback"]))
    if "delay" in options:
        h.append((DELAY, duration(options["delay"], option="delay")))
    if "timeout" in options:
        h.append((TIMEOUT, duration(options["timeout"], option="timeout")))
    if "label" in options:
        label = options["label"]
        h.append((LABEL, label if isinstance(label, str) else ",".join(label)))
    return h


def publish_headers(options: PublishOptions) -> list[tuple[str, str]]:
    """``message_headers`` plus the single-message options (not-before, deduplication)."""
    h = message_headers(options)
    if "not_before" in options:
        h.append((NOT_BEFORE, str(int(options["not_before"]))))
    if "deduplication_id" in options:
        h.append((DEDUP_ID, options["deduplication_id"]))
    if "content_based_deduplication" in options:
        # The SDK sends Python's str(bool); the server reads it case-insensitively.
        h.append((CONTENT_DEDUP, str(bool(options["content_based_deduplication"]))))
    return h


# -- messages --------------------------------------------------------------------------------


def publish(url: str, body: str | bytes, options: PublishOptions) -> Call[PublishResult]:
    _check_keys(options, _PUBLISH_KEYS, "publish")
    return Call(
        "POST",
        f"/v2/publish/{url}",
        _results.read_publish(url),
        tuple(publish_headers(options)),
        _body(body),
    )


def publish_json(url: str, body: object, options: PublishOptions) -> Call[PublishResult]:
    """``publish`` of ``json.dumps(body)`` with ``Content-Type: application/json``."""
    return publish(url, json.dumps(body), {**options, "content_type": JSON_CONTENT_TYPE})


def enqueue(
    queue: str, url: str, body: str | bytes, options: PublishOptions
) -> Call[PublishResult]:
    _check_keys(options, _PUBLISH_KEYS, "enqueue")
    return Call(
        "POST",
        f"/v2/enqueue/{_quote(queue)}/{url}",
        _results.read_publish(url),
        tuple(publish_headers(options)),
        _body(body),
    )


def _batch_item(message: BatchMessage) -> dict[str, Any]:
    _check_keys(message, _BATCH_KEYS, "batch item")
    body = message.get("body")
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument("batch item: bodies travel as JSON strings: use UTF-8") from None
    options = cast(PublishOptions, {k: v for k, v in message.items() if k in _PUBLISH_KEYS})
    return {
        "destination": message["url"],
        "headers": dict(publish_headers(options)),
        "body": body,
        "queue": message.get("queue"),
    }


def batch(messages: Sequence[BatchMessage]) -> Call[list[PublishResult]]:
    """``POST /v2/batch`` with the Python SDK's JSON array (qstash-api.md §3.3)."""
    if not messages:
        raise InvalidArgument("batch: at least one message")
    items = [_batch_item(m) for m in messages]
    return Call(
        "POST",
        "/v2/batch",
        _results.read_batch([m["url"] for m in messages]),
        ((CONTENT_TYPE, JSON_CONTENT_TYPE),),
        json.dumps(items).encode(),
    )


def get_message(message_id: str) -> Call[Message]:
    return Call("GET", f"/v2/messages/{_quote(message_id)}", _results.read_message)


def cancel_message(message_id: str) -> Call[None]:
    return Call("DELETE", f"/v2/messages/{_quote(message_id)}", _results.read_nothing)


# -- schedules -------------------------------------------------------------------------------


def create_schedule(
    *,
    destination: str,
    cron: str,
    body: str | bytes,
    schedule_id: str | None,
    queue: str | None,
    options: MessageOptions,
) -> Call[str]:
    """``POST /v2/schedules/{destination}`` (qstash-api.md §3.5); the answer is the id."""
    _check_keys(options, _MESSAGE_KEYS, "schedules.create")
    headers = [(CRON, cron), *message_headers(options)]
    if schedule_id is not None:
        headers.append((SCHEDULE_ID, schedule_id))
    if queue is not None:
        headers.append((QUEUE_NAME, queue))
    return Call(
        "POST",
        f"/v2/schedules/{destination}",
        _results.read_schedule_id,
        tuple(headers),
        _body(body),
    )


def get_schedule(schedule_id: str) -> Call[Schedule]:
    return Call("GET", f"/v2/schedules/{_quote(schedule_id)}", _results.read_schedule)


def list_schedules() -> Call[list[Schedule]]:
    return Call("GET", "/v2/schedules", _results.read_schedules)


def delete_schedule(schedule_id: str) -> Call[None]:
    return Call("DELETE", f"/v2/schedules/{_quote(schedule_id)}", _results.read_nothing)


def pause_schedule(schedule_id: str) -> Call[None]:
    # Both SDKs use PATCH here (qstash-api.md §3.5); queues and flow control use POST.
    return Call("PATCH", f"/v2/schedules/{_quote(schedule_id)}/pause", _results.read_nothing)


def resume_schedule(schedule_id: str) -> Call[None]:
    return Call("PATCH", f"/v2/schedules/{_quote(schedule_id)}/resume", _results.read_nothing)


# -- the bridge to httpx (still no I/O) ------------------------------------------------------


def to_httpx(call: Call[Any], *, base_url: str, token: str) -> httpx.Request:
    """The httpx request of ``call``; ``Authorization`` first, as the SDK sends it."""
    return httpx.Request(
        call.method,
        base_url + call.path,
        headers=[("Authorization", f"Bearer {token}"), *call.headers],
        content=call.content,
    )


def finish(call: Call[_T], response: httpx.Response) -> _T:
    """The typed result of a read answer, or the ``ApiError`` of a non-2xx one."""
    if not response.is_success:
        raise api_error(response.status_code, response.headers, response.content)
    return call.read(response.content)
