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
"""

from __future__ import annotations

import msgspec

from schemas import cron
from schemas.commands import PublishRequest
from schemas.ids import request_id
from schemas.message import Message
from schemas.schedules import (
    ScheduleSpec,
    ScheduleState,
    Tick,
    state_key,
    tick_dedup_key,
    tick_message_id,
)
from streams.effects import Emit, Step


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


def tick_messages(spec: ScheduleSpec, due: int, *, now_ms: int) -> list[PublishRequest]:
    """One PublishRequest per target for the tick at ``due``; ids are derived, not random."""
    out = []
    for i, url in enumerate(spec.targets or [spec.destination]):
        message: Message = msgspec.structs.replace(
            spec.template,
            message_id=tick_message_id(spec.user_id, spec.schedule_id, due, i, url),
            user_id=spec.user_id,
            url=url,
            created_at=now_ms,
            not_before=due + spec.delay_ms,
            schedule_id=spec.schedule_id,
            queue_name=spec.queue_name,
            caller_ip=spec.caller_ip,
            dedup_id=None,
        )
        out.append(
            PublishRequest(
                request_id=request_id(),
                message=message,
                dedup_key=tick_dedup_key(spec.user_id, spec.schedule_id, due, i),
            )
        )
    return out


def on_tick(tick: Tick, row: ScheduleState | None, *, now_ms: int) -> Step:
    if row is None or row.next_schedule_time != tick.due or tick.due > now_ms:
        return Step(notes=("ignored: not this schedule's current tick",))
    # From max(now, due): a tick missed while workers were down fires once, late, then the
    # schedule continues from now instead of bursting through every missed tick.
    nxt, error = _next(row.spec, max(now_ms, tick.due))
    if row.spec.paused:
        state = msgspec.structs.replace(row, next_schedule_time=nxt, error=error)
        return _publish(state, Step(notes=("skipped: paused",)))
    requests = tick_messages(row.spec, tick.due, now_ms=now_ms)
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
