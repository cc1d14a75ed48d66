"""Typed answers of the QStash v2 API (qstash-api.md §3, §8) and their decoders.

Results are frozen msgspec Structs. Decoders ignore keys they do not know, so a newer server
that adds fields never breaks an older client; a missing required key is a ``ProtocolError``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec

from kafstash.producers.client._errors import ProtocolError

__all__ = ["Message", "PublishResult", "Schedule"]

_T = TypeVar("_T")


class PublishResult(msgspec.Struct, frozen=True, kw_only=True):
    """One accepted message: its id, its destination, and whether it was a duplicate."""

    message_id: str
    url: str
    deduplicated: bool = False


class Message(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A message not yet delivered (``GET /v2/messages/{id}``, qstash-api.md §8.1).

    Times are Unix milliseconds; ``header`` holds forwarded headers, Go-canonical names.
    """

    message_id: str
    url: str
    method: str
    max_retries: int
    not_before: int
    created_at: int
    header: dict[str, list[str]] = {}
    body: str | None = None
    body_base64: str | None = None
    callback: str | None = None
    failure_callback: str | None = None
    retry_delay_expression: str | None = None
    timeout: int | None = None
    topic_name: str | None = None
    endpoint_name: str | None = None
    queue_name: str | None = None
    schedule_id: str | None = None
    caller_ip: str | None = msgspec.field(default=None, name="callerIP")
    label: str | None = None
    labels: list[str] = []

    @property
    def content(self) -> bytes:
        """The body as bytes, whether it came as UTF-8 ``body`` or as ``bodyBase64``."""
        return _content(self.body, self.body_base64)


class Schedule(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """A schedule (qstash-api.md §8.4); ``delay`` is in seconds, times in Unix milliseconds."""

    schedule_id: str
    destination: str
    cron: str
    created_at: int
    method: str
    retries: int
    paused: bool = msgspec.field(default=False, name="isPaused")
    header: dict[str, list[str]] = {}
    body: str | None = None
    body_base64: str | None = None
    delay: int | None = None
    timeout: int | None = None
    callback: str | None = None
    failure_callback: str | None = None
    retry_delay_expression: str | None = None
    queue_name: str | None = None
    caller_ip: str | None = msgspec.field(default=None, name="callerIP")
    label: str | None = None
    labels: list[str] = []
    last_schedule_time: int | None = None
    next_schedule_time: int | None = None
    last_schedule_states: dict[str, str] = {}
    error: str | None = None

    @property
    def content(self) -> bytes:
        return _content(self.body, self.body_base64)


def _content(body: str | None, body_base64: str | None) -> bytes:
    if body is not None:
        return body.encode()
    if body_base64 is not None:
        return base64.b64decode(body_base64)
    return b""


class _Accepted(msgspec.Struct, frozen=True, rename="camel"):
    message_id: str
    url: str | None = None
    deduplicated: bool = False


class _ScheduleCreated(msgspec.Struct, frozen=True, rename="camel"):
    schedule_id: str


def _decode(content: bytes, kind: type[_T] | Any) -> Any:
    try:
        return msgspec.json.decode(content, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(f"unexpected answer: {exc}: {content[:200]!r}") from exc


def _accepted(reply: _Accepted, url: str) -> PublishResult:
    return PublishResult(
        message_id=reply.message_id, url=reply.url or url, deduplicated=reply.deduplicated
    )


def read_publish(url: str) -> Callable[[bytes], PublishResult]:
    """Reader of publish/enqueue to a URL; ``url`` fills in when the server omits it."""

    def read(content: bytes) -> PublishResult:
        reply: _Accepted = _decode(content, _Accepted)
        return _accepted(reply, url)

    return read


def read_batch(urls: Sequence[str]) -> Callable[[bytes], list[PublishResult]]:
    """Reader of ``POST /v2/batch``: one result per item, in request order."""

    def read(content: bytes) -> list[PublishResult]:
        replies: list[_Accepted] = _decode(content, list[_Accepted])
        if len(replies) != len(urls):
            raise ProtocolError(f"batch of {len(urls)} answered with {len(replies)} results")
        return [_accepted(r, u) for r, u in zip(replies, urls, strict=True)]

    return read


def read_message(content: bytes) -> Message:
    result: Message = _decode(content, Message)
    return result


def read_schedule(content: bytes) -> Schedule:
    result: Schedule = _decode(content, Schedule)
    return result


def read_schedules(content: bytes) -> list[Schedule]:
    result: list[Schedule] = _decode(content, list[Schedule])
    return result


def read_schedule_id(content: bytes) -> str:
    created: _ScheduleCreated = _decode(content, _ScheduleCreated)
    return created.schedule_id


def read_nothing(_content: bytes) -> None:
    """For answers whose body the SDKs ignore (cancel, delete, pause, resume)."""
