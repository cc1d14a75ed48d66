"""``Client``: the blocking client; it sends the ``Call`` values of ``_requests`` with httpx."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from types import TracebackType
from typing import TypeVar, Unpack

import httpx

from kafstash.producers.client import _requests as req
from kafstash.producers.client._errors import NetworkError
from kafstash.producers.client._requests import (
    DEFAULT_BASE_URL,
    DEFAULT_TIMEOUT_S,
    BatchMessage,
    Call,
    MessageOptions,
    PublishOptions,
)
from kafstash.producers.client._results import Message, PublishResult, Schedule

__all__ = ["Client", "Schedules"]

_T = TypeVar("_T")


class Client:
    """kafstash (or QStash) over HTTP, blocking. Use it as a context manager or ``close()`` it.

    ``Client(token=..., base_url="http://127.0.0.1:8080")``; every method raises a
    ``KafstashError`` subclass on failure. Durations are ``"5m"``-style strings or int ms.
    """

    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._token = token
        self._base_url = base_url.rstrip("/")
        self._http = httpx.Client(timeout=timeout, transport=transport)
        self.schedules = Schedules(self)

    def _send(self, call: Call[_T]) -> _T:
        request = req.to_httpx(call, base_url=self._base_url, token=self._token)
        try:
            response = self._http.send(request)
        except httpx.TransportError as exc:
            raise NetworkError(f"{call.method} {request.url}: {exc!r}") from exc
        return req.finish(call, response)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def publish(
        self, *, url: str, body: str | bytes = b"", **options: Unpack[PublishOptions]
    ) -> PublishResult:
        """Publish ``body`` to ``url`` (``POST /v2/publish/{url}``)."""
        return self._send(req.publish(url, body, options))

    def publish_json(
        self, *, url: str, body: object = None, **options: Unpack[PublishOptions]
    ) -> PublishResult:
        """Publish ``json.dumps(body)`` with ``Content-Type: application/json``."""
        return self._send(req.publish_json(url, body, options))

    def enqueue(
        self, *, queue: str, url: str, body: str | bytes = b"", **options: Unpack[PublishOptions]
    ) -> PublishResult:
        """Append to FIFO ``queue`` for ``url`` (``POST /v2/enqueue/{queue}/{url}``)."""
        return self._send(req.enqueue(queue, url, body, options))

    def batch(self, messages: Sequence[BatchMessage]) -> list[PublishResult]:
        """Publish several messages in one request; results in the order of ``messages``."""
        return self._send(req.batch(messages))

    def get_message(self, message_id: str) -> Message:
        """A message not yet delivered; ``NotFound`` once delivered or cancelled."""
        return self._send(req.get_message(message_id))

    def cancel_message(self, message_id: str) -> None:
        """Cancel a pending message; ``NotFound`` when it is unknown or already gone."""
        return self._send(req.cancel_message(message_id))


class Schedules:
    """``client.schedules``: cron-driven messages (qstash-api.md §3.5)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        *,
        destination: str,
        cron: str,
        body: str | bytes = b"",
        schedule_id: str | None = None,
        queue: str | None = None,
        **options: Unpack[MessageOptions],
    ) -> str:
        """Create (or, with ``schedule_id``, overwrite) a schedule; returns its id."""
        call = req.create_schedule(
            destination=destination,
            cron=cron,
            body=body,
            schedule_id=schedule_id,
            queue=queue,
            options=options,
        )
        return self._client._send(call)

    def get(self, schedule_id: str) -> Schedule:
        return self._client._send(req.get_schedule(schedule_id))

    def list(self) -> builtins.list[Schedule]:
        return self._client._send(req.list_schedules())

    def delete(self, schedule_id: str) -> None:
        return self._client._send(req.delete_schedule(schedule_id))

    def pause(self, schedule_id: str) -> None:
        return self._client._send(req.pause_schedule(schedule_id))

    def resume(self, schedule_id: str) -> None:
        return self._client._send(req.resume_schedule(schedule_id))
