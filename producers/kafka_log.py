"""The API's Kafka adapter: an idempotent producer (acks=all), the dedup decisions and the
pending messages.

The producer side of aiokafka lives here, so the API speaks only in ``append``/``await`` terms;
the consumers are kafstash.views' followers, shared with the other rooms.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from kafstash.schemas import codec
from kafstash.schemas.commands import Decision
from kafstash.schemas.defaults import MAX_TOPIC_MESSAGE_BYTES
from kafstash.schemas.message import Message
from kafstash.schemas.partitioner import CachedPartitioner
from kafstash.views.appender import BatchAppender
from kafstash.views.follower import TopicFollower

log = logging.getLogger(__name__)


class LogUnavailable(Exception):
    """The broker did not acknowledge an append in time; whether it was stored is unknown."""


class KafkaLog:
    """Appends records and returns only once the broker acknowledged them (acks=all)."""

    def __init__(
        self, bootstrap: str, *, timeout_s: float, client_id: str = "kafstash-api"
    ) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            enable_idempotence=True,  # forces acks=all; retried sends are not duplicated
            linger_ms=1,
            max_batch_size=256 * 1024,
            max_request_size=MAX_TOPIC_MESSAGE_BYTES,
            request_timeout_ms=int(timeout_s * 1000),
            compression_type=None,
            partitioner=CachedPartitioner(),
        )

        # Concurrent publishes leave together: one batch per partition per turn of the loop.
        self._appender = BatchAppender(self._producer, timeout_s=timeout_s)

    async def __aenter__(self) -> Self:
        await self._producer.start()
        await self._appender.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._appender.__aexit__(et, e, tb)
        await self._producer.stop()

    async def append_many(self, records: Sequence[tuple[str, bytes, bytes | None]]) -> None:
        """Append every (topic, key, value); returns when all are acknowledged, else raises.

        A ``None`` value is a tombstone (deletes the key of a compacted topic)."""
        try:
            await self._appender.append(records)
        except KafkaError as exc:
            raise LogUnavailable(f"Kafka did not acknowledge the append: {exc!r}") from exc


class DecisionWaiter:
    """Awaits the stream worker's dedup decision for a request id (topic ``decisions``)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._waiting: dict[str, asyncio.Future[Decision]] = {}
        self._follower = TopicFollower(bootstrap, topic, self._on_record, from_beginning=False)

    async def __aenter__(self) -> Self:
        await self._follower.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._follower.__aexit__(et, e, tb)

    def expect(self, request_id: str) -> asyncio.Future[Decision]:
        fut: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = fut
        fut.add_done_callback(lambda _f: self._waiting.pop(request_id, None))
        return fut

    def _on_record(self, _key: bytes | None, value: bytes | None) -> None:
        if value is None:
            return
        decision = codec.decode_decision(value)
        fut = self._waiting.get(decision.request_id)
        if fut is not None and not fut.done():
            fut.set_result(decision)


class MessagesView:
    """Pending messages by id, rebuilt from the compacted ``messages`` topic on every start.

    Each message is kept as its encoded record (bytes) with its owner, not as a decoded
    ``Message``: a decoded one is six objects the cyclic garbage collector tracks, and with
    every pending message in memory its full collections scanned them all, stalling the event
    loop for 100 ms to seconds (docs/architecture.md, "Publish path"). ``bytes`` and a tuple of
    atomic values are not tracked; a message is decoded only when a route reads it.
    """

    _RECENT_TOMBSTONES = 10_000

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._messages: dict[str, tuple[str, bytes]] = {}  # id -> (user id, encoded Message)
        # Ids finished before our own local insert could land; keeps a stale entry from reappearing.
        self._gone: OrderedDict[str, None] = OrderedDict()
        self._follower = TopicFollower(
            bootstrap, topic, self._on_record, from_beginning=True, fetch_min_bytes=64 * 1024
        )

    async def __aenter__(self) -> Self:
        await self._follower.__aenter__()
        await self._follower.caught_up.wait()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._follower.__aexit__(et, e, tb)

    def get(self, message_id: str) -> Message | None:
        entry = self._messages.get(message_id)
        return None if entry is None else codec.decode(entry[1], Message)

    def pending(self, user_id: str) -> list[Message]:
        """Every pending message of ``user_id`` (bulk cancel); a snapshot, safe to iterate."""
        return [
            codec.decode(raw, Message) for owner, raw in self._messages.values() if owner == user_id
        ]

    def finished(self, message_id: str) -> bool:
        """Whether ``message_id`` was seen leaving the pending set (among the recent ones)."""
        return message_id in self._gone

    def remember(self, message: Message) -> None:
        """Read-your-writes for this API instance, before the topic round trip completes."""
        if message.message_id not in self._gone:
            self._messages[message.message_id] = (message.user_id, codec.encode(message))

    def forget(self, message_id: str) -> None:
        self._messages.pop(message_id, None)
        self._gone[message_id] = None
        while len(self._gone) > self._RECENT_TOMBSTONES:
            self._gone.popitem(last=False)

    def _on_record(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if value is None:
            self.forget(key.decode())
        elif (message_id := key.decode()) not in self._gone:
            # A cancel can overtake the message's own record (the API cancels right after the
            # publish answered): a record arriving after the id went is stale, not a revival.
            # Decoded once to refuse an unreadable record here, not in a later route.
            self._messages[message_id] = (codec.decode(value, Message).user_id, value)
