"""The API's Kafka adapter: an idempotent producer (acks=all) and the consumers behind its views.

Everything aiokafka-specific on the producer side lives here, so the API speaks only in
``append``/``await`` terms and a different client could replace this module alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Generic, Self, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from kafstash.schemas import codec
from kafstash.schemas.commands import Accepted
from kafstash.schemas.defaults import MAX_TOPIC_MESSAGE_BYTES
from kafstash.schemas.message import Message

log = logging.getLogger(__name__)

T = TypeVar("T")


class LogUnavailable(Exception):
    """The broker did not acknowledge an append in time; whether it was stored is unknown."""


class KafkaLog:
    """Appends records and returns only once the broker acknowledged them (acks=all)."""

    def __init__(
        self, bootstrap: str, *, timeout_s: float, client_id: str = "kafstash-api"
    ) -> None:
        self._timeout_s = timeout_s
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            enable_idempotence=True,  # forces acks=all; retried sends are not duplicated
            linger_ms=1,
            max_batch_size=256 * 1024,
            max_request_size=MAX_TOPIC_MESSAGE_BYTES,
            request_timeout_ms=int(timeout_s * 1000),
            compression_type=None,
        )

    async def __aenter__(self) -> Self:
        await self._producer.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._producer.stop()

    async def append_many(self, records: Sequence[tuple[str, bytes, bytes | None]]) -> None:
        """Append every (topic, key, value); returns when all are acknowledged, else raises.

        A ``None`` value is a tombstone (deletes the key of a compacted topic)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                futures = [
                    await self._producer.send(topic, value=value, key=key)
                    for topic, key, value in records
                ]
                await asyncio.gather(*futures)
        except (TimeoutError, KafkaError) as exc:
            raise LogUnavailable(f"Kafka did not acknowledge the append: {exc!r}") from exc


class _TopicFollower:
    """Reads every partition of one topic (no consumer group) and hands records to ``on_record``."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        on_record: Callable[[bytes | None, bytes | None], None],
        *,
        from_beginning: bool,
        start_at_ms: int | None = None,
    ) -> None:
        self._topic = topic
        self._on_record = on_record
        self._from_beginning = from_beginning
        # Read from the first record at or after this time (Kafka's time index) instead.
        self._start_at_ms = start_at_ms
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
        )
        self._task: asyncio.Task[None] | None = None
        self.caught_up = asyncio.Event()

    async def start(self) -> None:
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self._topic)
        if not partitions:
            await self._consumer._client.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(self._topic) or set()
        if not partitions:
            raise LogUnavailable(
                f"topic {self._topic} does not exist: run `kafstash topics create`"
            )
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        end = await self._consumer.end_offsets(tps)
        if self._start_at_ms is not None:
            found = await self._consumer.offsets_for_times({tp: self._start_at_ms for tp in tps})
            for tp in tps:
                hit = found.get(tp)
                self._consumer.seek(tp, end[tp] if hit is None else hit.offset)
        elif self._from_beginning:
            await self._consumer.seek_to_beginning(*tps)
        else:
            for tp in tps:
                self._consumer.seek(tp, end[tp])
        # Resolve positions now, so records appended after start() returns are never skipped.
        for tp in tps:
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._run(end), name=f"follow:{self._topic}")

    async def _run(self, end: dict[TopicPartition, int]) -> None:
        pending = set()
        if self._from_beginning or self._start_at_ms is not None:
            pending = {tp for tp, off in end.items() if off > 0}
        if not pending:
            self.caught_up.set()
        while True:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=2000)
            for tp, records in batch.items():
                for rec in records:
                    try:
                        self._on_record(rec.key, rec.value)
                    except Exception:
                        log.exception("skipping unreadable record %s@%s", tp, rec.offset)
                if tp in pending and records and records[-1].offset + 1 >= end[tp]:
                    pending.discard(tp)
            if pending and not self.caught_up.is_set():
                for tp in list(pending):
                    if await self._consumer.position(tp) >= end[tp]:
                        pending.discard(tp)
            if not pending:
                self.caught_up.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()


class DecisionWaiter:
    """Awaits the stream worker's dedup decision for a request id (topic ``decisions``)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._waiting: dict[str, asyncio.Future[Accepted]] = {}
        self._follower = _TopicFollower(bootstrap, topic, self._on_record, from_beginning=False)

    async def __aenter__(self) -> Self:
        await self._follower.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._follower.stop()

    def expect(self, request_id: str) -> asyncio.Future[Accepted]:
        fut: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = fut
        fut.add_done_callback(lambda _f: self._waiting.pop(request_id, None))
        return fut

    def _on_record(self, _key: bytes | None, value: bytes | None) -> None:
        if value is None:
            return
        decision = codec.decode(value, Accepted)
        fut = self._waiting.get(decision.request_id)
        if fut is not None and not fut.done():
            fut.set_result(decision)


class MessagesView:
    """Pending messages by id, rebuilt from the compacted ``messages`` topic on every start."""

    _RECENT_TOMBSTONES = 10_000

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._messages: dict[str, Message] = {}
        # Ids finished before our own local insert could land; keeps a stale entry from reappearing.
        self._gone: OrderedDict[str, None] = OrderedDict()
        self._follower = _TopicFollower(bootstrap, topic, self._on_record, from_beginning=True)

    async def __aenter__(self) -> Self:
        await self._follower.start()
        await self._follower.caught_up.wait()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._follower.stop()

    def get(self, message_id: str) -> Message | None:
        return self._messages.get(message_id)

    def pending(self, user_id: str) -> list[Message]:
        """Every pending message of ``user_id`` (bulk cancel); a snapshot, safe to iterate."""
        return [m for m in self._messages.values() if m.user_id == user_id]

    def finished(self, message_id: str) -> bool:
        """Whether ``message_id`` was seen leaving the pending set (among the recent ones)."""
        return message_id in self._gone

    def remember(self, message: Message) -> None:
        """Read-your-writes for this API instance, before the topic round trip completes."""
        if message.message_id not in self._gone:
            self._messages[message.message_id] = message

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
        elif key.decode() not in self._gone:
            # A cancel can overtake the message's own record (the API cancels right after the
            # publish answered): a record arriving after the id went is stale, not a revival.
            self._messages[key.decode()] = codec.decode(value, Message)


class CompactedView(Generic[T]):
    """Latest value per key of a compacted topic, rebuilt from its beginning on every start.

    ``decode(key, value)`` turns a record into the view's value, or ``None`` to ignore it (one
    topic may carry several kinds, told apart by key prefix). ``put``/``drop`` give this API
    instance read-your-writes before the append comes back through the topic; a later record for
    the same key replaces them (the topic is the truth). ``keep(key)``, when given, is asked
    before a tombstone removes a key: False ignores that tombstone (it predates a local put).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        decode: Callable[[str, bytes], T | None],
        keep: Callable[[str], bool] | None = None,
    ) -> None:
        self._decode = decode
        self._keep = keep
        self._values: dict[str, T] = {}
        self._follower = _TopicFollower(bootstrap, topic, self._on_record, from_beginning=True)

    async def __aenter__(self) -> Self:
        await self._follower.start()
        await self._follower.caught_up.wait()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._follower.stop()

    def get(self, key: str) -> T | None:
        return self._values.get(key)

    def scan(self, prefix: str) -> list[tuple[str, T]]:
        """Every (key, value) whose key starts with ``prefix``, in key order."""
        return sorted((k, v) for k, v in self._values.items() if k.startswith(prefix))

    def put(self, key: str, value: T) -> None:
        self._values[key] = value

    def drop(self, key: str) -> None:
        self._values.pop(key, None)

    def _on_record(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        k = key.decode()
        if value is None:
            if self._keep is None or not self._keep(k):
                self._values.pop(k, None)
            return
        decoded = self._decode(k, value)
        if decoded is not None:
            self._values[k] = decoded
