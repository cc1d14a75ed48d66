"""streams/schedule.py: the cron table's decisions, driven by a fake clock.

``Table`` applies Steps the way streams/app.py does (row put/delete, timer wake-ups) and
``Dedup`` runs the published requests through the real dedup step, so "delivered" below means
what would reach the deliveries or timers topic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from kafstash.schemas import codec
from kafstash.schemas.commands import DeliveryDue, PublishRequest, Schedule
from kafstash.schemas.message import Message
from kafstash.schemas.schedules import ScheduleSpec, ScheduleState, Tick, tick_message_id
from kafstash.streams import dedup, replay, schedule
from kafstash.streams.effects import Step

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a tick of every cron below
KEY = "alice/s1"
EVERY_2S = "*/2 * * * * *"


def spec(cron: str = EVERY_2S, **kw: object) -> ScheduleSpec:
    template = Message(
        message_id="msg_template",
        user_id="alice",
        url="https://example.com/hook",
        created_at=T0,
        not_before=T0,
        method="PUT",
        body=b"tick",
        header={"X-A": ["1"]},
        max_retries=2,
    )
    fields: dict[str, object] = {
        "schedule_id": "s1",
        "user_id": "alice",
        "cron": cron,
        "destination": "https://example.com/hook",
        "created_at": T0,
        "updated_at": T0,
        "template": template,
        "targets": ["https://example.com/hook"],
    }
    fields.update(kw)
    return ScheduleSpec(**fields)  # type: ignore[arg-type]


@dataclass
class Dedup:
    """The dedup table behind the requests topic: what a published request turns into."""

    rows: dict[str, dedup.DedupEntry] = field(default_factory=dict)
    delivered: list[Message] = field(default_factory=list)
    # Every record produced, as the runtime reads them back for a replayed claim.
    out: list[tuple[str, bytes, bytes | None]] = field(default_factory=list)

    def publish(self, req: PublishRequest, now: int) -> None:
        key = req.dedup_key or req.message.message_id
        step = dedup.accept(req, self.rows.get(key), now_ms=now, window_ms=3_600_000)
        if isinstance(step.put, dedup.DedupEntry):
            self.rows[key] = step.put
        emits = step.emits
        if step.unless_since is not None:
            found: replay.Found = {}
            for topic, k, v in self.out:
                found.setdefault((topic, k), []).append(v)
            emits = replay.missing(emits, found, _TOPICS)
        for e in emits:
            value = None if e.value is None else codec.encode(e.value)
            self.out.append((e.topic, e.key.encode(), value))
            if isinstance(e.value, DeliveryDue | Schedule):
                self.delivered.append(e.value.message)


_TOPICS = {t: t for t in ("events", "messages", "deliveries", "timers", "gates", "decisions")}


@dataclass
class Table:
    row: ScheduleState | None = None
    wakes: list[int] = field(default_factory=list)
    states: list[ScheduleState | None] = field(default_factory=list)
    out: Dedup = field(default_factory=Dedup)

    def apply(self, step: Step, now: int) -> Step:
        for e in step.emits:
            if e.topic == "requests":
                assert isinstance(e.value, PublishRequest)
                assert e.key == e.value.dedup_key
                self.out.publish(e.value, now)
            elif e.topic == "state":
                assert e.key == "schedule/alice/s1"
                assert e.value is None or isinstance(e.value, ScheduleState)
                self.states.append(e.value)
        if step.delete:
            self.row = None
        if step.put is not None:
            assert isinstance(step.put, ScheduleState)
            self.row = step.put
        if step.wake_at is not None:
            self.wakes.append(step.wake_at)
        return step

    def spec(self, s: ScheduleSpec, now: int) -> Step:
        return self.apply(schedule.on_spec(s, self.row, now_ms=now), now)

    def tick(self, due: int, now: int) -> Step:
        return self.apply(
            schedule.on_tick(Tick(schedule_key=KEY, due=due), self.row, now_ms=now), now
        )

    def fire_next(self, lateness: int = 5) -> int:
        """The timer's Tick at the row's next time, seen ``lateness`` ms after it."""
        assert self.row is not None
        assert self.row.next_schedule_time is not None
        due = self.row.next_schedule_time
        self.tick(due, due + lateness)
        return due


def test_new_spec_wakes_at_the_next_tick_and_publishes_its_state() -> None:
    t = Table()
    t.spec(spec(), T0 + 500)
    assert t.row is not None
    assert t.row.next_schedule_time == T0 + 2000
    assert t.wakes == [T0 + 2000]
    assert t.states == [t.row]
    assert t.out.delivered == []


def test_fires_once_per_tick_with_the_template() -> None:
    t = Table()
    t.spec(spec(delay_ms=1000, queue_name="q1", caller_ip="10.0.0.1"), T0 + 500)
    due = t.fire_next()
    [m] = t.out.delivered
    assert m.message_id == tick_message_id("alice", "s1", due, 0, "https://example.com/hook")
    assert (m.url, m.method, m.body, m.header, m.max_retries) == (
        "https://example.com/hook",
        "PUT",
        b"tick",
        {"X-A": ["1"]},
        2,
    )
    assert m.schedule_id == "s1"
    assert m.queue_name == "q1"
    assert m.caller_ip == "10.0.0.1"
    assert m.not_before == due + 1000  # Upstash-Delay applies to each produced message
    assert t.row is not None
    assert t.row.last_schedule_time == due
    assert t.row.last_message_ids == [m.message_id]
    assert t.row.next_schedule_time == due + 2000
    assert t.wakes[-1] == due + 2000
    t.fire_next()
    t.fire_next()
    assert len(t.out.delivered) == 3
    assert len({m.message_id for m in t.out.delivered}) == 3


def test_replayed_or_stale_tick_does_nothing() -> None:
    t = Table()
    t.spec(spec(), T0 + 500)
    due = t.fire_next()
    before = t.row
    step = t.tick(due, due + 100)  # the same Tick again (replay, rebalance, stale index entry)
    assert step.emits == ()
    assert step.put is None
    assert t.row == before
    assert len(t.out.delivered) == 1
    # A Tick that comes early (clock skew between workers) waits for its time.
    assert t.row is not None
    assert t.row.next_schedule_time is not None
    early = t.tick(t.row.next_schedule_time, t.row.next_schedule_time - 1)
    assert early.emits == ()


def test_tick_replayed_before_the_row_was_stored_is_dropped_by_dedup() -> None:
    # Crash after the requests were acknowledged but before the advanced row was written:
    # the same tick runs again from the old row and publishes the same ids with the same keys,
    # which find their claims and records (tests/unit/test_replay.py: a kill inside the accept).
    t = Table()
    t.spec(spec(targets=["https://a.example/x", "https://b.example/y"]), T0 + 500)
    old_row = t.row
    due = t.fire_next()
    assert len(t.out.delivered) == 2
    t.row = old_row
    again = t.tick(due, due + 3000)
    assert len([e for e in again.emits if e.topic == "requests"]) == 2
    assert len(t.out.delivered) == 2  # dedup recognised both messages
    assert [m.url for m in t.out.delivered] == ["https://a.example/x", "https://b.example/y"]


def test_advanced_row_is_stored_only_after_the_requests_are_acknowledged() -> None:
    t = Table()
    t.spec(spec(), T0 + 500)
    assert t.row is not None
    assert t.row.next_schedule_time is not None
    step = schedule.on_tick(
        Tick(schedule_key=KEY, due=t.row.next_schedule_time), t.row, now_ms=T0 + 2001
    )
    assert step.put_after_acks


def test_paused_skips_ticks_and_resume_resumes() -> None:
    t = Table()
    t.spec(spec(), T0 + 500)
    t.fire_next()
    t.spec(spec(paused=True, updated_at=T0 + 2100), T0 + 2100)
    assert t.row is not None
    assert t.row.spec.paused
    assert t.row.next_schedule_time == T0 + 4000  # pausing keeps the tick
    t.fire_next()
    t.fire_next()
    assert len(t.out.delivered) == 1
    assert t.row.next_schedule_time == T0 + 8000  # ticks still advance while paused
    assert t.states[-1] is not None
    assert t.states[-1].last_schedule_time == T0 + 2000
    t.spec(spec(paused=False, updated_at=T0 + 7000), T0 + 7000)
    due = t.fire_next()
    assert due == T0 + 8000
    assert len(t.out.delivered) == 2
    assert t.row.last_schedule_time == due


def test_overwrite_with_a_new_cron_recomputes_the_next_tick() -> None:
    t = Table()
    t.spec(spec(), T0 + 500)
    old_due = t.row.next_schedule_time if t.row else None
    t.spec(spec(cron="0 * * * *", updated_at=T0 + 900), T0 + 900)
    assert t.row is not None
    assert t.row.next_schedule_time == T0 + 3_600_000
    assert t.wakes[-1] == T0 + 3_600_000
    # The old cron's tick is stale now.
    assert old_due is not None
    assert t.tick(old_due, old_due + 5).emits == ()
    assert t.out.delivered == []
    # Same cron, other settings: the tick stays; a replayed spec is a no-op for the tick.
    t.spec(spec(cron="0 * * * *", updated_at=T0 + 1000, delay_ms=5), T0 + 1000)
    assert t.row.next_schedule_time == T0 + 3_600_000


def test_delete_stops_the_schedule() -> None:
    t = Table()
    t.spec(spec(), T0 + 500)
    due = t.fire_next()
    t.apply(schedule.on_delete("alice", "s1", t.row), due + 100)
    assert t.row is None
    assert t.states[-1] is None  # the read model's tombstone
    assert t.tick(due + 2000, due + 2005).emits == ()
    assert len(t.out.delivered) == 1
    # Deleting again (a replayed tombstone) only repeats the tombstone.
    again = schedule.on_delete("alice", "s1", None)
    assert not again.delete
    assert [e.value for e in again.emits] == [None]


def test_missed_ticks_after_downtime_fire_once_late_not_in_a_burst() -> None:
    t = Table()
    t.spec(spec(), T0 + 500)
    t.fire_next()
    assert t.row is not None
    missed = t.row.next_schedule_time
    assert missed is not None
    back = missed + 60_000 + 700  # workers were down for a minute (30 ticks)
    t.tick(missed, back)
    assert len(t.out.delivered) == 2
    late = t.out.delivered[-1]
    assert late.not_before == missed  # due at once
    assert t.row.next_schedule_time == missed + 62_000  # the next tick after now
    assert t.row.last_schedule_time == missed


def test_invalid_cron_from_a_kafka_writer_is_an_error_state_not_a_crash() -> None:
    t = Table()
    t.spec(spec(cron="not a cron"), T0)
    assert t.row is not None
    assert t.row.next_schedule_time is None
    assert t.row.error is not None
    assert "cron" in t.row.error
    assert t.wakes == []


def test_spec_state_round_trip() -> None:
    state = ScheduleState(spec=spec(paused=True), next_schedule_time=5, last_message_ids=["m"])
    raw = msgspec.json.encode(state)
    assert msgspec.json.decode(raw, type=ScheduleState) == state
    tick = Tick(schedule_key=KEY, due=7)
    assert codec.decode_timer(codec.encode(tick)) == tick
