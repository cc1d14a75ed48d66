"""Gate decisions (streams/gate.py) with a fake clock and an in-memory table: queues and flow
control in front of first attempts, FIFO, limits, pause, rate periods, pins, replays."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import pytest

from kafstash.schemas.commands import DeliveryDue, Fire, PublishRequest, Schedule
from kafstash.schemas.gates import (
    Admit,
    DeleteQueue,
    FlowAction,
    FlowControlAdmin,
    FlowControlState,
    GateCommand,
    GateTick,
    QueueState,
    Release,
    UpsertQueue,
    Withdraw,
    flow_control_gate,
    gates_of,
    queue_gate,
)
from kafstash.schemas.message import FlowControl, Message
from kafstash.sinks.http.outcome import DeadLetter, Delivered, RetryAt
from kafstash.sinks.http.report import after_attempt
from kafstash.streams import dedup, delay, gate
from kafstash.streams.effects import Emit

Q = queue_gate("u1", "q")
F = flow_control_gate("u1", "k")


def msg(n: int, *, queue: str | None = "q", fc: FlowControl | None = None) -> Message:
    return Message(
        message_id=f"m{n}",
        user_id="u1",
        url="https://example.com/",
        created_at=0,
        not_before=0,
        queue_name=queue,
        flow_control=fc,
        body=b"x" * 10,
    )


@dataclass
class Gates:
    """The gate table as the runtime keeps it: main rows and body rows, plus a fake clock."""

    now: int = 1_000_000
    rows: dict[str, gate.GateRow] = field(default_factory=dict)
    bodies: dict[str, Message] = field(default_factory=dict)
    wakes: list[tuple[int, str]] = field(default_factory=list)

    def run(self, key: str, cmd: GateCommand) -> list[Emit]:
        step = gate.decide(key, cmd, self.rows.get(key), load=self.bodies.get, now_ms=self.now)
        for k, m in step.put_bodies:
            self.bodies[k] = m
        for k in step.drop_bodies:
            self.bodies.pop(k, None)
        if step.delete_row:
            self.rows.pop(key, None)
        elif step.row is not None:
            # Rows round-trip through JSON in the table: keep them honest here too.
            raw = msgspec.json.encode(step.row)
            self.rows[key] = msgspec.json.decode(raw, type=gate.GateRow)
        if step.wake_at is not None:
            self.wakes.append((step.wake_at, key))
        return list(step.emits)


def delivered(emits: list[Emit]) -> list[str]:
    return [e.key for e in emits if e.topic == "deliveries"]


def state(emits: list[Emit]) -> QueueState | FlowControlState | None:
    [s] = [e.value for e in emits if e.topic == "state"]
    assert s is None or isinstance(s, QueueState | FlowControlState)
    return s


def test_gates_of_orders_queue_before_flow_control() -> None:
    m = msg(1, fc=FlowControl(key="k", parallelism=1))
    assert gates_of(m) == [Q, F]
    assert gates_of(msg(1, queue=None)) == []


def test_queue_is_fifo_with_parallelism_one_and_auto_created() -> None:
    g = Gates()
    first = g.run(Q, Admit(message=msg(1)))
    assert delivered(first) == ["m1"]
    s = state(first)
    assert isinstance(s, QueueState)
    assert (s.name, s.parallelism, s.lag, s.paused) == ("q", 1, 1, False)
    for n in (2, 3, 4):
        assert delivered(g.run(Q, Admit(message=msg(n)))) == []
    assert g.rows[Q].waiting == ["m2", "m3", "m4"]
    # Bodies are kept out of the main row, one row per waiting message.
    assert set(g.bodies) == {f"{Q}#m2", f"{Q}#m3", f"{Q}#m4"}
    assert b"xxxxxxxxxx" not in msgspec.json.encode(g.rows[Q])
    order = []
    for n in (1, 2, 3):
        out = g.run(Q, Release(message_id=f"m{n}"))
        order += delivered(out)
        [due] = [e.value for e in out if e.topic == "deliveries"]
        assert isinstance(due, DeliveryDue)
        assert due.retried == 0
    assert order == ["m2", "m3", "m4"]
    assert g.bodies == {}


def test_parallelism_two_keeps_two_active() -> None:
    g = Gates()
    g.run(Q, UpsertQueue(parallelism=2, at=1))
    got = [delivered(g.run(Q, Admit(message=msg(n)))) for n in range(1, 5)]
    assert got == [["m1"], ["m2"], [], []]
    assert g.rows[Q].active == ["m1", "m2"]
    assert delivered(g.run(Q, Release(message_id="m2"))) == ["m3"]
    assert delivered(g.run(Q, Release(message_id="m1"))) == ["m4"]


def test_paused_queue_holds_new_and_waiting_then_resume_releases() -> None:
    g = Gates()
    g.run(Q, Admit(message=msg(1)))
    g.run(Q, Admit(message=msg(2)))
    s = state(g.run(Q, UpsertQueue(paused=True, at=2)))
    assert isinstance(s, QueueState)
    assert s.paused
    assert delivered(g.run(Q, Release(message_id="m1"))) == []  # waiting m2 is held
    assert delivered(g.run(Q, Admit(message=msg(3)))) == []  # so is a new one
    out = g.run(Q, UpsertQueue(paused=False, at=3))
    assert delivered(out) == ["m2"]  # parallelism 1: one at a time still
    assert delivered(g.run(Q, Release(message_id="m2"))) == ["m3"]


def test_replayed_admit_and_release_are_ignored() -> None:
    g = Gates()
    g.run(Q, Admit(message=msg(1)))
    g.run(Q, Admit(message=msg(2)))
    assert g.run(Q, Admit(message=msg(1))) == []  # active
    assert g.run(Q, Admit(message=msg(2))) == []  # waiting
    assert g.rows[Q].waiting == ["m2"]
    assert delivered(g.run(Q, Release(message_id="m1"))) == ["m2"]
    assert g.run(Q, Release(message_id="m1")) == []  # freed once only: m3 not let through
    assert g.run(Q, Admit(message=msg(1))) == []  # finished: never again
    assert delivered(g.run(Q, Admit(message=msg(3)))) == []
    assert g.rows[Q].active == ["m2"]


def test_withdraw_waiting_and_active() -> None:
    g = Gates()
    for n in (1, 2, 3):
        g.run(Q, Admit(message=msg(n)))
    assert delivered(g.run(Q, Withdraw(message_id="m2"))) == []
    assert f"{Q}#m2" not in g.bodies
    assert delivered(g.run(Q, Withdraw(message_id="m1"))) == ["m3"]  # slot freed
    assert g.run(Q, Admit(message=msg(2))) == []  # a late replay stays out
    # A cancel that overtook its Admit keeps the message out too.
    g.run(Q, Withdraw(message_id="m9"))
    assert g.run(Q, Admit(message=msg(9))) == []


def test_last_gate_delivers_earlier_gate_admits_to_next() -> None:
    g = Gates()
    m = msg(1, fc=FlowControl(key="k", parallelism=1))
    [onward] = [e for e in g.run(Q, Admit(message=m)) if e.topic != "state"]
    assert (onward.topic, onward.key) == ("gates", F)
    assert isinstance(onward.value, Admit)
    assert delivered(g.run(F, onward.value)) == ["m1"]
    m2 = msg(2, fc=FlowControl(key="k", parallelism=1))
    g.run(Q, UpsertQueue(parallelism=5, at=1))
    [onward2] = [e for e in g.run(Q, Admit(message=m2)) if e.topic == "gates"]
    assert isinstance(onward2.value, Admit)
    assert delivered(g.run(F, onward2.value)) == []  # the flow-control key is full
    assert delivered(g.run(F, Release(message_id="m1"))) == ["m2"]


def test_rate_per_period_waits_for_tick() -> None:
    g = Gates()
    fc = FlowControl(key="k", rate=2, period=10)
    got = [delivered(g.run(F, Admit(message=msg(n, queue=None, fc=fc)))) for n in range(1, 5)]
    assert got == [["m1"], ["m2"], [], []]
    period_end = g.rows[F].period_start + 10_000
    assert g.wakes[-1] == (period_end, F)
    g.now = period_end - 1
    assert delivered(g.run(F, GateTick(due=period_end))) == []  # early tick: nothing
    g.now = period_end
    out = g.run(F, GateTick(due=period_end))
    assert delivered(out) == ["m3", "m4"]
    s = state(out)
    assert isinstance(s, FlowControlState)
    assert (s.rate_max, s.rate_count, s.rate_period, s.wait_list_size) == (2, 2, 10, 0)
    assert s.rate_period_start == period_end // 1000


def test_flow_control_pause_pin_unpin_reset_rate() -> None:
    g = Gates()
    fc = FlowControl(key="k", parallelism=1, rate=1, period=60)

    def admin(action: FlowAction, **kw: int | bool) -> FlowControlState:
        s = state(g.run(F, FlowControlAdmin(action=action, at=g.now, **kw)))  # type: ignore[arg-type]
        assert isinstance(s, FlowControlState)
        return s

    assert delivered(g.run(F, Admit(message=msg(1, queue=None, fc=fc)))) == ["m1"]
    assert admin("pause").is_paused
    g.run(F, Release(message_id="m1"))
    assert delivered(g.run(F, Admit(message=msg(2, queue=None, fc=fc)))) == []
    s = admin("resume")
    assert not s.is_paused
    assert s.rate_count == 1  # m2 still waits: the rate of 1 per minute is used up
    assert s.wait_list_size == 1
    # Pin overrides the messages' limits and starts a new period: m2 passes at once.
    g.now += 1000
    s = state(g.run(F, FlowControlAdmin(action="pin", at=g.now, parallelism=3, rate=5)))
    assert isinstance(s, FlowControlState)
    assert (s.parallelism_max, s.rate_max, s.is_pinned_parallelism, s.is_pinned_rate) == (
        3,
        5,
        True,
        True,
    )
    assert (s.parallelism_count, s.wait_list_size) == (1, 0)
    # A message's own config no longer counts while pinned ...
    g.run(F, Admit(message=msg(3, queue=None, fc=fc)))
    assert g.rows[F].active == ["m2", "m3"]
    # ... and counts again once unpinned.
    s = admin("unpin", unpin_parallelism=True, unpin_rate=True)
    assert (s.parallelism_max, s.rate_max, s.is_pinned_parallelism) == (1, 1, False)
    s = admin("resetRate")
    assert (s.rate_count, s.rate_period_start) == (0, g.now // 1000)


def test_delete_queue_tombstones_state_and_keeps_messages_flowing() -> None:
    g = Gates()
    g.run(Q, Admit(message=msg(1)))
    g.run(Q, Admit(message=msg(2)))
    out = g.run(Q, DeleteQueue(at=5))
    assert state(out) is None
    assert delivered(g.run(Q, Release(message_id="m1"))) == ["m2"]
    g.run(Q, Release(message_id="m2"))
    assert state(g.run(Q, DeleteQueue(at=6))) is None
    assert Q not in g.rows
    s = state(g.run(Q, Admit(message=msg(3))))  # enqueue creates it again
    assert isinstance(s, QueueState)


def test_first_attempt_routing_in_dedup_and_delay() -> None:
    m = msg(1)
    step = dedup.accept(PublishRequest(request_id="r", message=m), None, now_ms=10, window_ms=1000)
    assert [(e.topic, e.key) for e in step.emits if e.topic in ("gates", "deliveries")] == [
        ("gates", Q)
    ]
    plain = msg(2, queue=None)
    step = dedup.accept(
        PublishRequest(request_id="r", message=plain), None, now_ms=10, window_ms=1000
    )
    assert [e.topic for e in step.emits if e.topic in ("gates", "deliveries")] == ["deliveries"]
    # A delayed first attempt passes its gate when due; a retry keeps its slot (no gate).
    row = delay.Pending(message=m, due=20, retried=0)
    [e] = delay.on_fire(Fire(message_id="m1", due=20), row, now_ms=20).emits
    assert (e.topic, e.key) == ("gates", Q)
    [e] = delay.on_schedule(Schedule(message=m, due=5, retried=1), None, now_ms=20).emits
    assert e.topic == "deliveries"


@pytest.mark.parametrize("fc", [None, FlowControl(key="k", parallelism=1)])
def test_sender_releases_every_gate_on_terminal_outcomes(fc: FlowControl | None) -> None:
    m = msg(1, fc=fc)
    due = DeliveryDue(message=m, retried=0, due=0)

    def releases(outcome: Delivered | RetryAt | DeadLetter) -> list[tuple[str, str]]:
        records = after_attempt(
            due,
            outcome,
            status=200,
            response_body=None,
            error=None,
            duration_ms=1,
            started_ms=0,
            now_ms=1,
        )
        return [(k, v.message_id) for t, k, v in records if isinstance(v, Release) and t == "gates"]

    want = [(g, "m1") for g in gates_of(m)]
    assert releases(Delivered()) == want
    assert releases(DeadLetter(reason="x")) == want
    assert releases(RetryAt(at_ms=5, reason="x")) == []


@pytest.mark.parametrize(
    "cmd",
    [
        Admit(message=msg(1, fc=FlowControl(key="k", rate=3, period=60))),
        Release(message_id="m1"),
        Withdraw(message_id="m1"),
        UpsertQueue(parallelism=2, paused=True, at=5),
        UpsertQueue(paused=False, at=5),
        DeleteQueue(at=5),
        FlowControlAdmin(action="pin", at=5, parallelism=2, period=120),
        FlowControlAdmin(action="unpin", at=5, unpin_rate=True),
        GateTick(due=9),
    ],
)
def test_gate_commands_round_trip(cmd: GateCommand) -> None:
    raw = msgspec.json.encode(cmd)
    assert msgspec.json.decode(raw, type=GateCommand) == cmd


def test_gate_states_round_trip() -> None:
    g = Gates()
    for key, m in ((Q, msg(1)), (F, msg(2, queue=None, fc=FlowControl(key="k", parallelism=1)))):
        s = state(g.run(key, Admit(message=m)))
        assert s is not None
        raw = msgspec.json.encode(s)
        assert msgspec.json.decode(raw, type=QueueState | FlowControlState) == s
