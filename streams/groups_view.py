"""The stream workers' copy of the URL groups, followed from the compacted ``state`` topic.

The API is the groups' only writer (``group/<user>/<name>`` records in ``<prefix>.state``,
schemas/groups.py); a schedule whose destination is a group needs their current endpoints at
every tick, on whichever worker owns the schedule. Every worker therefore reads the group
records of every partition (no consumer group, nothing committed) from the beginning at each
start, and keeps following. :meth:`GroupsView.get` waits until the first read reached the end
offsets seen at start (the tick runtime checks :attr:`GroupsView.ready` and retries the tick
later instead), so a worker that just restarted never takes an existing group for a deleted one.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from kafstash.schemas import codec
from kafstash.schemas.groups import GROUP_KEY_PREFIX, UrlGroup, group_key

log = logging.getLogger(__name__)

_RETRY_S = 1.0


class GroupsView:
    """Latest :class:`UrlGroup` per key; :meth:`run` (a long-lived task) keeps it current."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._groups: dict[str, UrlGroup] = {}
        self.ready = asyncio.Event()

    async def get(self, user_id: str, name: str) -> UrlGroup | None:
        """The group as it is now; waits for the first catch-up after start."""
        await self.ready.wait()
        return self.lookup(user_id, name)

    def lookup(self, user_id: str, name: str) -> UrlGroup | None:
        """The group as it is now; only meaningful once :attr:`ready` is set."""
        return self._groups.get(group_key(user_id, name))

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the state topic, applied to the view (tests feed records this way)."""
        _apply(self._groups, key, value)

    async def run(self) -> None:
        """Follow the topic until cancelled; a broker error restarts the read from the start."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Rebuilding from the beginning is always correct (the topic is compacted);
                # meanwhile ``get`` keeps answering from the last complete copy.
                log.exception("url groups view: reading %s failed, restarting", self._topic)
                await asyncio.sleep(_RETRY_S)

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(self._topic)
            while not partitions:  # provisioning may still be creating it
                await asyncio.sleep(_RETRY_S)
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(self._topic)
            tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            # Built aside and swapped in once complete: readers never see a partial copy.
            building: dict[str, UrlGroup] = {}
            pending = {tp for tp, off in end.items() if off > 0}
            while pending:
                batch = await consumer.getmany(timeout_ms=500, max_records=2000)
                for records in batch.values():
                    for rec in records:
                        _apply(building, rec.key, rec.value)
                for tp in list(pending):
                    if await consumer.position(tp) >= end[tp]:
                        pending.discard(tp)
            self._groups = building
            self.ready.set()
            log.info("url groups view caught up: %d groups", len(building))
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=2000)
                for records in batch.values():
                    for rec in records:
                        self.apply(rec.key, rec.value)
        finally:
            await consumer.stop()


def _apply(groups: dict[str, UrlGroup], key: bytes | None, value: bytes | None) -> None:
    # Other read models (schedules, queues) share the state topic: only group keys count.
    if key is None or not key.startswith(GROUP_KEY_PREFIX.encode()):
        return
    k = key.decode()
    if value is None:
        groups.pop(k, None)
        return
    try:
        groups[k] = codec.decode(value, UrlGroup)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("skipping unreadable url group %s: %s", k, exc)
