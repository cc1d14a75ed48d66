"""The events view behind ``GET /v2/events``: the recent part of ``<prefix>.events`` in memory.

``EventStore`` is the pure part (index, dedupe, prune, page; the clock is passed in);
``EventsView`` feeds it from Kafka, starting at (now - retention) through Kafka's time index, so a
restart rebuilds exactly the window it serves. Older events stay in Kafka (and the Iceberg log).

Each event is joined at read time with its message's details, taken from the message's CREATED
event (which carries the redacted message). ``latest_state(message_id)`` answers "where is this
message now" for other views (schedules' last states).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from kafstash.schemas import codec
from kafstash.schemas.defaults import EVENTS_MAX_KEPT, EVENTS_RETENTION_MS
from kafstash.schemas.events import MessageEvent, State, is_run_event
from kafstash.schemas.message import Message
from kafstash.views.follower import TopicFollower

log = logging.getLogger(__name__)

# Position of an event in a user's timeline: (event time ms, arrival sequence number).
Position = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Entry:
    time: int
    seq: int
    event: MessageEvent

    @property
    def position(self) -> Position:
        return (self.time, self.seq)


def _position(entry: Entry) -> Position:
    return (entry.time, entry.seq)


@dataclass(slots=True)
class _Context:
    """What the view knows of one message across its events."""

    message: Message | None
    latest: State
    last_time: int
    user_id: str
    seen: set[tuple[str, int, int]] = field(default_factory=set)
    # This message's events in timeline order: a listing by message id reads these only.
    entries: list[Entry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Page:
    entries: list[Entry]
    next_after: Position | None  # where the next page starts; None on the last page


Predicate = Callable[[MessageEvent, Message | None], bool]


class EventStore:
    """Events per user, ordered by (time, arrival), for ``retention_ms`` and ``max_kept`` each."""

    def __init__(
        self, *, retention_ms: int = EVENTS_RETENTION_MS, max_kept: int = EVENTS_MAX_KEPT
    ) -> None:
        self.retention_ms = retention_ms
        self.max_kept = max_kept
        self._by_user: dict[str, list[Entry]] = {}
        self._contexts: dict[str, _Context] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_user.values())

    def add(self, event: MessageEvent) -> None:
        """Index one event; a replayed duplicate (same message, state, attempt, time) is dropped,
        and so is a workflow run's lifecycle event (no message's state change)."""
        if is_run_event(event):
            return
        mid = event.message_id
        ctx = self._contexts.get(mid)
        if ctx is None:
            ctx = self._contexts[mid] = _Context(
                message=None, latest=event.state, last_time=event.time, user_id=event.user_id
            )
        fingerprint = (event.state, event.retried, event.time)
        if fingerprint in ctx.seen:
            return  # at-least-once upstream: the same record appended twice
        ctx.seen.add(fingerprint)
        if event.message is not None:
            ctx.message = event.message
        ctx.latest = event.state
        ctx.last_time = max(ctx.last_time, event.time)
        entry = Entry(event.time, next(self._seq), event)
        timeline = self._by_user.setdefault(event.user_id, [])
        bisect.insort(timeline, entry, key=_position)
        bisect.insort(ctx.entries, entry, key=_position)
        if len(timeline) > self.max_kept:
            del timeline[: len(timeline) - self.max_kept]

    def message(self, message_id: str) -> Message | None:
        ctx = self._contexts.get(message_id)
        return None if ctx is None else ctx.message

    def latest_state(self, message_id: str) -> State | None:
        """The last state recorded for ``message_id`` within the retention, else None."""
        ctx = self._contexts.get(message_id)
        return None if ctx is None else ctx.latest

    def prune(self, now_ms: int) -> int:
        """Forget events older than the retention; returns how many went."""
        cutoff = now_ms - self.retention_ms
        dropped = 0
        for timeline in self._by_user.values():
            idx = bisect.bisect_left(timeline, (cutoff, -1), key=_position)
            dropped += idx
            del timeline[:idx]
        for mid, ctx in list(self._contexts.items()):
            if ctx.last_time < cutoff:
                del self._contexts[mid]
            elif ctx.entries and ctx.entries[0].time < cutoff:
                del ctx.entries[: bisect.bisect_left(ctx.entries, (cutoff, -1), key=_position)]
        return dropped

    def select(
        self,
        user_id: str,
        predicate: Predicate,
        *,
        count: int,
        latest_first: bool = True,
        after: Position | None = None,
        message_ids: frozenset[str] = frozenset(),
    ) -> Page:
        """Up to ``count`` matching events of ``user_id`` past ``after`` in the chosen order.

        With ``message_ids`` only those messages' events are read (the SDKs' usual question),
        instead of the user's whole timeline.
        """
        timeline = self._by_user.get(user_id, [])
        if message_ids:
            contexts = (self._contexts.get(mid) for mid in message_ids)
            timeline = sorted(
                (e for c in contexts if c is not None and c.user_id == user_id for e in c.entries),
                key=_position,
            )
            horizon = self._by_user.get(user_id, [])
            if horizon:  # entries trimmed by max_kept are gone from the timeline too
                timeline = timeline[
                    bisect.bisect_left(timeline, horizon[0].position, key=_position) :
                ]
        out: list[Entry] = []
        for entry in self._walk(timeline, latest_first=latest_first, after=after):
            if not predicate(entry.event, self.message(entry.event.message_id)):
                continue
            if len(out) == count:
                return Page(out, out[-1].position)
            out.append(entry)
        return Page(out, None)

    @staticmethod
    def _walk(
        timeline: list[Entry], *, latest_first: bool, after: Position | None
    ) -> Iterator[Entry]:
        if latest_first:
            end = len(timeline)
            if after is not None:
                end = bisect.bisect_left(timeline, after, key=_position)
            return (timeline[i] for i in range(end - 1, -1, -1))
        start = 0 if after is None else bisect.bisect_right(timeline, after, key=_position)
        return (timeline[i] for i in range(start, len(timeline)))


class EventsView:
    """``EventStore`` kept current from ``<prefix>.events``; ready once it caught up at start."""

    _PRUNE_EVERY_S = 30.0

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        retention_ms: int = EVENTS_RETENTION_MS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = EventStore(retention_ms=retention_ms)
        self._clock = clock
        self._follower = TopicFollower(
            bootstrap,
            topic,
            self._on_record,
            from_beginning=False,
            start_at_ms=self._now_ms() - retention_ms,
            fetch_min_bytes=64 * 1024,
        )
        self._pruner: asyncio.Task[None] | None = None

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def __aenter__(self) -> Self:
        await self._follower.__aenter__()
        await self._follower.caught_up.wait()
        self._pruner = asyncio.create_task(self._prune_loop(), name="events-view-prune")
        log.info("events view ready: %d events", len(self.store))
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
        await self._follower.__aexit__(et, e, tb)

    def latest_state(self, message_id: str) -> State | None:
        return self.store.latest_state(message_id)

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(self._PRUNE_EVERY_S)
            self.store.prune(self._now_ms())

    def _on_record(self, _key: bytes | None, value: bytes | None) -> None:
        if value is not None:
            self.store.add(codec.decode(value, MessageEvent))
