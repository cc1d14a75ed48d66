"""A queue slot is held until the message's callback / failure callback finished too
(sinks/http/slots.py, sinks/http/report.py): which records each outcome appends, with and without
callbacks, and that the gate (streams/gate.py) lets the next message through exactly once."""

from __future__ import annotations

import pytest

from kafstash.producers.api.dlq import republished
from kafstash.producers.api.gates import cancel_records
from kafstash.schemas import codec
from kafstash.schemas.commands import DeliveryDue, PublishRequest
from kafstash.schemas.gates import Admit, Release, Withdraw, flow_control_gate, queue_gate
from kafstash.schemas.message import FlowControl, Message
from kafstash.schemas.topics import Topics
from kafstash.sinks.http.outcome import DeadLetter, Delivered, Outcome, RetryAt
from kafstash.sinks.http.report import Record, after_attempt
from kafstash.streams.effects import Emit
from tests.unit.test_gate import Gates, delivered

Q = queue_gate("u1", "q")
F = flow_control_gate("u1", "k")
CB = "https://cb.example/hook"
FCB = "https://fcb.example/hook"


def _msg(n: int = 1, **kw: object) -> Message:
    base: dict[str, object] = {
        "message_id": f"m{n}",
        "user_id": "u1",
        "url": "https://dest.example/",
        "created_at": 0,
        "not_before": 0,
        "queue_name": "q",
        "max_retries": 2,
    }
    base.update(kw)
    return Message(**base)  # type: ignore[arg-type]


def _after(m: Message, outcome: Outcome, retried: int = 0) -> list[Record]:
    return after_attempt(
        DeliveryDue(message=m, retried=retried, due=0),
        outcome,
        status=200 if isinstance(outcome, Delivered) else 500,
        response_body=b"ok",
        error=None,
        duration_ms=1,
        started_ms=0,
        now_ms=10,
    )


def _releases(records: list[Record]) -> list[tuple[str, str]]:
    return [(k, v.message_id) for t, k, v in records if t == "gates" and isinstance(v, Release)]


def _callbacks(records: list[Record]) -> dict[str, Message]:
    """The callback messages published, by their URL."""
    return {
        v.message.url: v.message
        for t, _, v in records
        if t == "requests" and isinstance(v, PublishRequest)
    }


def test_without_callbacks_the_sender_frees_the_slot_itself() -> None:
    m = _msg(failure_callback=FCB)  # a failure callback is not sent on success
    assert _releases(_after(m, Delivered())) == [(Q, "m1")]
    assert _callbacks(_after(m, Delivered())) == {}
    assert _releases(_after(m, RetryAt(at_ms=5, reason="x"))) == []


def test_delivered_with_callback_the_callback_carries_the_queue_slot() -> None:
    m = _msg(callback=CB, flow_control=FlowControl(key="k", parallelism=1))
    records = _after(m, Delivered())
    # The flow-control slot is freed at once; the queue slot waits for the callback.
    assert _releases(records) == [(F, "m1")]
    cb = _callbacks(records)[CB]
    assert (cb.release_of, cb.release_gates, cb.queue_name) == ("m1", [Q], None)
    # Round-trips as stored (additive fields).
    assert codec.decode(codec.encode(cb), Message) == cb


def test_a_callback_of_a_non_final_attempt_carries_nothing() -> None:
    records = _after(_msg(callback=CB), RetryAt(at_ms=5, reason="x"))
    assert _releases(records) == []
    cb = _callbacks(records)[CB]
    assert (cb.release_of, cb.release_gates) == (None, [])


def test_final_failure_with_both_the_failure_callback_carries_it() -> None:
    records = _after(_msg(callback=CB, failure_callback=FCB), DeadLetter(reason="x"), retried=2)
    assert _releases(records) == []
    found = _callbacks(records)
    assert (found[FCB].release_of, found[FCB].release_gates) == ("m1", [Q])
    assert (found[CB].release_of, found[CB].release_gates) == (None, [])


def test_final_failure_with_only_a_callback_the_callback_carries_it() -> None:
    records = _after(_msg(callback=CB), DeadLetter(reason="x"), retried=2)
    assert _releases(records) == []
    assert _callbacks(records)[CB].release_of == "m1"


def test_an_unqueued_message_keeps_releasing_flow_control_at_once() -> None:
    m = _msg(queue_name=None, callback=CB, flow_control=FlowControl(key="k", parallelism=1))
    records = _after(m, Delivered())
    assert _releases(records) == [(F, "m1")]
    assert _callbacks(records)[CB].release_of is None


@pytest.mark.parametrize("outcome", [Delivered(), DeadLetter(reason="x")])
def test_the_callback_frees_the_source_slot_when_it_finishes(outcome: Outcome) -> None:
    [cb] = _callbacks(_after(_msg(callback=CB), Delivered())).values()
    assert _releases(_after(cb, outcome, retried=2)) == [(Q, "m1")]
    assert _releases(_after(cb, RetryAt(at_ms=5, reason="x"))) == []


def test_next_message_passes_only_after_the_callback_once_under_replays() -> None:
    g = Gates()
    a, b, c = _msg(1, callback=CB), _msg(2), _msg(3)
    assert delivered(g.run(Q, Admit(message=a))) == ["m1"]
    assert delivered(g.run(Q, Admit(message=b))) == []
    assert delivered(g.run(Q, Admit(message=c))) == []

    def apply(records: list[Record]) -> list[Emit]:
        out: list[Emit] = []
        for t, k, v in records:
            if t == "gates" and isinstance(v, Release):
                out += g.run(k, v)
        return out

    a_done = _after(a, Delivered())
    assert delivered(apply(a_done)) == []  # A delivered, its callback not yet: B waits
    assert delivered(apply(a_done)) == []  # a replay of A's attempt frees nothing either
    [cb] = _callbacks(a_done).values()
    cb_done = _after(cb, Delivered())
    assert delivered(apply(cb_done)) == ["m2"]
    assert delivered(apply(cb_done)) == []  # a replayed Release does not let C through


def test_cancelling_a_carrying_callback_withdraws_the_source() -> None:
    [cb] = _callbacks(_after(_msg(callback=CB), Delivered())).values()
    records = cancel_records(Topics("t"), cb, requested_at=5)
    gates = [(k, codec.decode(v, Withdraw)) for t, k, v in records if t == "t.gates"]
    assert gates == [(Q.encode(), Withdraw(message_id="m1"))]


def test_a_dlq_retry_of_a_callback_holds_no_slot() -> None:
    [cb] = _callbacks(_after(_msg(callback=CB), Delivered())).values()
    again = republished(cb, view=None, built=None, now_ms=50)
    assert (again.release_of, again.release_gates) == (None, [])


@pytest.mark.parametrize(
    ("kw", "outcome", "roles"),
    [
        ({}, Delivered(), ["events", "events", "messages", "gates"]),
        ({"callback": CB}, Delivered(), ["events", "events", "messages", "requests"]),
        ({"callback": CB}, RetryAt(at_ms=5, reason="x"), ["events"] * 3 + ["timers", "requests"]),
        ({}, DeadLetter(reason="x"), ["events"] * 3 + ["messages", "gates", "dlq"]),
        (
            {"callback": CB, "failure_callback": FCB},
            DeadLetter(reason="x"),
            ["events"] * 3 + ["messages", "dlq", "requests", "requests"],
        ),
    ],
)
def test_records_of_each_outcome(kw: dict[str, str], outcome: Outcome, roles: list[str]) -> None:
    assert [t for t, _, _ in _after(_msg(1, **kw), outcome)] == roles
