"""``AsyncClient``: the asyncio twin of ``Client``, sending the same ``Call`` values."""

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

__all__ = ["AsyncClient", "AsyncSchedules"]

_T = TypeVar("_T")


class AsyncClient:
    """kafstash (or QStash) over HTTP, for asyncio: ``async with`` it or ``await aclose()``.

    ``AsyncClient(token=..., base_url="http://127.0.0.1:8080")``; every method raises a
    ``KafstashError`` subclass on failure. Durations are ``"5m"``-style strings or int ms.
    """

    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._token = token
        self._base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)
        self.schedules = AsyncSchedules(self)

    async def _send(self, call: Call[_T]) -> _T:
        request = req.to_httpx(call, base_url=self._base_url, token=self._token)
        try:
            response = await self._http.send(request)
        except httpx.TransportError as exc:
            raise NetworkError(f"{call.method} {request.url}: {exc!r}") from exc
        return req.finish(call, response)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def publish(
        self, *, url: str, body: str | bytes = b"", **options: Unpack[PublishOptions]
    ) -> PublishResult:
        """Publish ``body`` to ``url`` (``POST /v2/publish/{url}``)."""
        return await self._send(req.publish(url, body, options))

    async def publish_json(
        self, *, url: str, body: object = None, **options: Unpack[PublishOptions]
    ) -> PublishResult:
        """Publish ``json.dumps(body)`` with ``Content-Type: application/json``."""
        return await self._send(req.publish_json(url, body, options))

    async def enqueue(
        self, *, queue: str, url: str, body: str | bytes = b"", **options: Unpack[PublishOptions]
    ) -> PublishResult:
        """Append to FIFO ``queue`` for ``url`` (``POST /v2/enqueue/{queue}/{url}``)."""
        return await self._send(req.enqueue(queue, url, body, options))

    async def batch(self, messages: Sequence[BatchMessage]) -> list[PublishResult]:
        """Publish several messages in one request; results in the order of ``messages``."""
        return await self._send(req.batch(messages))

    async def get_message(self, message_id: str) -> Message:
        """A message not yet delivered; ``NotFound`` once delivered or cancelled."""
        return await self._send(req.get_message(message_id))

    async def cancel_message(self, message_id: str) -> None:
        """Cancel a pending message; ``NotFound`` when it is unknown or already gone."""
        return await self._send(req.cancel_message(message_id))


class AsyncSchedules:
    """``client.schedules`` of an ``AsyncClient``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
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
        return await self._client._send(call)

    async def get(self, schedule_id: str) -> Schedule:
        return await self._client._send(req.get_schedule(schedule_id))

    async def list(self) -> builtins.list[Schedule]:
        return await self._client._send(req.list_schedules())

    async def delete(self, schedule_id: str) -> None:
        return await self._client._send(req.delete_schedule(schedule_id))

    async def pause(self, schedule_id: str) -> None:
        return await self._client._send(req.pause_schedule(schedule_id))

    async def resume(self, schedule_id: str) -> None:
        return await self._client._send(req.resume_schedule(schedule_id))
