"""How far behind each stage is, as Kafka sees it: its group's members and committed offsets
against the partitions' end offsets.

``kafstash status`` and every role's ``/metrics`` (``monitoring.py``) read the same figures from
here, so a number on a dashboard and one in the terminal mean the same thing. Seconds behind is
the age of the oldest record a stage has not committed yet (0 when it is caught up): the record
at the committed offset is fetched for its timestamp.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from kafstash.config import Settings
from kafstash.schemas.topics import Topics


@dataclass(frozen=True, slots=True)
class Stage:
    """A consumer group and the topics it reads."""

    name: str
    group: str
    topics: tuple[str, ...]


def stages(settings: Settings) -> tuple[Stage, ...]:
    """The deployment's consuming stages (the API reads without a group: it has no lag)."""
    t: Topics = settings.topics
    return (
        Stage("intake", f"{settings.streams_app_id}-intake", (t.requests,)),
        Stage(
            "streams", settings.streams_app_id, (t.table_requests, t.timers, t.schedules, t.gates)
        ),
        Stage("sender", settings.sender_group, (t.deliveries,)),
        Stage("archiver", f"{t.prefix}-archiver", (t.events,)),
    )


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int  # the next offset the group reads (the log start when it never committed)
    end: int
    seconds: float  # age of the record at ``committed``; 0 when caught up

    @property
    def records(self) -> int:
        return max(0, self.end - self.committed)


@dataclass(frozen=True, slots=True)
class StageLag:
    stage: Stage
    state: str  # the group's state as the coordinator reports it (Stable, Empty, Dead, ...)
    members: tuple[str, ...]  # client id@host of each member
    partitions: tuple[PartitionLag, ...]

    def records(self, topic: str | None = None) -> int:
        return sum(p.records for p in self.partitions if topic in (None, p.topic))

    def seconds(self, topic: str | None = None) -> float:
        return max((p.seconds for p in self.partitions if topic in (None, p.topic)), default=0.0)


class KafkaProbe:
    """One admin client and one group-less consumer, reused across reads (``--watch``, the
    metrics refresher)."""

    def __init__(self, bootstrap: str, clock: Callable[[], float] = time.time) -> None:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
        )
        self._clock = clock

    async def __aenter__(self) -> KafkaProbe:
        # Both are closed whatever fails: aiokafka warns about a client left unclosed.
        try:
            await self._admin.start()
            await self._consumer.start()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *_exc: object) -> None:
        with contextlib.suppress(Exception):
            await self._consumer.stop()
        with contextlib.suppress(Exception):
            await self._admin.close()

    async def members(self, group: str) -> tuple[str, tuple[str, ...]]:
        """The group's state and its members (``client id@host``)."""
        [response] = await self._admin.describe_consumer_groups([group])
        for g in response.to_object()["groups"]:
            if g["group"] == group:
                return g["state"] or "Dead", tuple(
                    sorted(f"{m['client_id']}@{m['client_host'].lstrip('/')}" for m in g["members"])
                )
        return "Dead", ()

    async def partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        out: list[TopicPartition] = []
        for topic in topics:
            parts = self._consumer.partitions_for_topic(topic)
            if parts is None:  # not in the cached metadata yet
                await self._consumer._client.force_metadata_update()  # no public way
                parts = self._consumer.partitions_for_topic(topic) or set()
            out.extend(TopicPartition(topic, p) for p in sorted(parts))
        return out

    async def stage(self, stage: Stage) -> StageLag:
        state, members = await self.members(stage.group)
        tps = await self.partitions(stage.topics)
        committed = await self._admin.list_consumer_group_offsets(stage.group, partitions=tps)
        ends = await self._consumer.end_offsets(tps) if tps else {}
        starts = await self._consumer.beginning_offsets(tps) if tps else {}
        positions = {}
        for tp in tps:
            meta = committed.get(tp)
            at = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
            positions[tp] = max(at, starts[tp])  # retention may have removed what it pointed at
        ages = await self._ages({tp: at for tp, at in positions.items() if at < ends[tp]})
        return StageLag(
            stage=stage,
            state=state,
            members=members,
            partitions=tuple(
                PartitionLag(
                    topic=tp.topic,
                    partition=tp.partition,
                    committed=positions[tp],
                    end=ends[tp],
                    seconds=ages.get(tp, 0.0),
                )
                for tp in tps
            ),
        )

    async def _ages(
        self, waiting: dict[TopicPartition, int], timeout_s: float = 2.0
    ) -> dict[TopicPartition, float]:
        """The age of the record at each offset (partitions whose fetch does not answer within
        ``timeout_s`` report 0: a lower bound, never a stale figure)."""
        if not waiting:
            return {}
        self._consumer.assign(list(waiting))
        for tp, at in waiting.items():
            self._consumer.seek(tp, at)
        now = self._clock()
        ages: dict[TopicPartition, float] = {}
        deadline = time.monotonic() + timeout_s
        while len(ages) < len(waiting) and time.monotonic() < deadline:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=len(waiting))
            for tp, records in batch.items():
                if records and tp not in ages:
                    ages[tp] = max(0.0, now - records[0].timestamp / 1000)
                    self._consumer.pause(tp)
        self._consumer.assign([])
        return ages

    async def live_keys(self, topic: str, timeout_s: float = 10.0) -> int:
        """How many keys of a compacted topic hold a value (the DLQ's size): read to the end."""
        live: dict[bytes, bool] = {}

        def keep(key: bytes, value: bytes | None) -> None:
            live[key] = value is not None

        await self.read_compacted(topic, keep, timeout_s)
        return sum(live.values())

    async def read_compacted(
        self,
        topic: str,
        on_record: Callable[[bytes, bytes | None], None],
        timeout_s: float = 10.0,
    ) -> bool:
        """Every keyed record of ``topic`` from its start to its current end, in offset order
        per partition (the last one of a key is its value; ``None`` is a tombstone). False when
        ``timeout_s`` ran out first: what was passed on is then only part of the topic."""
        tps = await self.partitions([topic])
        ends = await self._consumer.end_offsets(tps) if tps else {}
        todo = {tp for tp in tps if ends[tp] > 0}
        if not todo:
            return True
        self._consumer.assign(list(todo))
        await self._consumer.seek_to_beginning(*todo)
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            batch = await self._consumer.getmany(timeout_ms=500, max_records=5_000)
            if not batch:
                # Everything below the end may be gone (compaction, retention): where we are is it.
                todo = {tp for tp in todo if await self._consumer.position(tp) < ends[tp]}
                continue
            for tp, records in batch.items():
                for rec in records:
                    if rec.key is not None:
                        on_record(rec.key, rec.value)
                if records and records[-1].offset + 1 >= ends[tp]:
                    todo.discard(tp)
                    self._consumer.pause(tp)
        self._consumer.assign([])
        return not todo


@contextlib.asynccontextmanager
async def probe(bootstrap: str) -> AsyncIterator[KafkaProbe]:
    async with KafkaProbe(bootstrap) as p:
        yield p


async def read_stages(p: KafkaProbe, wanted: Iterable[Stage]) -> list[StageLag]:
    # One after another: the stages' age fetches share the probe's consumer.
    return [await p.stage(s) for s in wanted]
