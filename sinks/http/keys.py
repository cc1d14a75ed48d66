"""The signing keys a sender signs with: the configured ones, replaced by ``<prefix>.keys``.

``POST /v2/keys/rotate`` appends a ``SigningKeys`` record keyed by user id to the compacted keys
topic; every sender follows that topic from its beginning and signs with the user's latest
``current`` key. Rotation makes the old *next* key current, so a receiver still holding the keys
it had before the rotation (current + next) accepts requests signed before and after it.

(sinks may not import producers, so this is a small follower of its own.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Self

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from kafstash.schemas import codec
from kafstash.schemas.keys import SigningKeys
from kafstash.schemas.users import User

log = logging.getLogger(__name__)


class SigningKeyBook:
    """user id → the key to sign with now. ``apply`` is the pure part (tested without Kafka)."""

    def __init__(self, users: tuple[User, ...]) -> None:
        self._configured = {u.user_id: u.current_signing_key for u in users}
        self._rotated: dict[str, str] = {}

    def current(self, user_id: str) -> str | None:
        return self._rotated.get(user_id) or self._configured.get(user_id)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        user_id = key.decode()
        if value is None:  # a tombstone: back to the configured keys
            self._rotated.pop(user_id, None)
            return
        keys = codec.decode(value, SigningKeys)
        self._rotated[keys.user_id] = keys.current


class SigningKeyFollower:
    """Keeps a ``SigningKeyBook`` current from the keys topic; ready once it has caught up."""

    def __init__(self, bootstrap: str, topic: str, book: SigningKeyBook) -> None:
        self._topic = topic
        self.book = book
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self._topic)
        if not partitions:
            await self._consumer._client.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(self._topic) or set()
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        if not tps:
            log.warning("topic %s does not exist: signing with the configured keys", self._topic)
            return self
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        end = await self._consumer.end_offsets(tps)
        # Sign nothing with a stale key after a restart: read what is there before delivering.
        while await self._behind(end):
            await self._poll()
        self._task = asyncio.create_task(self._run(), name=f"follow:{self._topic}")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _behind(self, end: dict[TopicPartition, int]) -> bool:
        for tp, offset in end.items():
            if await self._consumer.position(tp) < offset:
                return True
        return False

    async def _poll(self) -> None:
        batch = await self._consumer.getmany(timeout_ms=200)
        for records in batch.values():
            for rec in records:
                try:
                    self.book.apply(rec.key, rec.value)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    log.warning("skipping unreadable signing keys record: %s", exc)

    async def _run(self) -> None:
        while True:
            await self._poll()
