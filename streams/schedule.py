"""The cron table's decisions: keep one row per schedule and fire it once per tick.

A row is the schedule's :class:`ScheduleState` (spec, next and last tick), keyed by the schedule
key on the partition of the schedules topic; the Tick for it comes through the timers topic with
the same key, so the same worker owns both. Every decision is idempotent under replay:

- a spec replayed with an unchanged cron keeps the row's next tick;
- a Tick counts only when it is the row's current next tick; firing advances the tick, so a
  second Tick for the same time (a replay, a stale timer entry, two workers in a rebalance)
  does nothing;
- when a Tick is replayed before the advanced row was stored, the messages it publishes have
  ids and dedup keys derived from (user, schedule, tick, target), so the dedup step drops them.

A schedule to a URL group (``spec.url_group``) publishes to the group's endpoints as they are
at the tick: the runtime resolves the group (streams/groups_view.py) and passes it in, so the
decision stays pure. Its ids and dedup keys derive from the endpoint's url, so a replayed tick
drops every endpoint it already published to even if the group changed in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from kafstash.schemas import cron
from kafstash.schemas.commands import PublishRequest
from kafstash.schemas.groups import UrlGroup
from kafstash.schemas.ids import request_id
from kafstash.schemas.message import Message
from kafstash.schemas.schedules import (
    ScheduleSpec,
    ScheduleState,
    Tick,
    group_tick_dedup_key,
    group_tick_message_id,
    state_key,
    tick_dedup_key,
    tick_message_id,
)
from kafstash.streams.effects import Emit, Step

GROUP_NOT_FOUND = "url group not found"


@dataclass(frozen=True, slots=True)
class TickTarget:
    """One endpoint a group firing publishes to (delivered with ``Upstash-Topic-Name``)."""

    url: str
    topic_name: str
    endpoint_name: str | None = None


def group_targets(group: UrlGroup) -> list[TickTarget]:
    return [
        TickTarget(url=e.url, topic_name=group.name, endpoint_name=e.name) for e in group.endpoints
    ]


def _next(spec: ScheduleSpec, after_ms: int) -> tuple[int | None, str | None]:
    try:
        return cron.next_tick(spec.cron, after_ms), None
    except (ValueError, OverflowError) as exc:  # a Kafka-native writer may send a bad cron
        return None, f"invalid cron: {exc}"


def _publish(state: ScheduleState, step: Step) -> Step:
    """Add the state record and the timer wake-up to ``step`` (whose row is ``state``)."""
    spec = state.spec
    key = state_key(spec.user_id, spec.schedule_id)
    return Step(
        emits=(*step.emits, Emit("state", key, state)),
        put=state,
        wake_at=state.next_schedule_time,
        put_after_acks=step.put_after_acks,
    )


def on_spec(spec: ScheduleSpec, row: ScheduleState | None, *, now_ms: int) -> Step:
    """A schedule was created or overwritten (also paused or resumed)."""
    if row is not None and row.spec.cron == spec.cron and row.next_schedule_time is not None:
        # Same cron (a pause, a resume, other settings, or a replay): the tick stays.
        state = msgspec.structs.replace(row, spec=spec)
    else:
        nxt, error = _next(spec, now_ms)
        state = ScheduleState(
            spec=spec,
            next_schedule_time=nxt,
            last_schedule_time=row.last_schedule_time if row else None,
            last_message_ids=row.last_message_ids if row else [],
            error=error,
        )
    return _publish(state, Step())


def on_delete(user_id: str, schedule_id: str, row: ScheduleState | None) -> Step:
    """The spec's tombstone: drop the row and the read model; a pending Tick finds no row."""
    return Step(
        emits=(Emit("state", state_key(user_id, schedule_id), None),), delete=row is not None
    )


def _request(
    spec: ScheduleSpec,
    due: int,
    *,
    now_ms: int,
    url: str,
    message_id: str,
    dedup_key: str,
    target: TickTarget | None,
) -> PublishRequest:
    message: Message = msgspec.structs.replace(
        spec.template,
        message_id=message_id,
        user_id=spec.user_id,
        url=url,
        created_at=now_ms,
        not_before=due + spec.delay_ms,
        schedule_id=spec.schedule_id,
        queue_name=spec.queue_name,
        caller_ip=spec.caller_ip,
        dedup_id=None,
        topic_name=target.topic_name if target else None,
        endpoint_name=target.endpoint_name if target else None,
    )
    return PublishRequest(request_id=request_id(), message=message, dedup_key=dedup_key)


def tick_messages(
    spec: ScheduleSpec,
    due: int,
    targets: Sequence[TickTarget] | None = None,
    *,
    now_ms: int,
) -> list[PublishRequest]:
    """One PublishRequest per target for the tick at ``due``; ids are derived, not random.

    ``targets`` are a group schedule's resolved endpoints; a URL schedule passes None and
    publishes to ``spec.targets`` (its destination).
    """
    user, sid = spec.user_id, spec.schedule_id
    if targets is not None:
        out = []
        for t in targets:
            mid = group_tick_message_id(user, sid, due, t.url)
            key = group_tick_dedup_key(user, sid, due, mid)
            out.append(
                _request(
                    spec, due, now_ms=now_ms, url=t.url, message_id=mid, dedup_key=key, target=t
                )
            )
        return out
    return [
        _request(
            spec,
            due,
            now_ms=now_ms,
            url=url,
            message_id=tick_message_id(user, sid, due, i, url),
            dedup_key=tick_dedup_key(user, sid, due, i),
            target=None,
        )
        for i, url in enumerate(spec.targets or [spec.destination])
    ]


def on_tick(
    tick: Tick, row: ScheduleState | None, *, now_ms: int, group: UrlGroup | None = None
) -> Step:
    """Fire ``row`` for ``tick``; ``group`` is the row's URL group as it is now (None: gone)."""
    if row is None or row.next_schedule_time != tick.due or tick.due > now_ms:
        return Step(notes=("ignored: not this schedule's current tick",))
    # From max(now, due): a tick missed while workers were down fires once, late, then the
    # schedule continues from now instead of bursting through every missed tick.
    nxt, error = _next(row.spec, max(now_ms, tick.due))
    if row.spec.paused:
        state = msgspec.structs.replace(row, next_schedule_time=nxt, error=error)
        return _publish(state, Step(notes=("skipped: paused",)))
    targets: list[TickTarget] | None = None
    if row.spec.url_group is not None:
        if group is None:
            # The group was deleted since: nothing to publish to; GET shows why, and the
            # schedule keeps ticking so that re-creating the group resumes it.
            state = msgspec.structs.replace(
                row,
                next_schedule_time=nxt,
                last_schedule_time=tick.due,
                last_message_ids=[],
                error=error or GROUP_NOT_FOUND,
            )
            return _publish(state, Step(notes=("skipped: url group not found",)))
        targets = group_targets(group)
    requests = tick_messages(row.spec, tick.due, targets, now_ms=now_ms)
    emits = tuple(Emit("requests", r.dedup_key or "", r) for r in requests)
    state = msgspec.structs.replace(
        row,
        next_schedule_time=nxt,
        last_schedule_time=tick.due,
        last_message_ids=[r.message.message_id for r in requests],
        error=error,
    )
    # The advanced row is stored only once the requests are acknowledged: a crash in between
    # replays this tick (same ids, dropped by dedup) instead of losing it.
    return _publish(state, Step(emits=emits, put_after_acks=True))


def wake_time(row: ScheduleState) -> int | None:
    """When the timer must look at ``row`` again (rebuilding the index after recovery)."""
    return row.next_schedule_time
