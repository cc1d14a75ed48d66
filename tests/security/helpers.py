"""Helpers of the security tests: a sink that keeps raw headers and redirects, topic readers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from kafstash.schemas import codec
from kafstash.schemas.events import MessageEvent
from tests.sink import Sink


@dataclass
class RecordingSink(Sink):
    """The test Sink, plus every request's raw header list and a ``/redirect/...`` route (302)."""

    raw_headers: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    async def _handle(self, request: web.Request) -> web.Response:
        with self._lock:
            self.raw_headers.setdefault(request.path, []).extend(request.headers.items())
        response = await super()._handle(request)
        if request.path.startswith("/redirect/"):
            return web.Response(status=302, headers={"Location": "/ok/redirect-target"})
        return response


def read_topics(bootstrap: str, prefix: str) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every record (key, value) of every topic whose name starts with ``prefix``."""
    return asyncio.run(_read_topics(bootstrap, prefix))


async def _read_topics(bootstrap: str, prefix: str) -> dict[str, list[tuple[bytes, bytes]]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = sorted(t for t in await admin.list_topics() if t.startswith(prefix))
        described = await admin.describe_topics(topics) if topics else []
    finally:
        await admin.close()
    parts = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        out: dict[str, list[tuple[bytes, bytes]]] = {t: [] for t in topics}
        if not parts:
            return out
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        pending = {tp for tp in parts if ends[tp] > 0}
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for r in records:
                    out[tp.topic].append((r.key or b"", r.value or b""))
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        assert not pending, f"could not read to the end of {pending}"
        return out
    finally:
        await consumer.stop()


def events(bootstrap: str, prefix: str) -> list[MessageEvent]:
    records = read_topics(bootstrap, f"{prefix}.events")[f"{prefix}.events"]
    return [codec.decode(value, MessageEvent) for _key, value in records if value]


def wait_until(
    what: str, check: Callable[[], object], timeout: float = 90, every: float = 0.5
) -> object:
    """Poll ``check`` until it returns something truthy (generous: the machine is shared)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)
