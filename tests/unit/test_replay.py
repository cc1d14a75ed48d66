"""A deduplicated request cut short anywhere and replayed: one first attempt, never none.

``apply`` in streams/app.py carries a step out in this order: a claimed row is written and
acknowledged, then the records are produced; a replay that finds its own claim reads back the
records under their keys since the claim and produces only those ``replay.missing`` does not
find. Here that order runs against a list standing for the topics, stopped after each of its
durable writes in turn (a kill -9), and the same request is then handled again.
"""

from __future__ import annotations

import pytest

from kafstash.schemas import codec
from kafstash.schemas.commands import Cancel, DeliveryDue, PublishRequest, Schedule
from kafstash.schemas.events import MessageEvent
from kafstash.schemas.gates import Admit
from kafstash.schemas.message import Message
from kafstash.streams import dedup, replay
from kafstash.streams.effects import Emit, Step

NOW = 1_700_000_000_000
WINDOW = 3_600_000
KEY = "alice:schedule:s1:1700000000000:msg_tick"
TOPICS = {t: f"p.{t}" for t in ("events", "messages", "deliveries", "timers", "gates")}


def _message(mid: str = "msg_tick", *, not_before: int = NOW, created_at: int = NOW) -> Message:
    return Message(
        message_id=mid,
        user_id="alice",
        url="https://a.example/x",
        created_at=created_at,
        not_before=not_before,
        body=b"k",
    )


class Crashed(Exception):
    pass


class Worker:
    """The effects of ``apply`` on a dedup row and a log of produced records."""

    def __init__(self) -> None:
        self.rows: dict[str, dedup.DedupEntry] = {}
        self.log: list[tuple[str, bytes, bytes | None]] = []  # (topic, key, value)

    def found(self, emits: tuple[Emit, ...]) -> replay.Found:
        wanted = set(replay.wanted(emits, TOPICS))
        out: replay.Found = {w: [] for w in wanted}
        for topic, key, value in self.log:
            if (topic, key) in wanted:
                out[(topic, key)].append(value)
        return out

    def handle(self, req: PublishRequest, now: int, *, crash_after: int | None = None) -> None:
        """Accept ``req``; ``crash_after``: die after that many durable writes."""
        step = dedup.accept(req, self.rows.get(KEY), now_ms=now, window_ms=WINDOW)
        writes = 0

        def durable() -> None:
            nonlocal writes
            writes += 1
            if crash_after is not None and writes > crash_after:
                raise Crashed

        emits = step.emits
        if step.claim:
            assert isinstance(step.put, dedup.DedupEntry)
            durable()
            self.rows[KEY] = step.put
        elif step.unless_since is not None:
            emits = replay.missing(emits, self.found(emits), TOPICS)
        for e in emits:
            durable()
            value = None if e.value is None else codec.encode(e.value)
            self.log.append((TOPICS[e.topic], e.key.encode(), value))

    def first_attempts(self) -> list[str]:
        return [
            codec.decode(v, DeliveryDue).message.message_id
            for t, _, v in self.log
            if t == TOPICS["deliveries"] and v is not None
        ]


def _request(request_id: str, message: Message) -> PublishRequest:
    return PublishRequest(request_id=request_id, message=message, dedup_key=KEY)


@pytest.mark.parametrize("crash_after", range(4))  # after none, the claim, CREATED, messages
def test_a_kill_anywhere_in_an_accept_then_a_replay_delivers_once(crash_after: int) -> None:
    w = Worker()
    with pytest.raises(Crashed):
        w.handle(_request("req_1", _message()), NOW, crash_after=crash_after)
    # The input offset was not committed: the request comes again (a replayed schedule tick
    # builds it anew, with another request id and creation time, and the same ids).
    w.handle(_request("req_2", _message(created_at=NOW + 900)), NOW + 12_000)

    assert w.first_attempts() == ["msg_tick"]
    # Every record of the message is out exactly once.
    assert sorted(t for t, _, _ in w.log) == ["p.deliveries", "p.events", "p.messages"]


def test_no_kill_then_a_replay_produces_nothing() -> None:
    w = Worker()
    w.handle(_request("req_1", _message()), NOW)
    w.handle(_request("req_1", _message()), NOW + 500)

    assert len(w.log) == 3


def test_a_delayed_message_replayed_once_due_is_held_not_delivered() -> None:
    # Its first run scheduled it; by the replay it is due. The replay must find that Schedule
    # rather than look for (and produce) a DeliveryDue next to it.
    w = Worker()
    delayed = _message(not_before=NOW + 1_000)
    w.handle(_request("req_1", delayed), NOW)
    w.handle(_request("req_1", delayed), NOW + 5_000)

    assert [t for t, _, _ in w.log] == ["p.events", "p.messages", "p.timers"]


def _emit(topic: str, key: str, value: object) -> Emit:
    return Emit(topic, key, value)  # type: ignore[arg-type]


def test_a_record_matches_on_its_message_not_its_bytes() -> None:
    due = Emit("deliveries", "msg_tick", DeliveryDue(message=_message(), retried=0, due=NOW))
    later = DeliveryDue(message=_message(created_at=NOW + 7), retried=0, due=NOW + 9_000)
    retry = DeliveryDue(message=_message(), retried=1, due=NOW + 9_000)

    assert replay.is_out(due, [codec.encode(later)])
    assert not replay.is_out(due, [codec.encode(retry)])
    assert not replay.is_out(due, [None, b"not json"])


def test_another_kind_of_record_under_the_key_is_not_the_one() -> None:
    schedule = Emit("timers", "msg_tick", Schedule(message=_message(), due=NOW + 1_000))
    cancel = Cancel(message_id="msg_tick", user_id="alice", requested_at=NOW)

    assert not replay.is_out(schedule, [codec.encode(cancel)])
    assert replay.is_out(schedule, [codec.encode(cancel), codec.encode(schedule.value)])  # type: ignore[arg-type]


def test_a_gates_admit_matches_only_its_own_message() -> None:
    admit = _emit("gates", "q/alice/q1", Admit(message=_message("msg_b")))
    others = [codec.encode(Admit(message=_message("msg_a")))]

    assert not replay.is_out(admit, others)
    assert replay.is_out(admit, [*others, codec.encode(Admit(message=_message("msg_b")))])


def test_an_event_matches_on_its_state() -> None:
    created = MessageEvent(
        time=NOW, message_id="msg_tick", user_id="alice", state="CREATED", url="u"
    )
    active = MessageEvent(time=NOW, message_id="msg_tick", user_id="alice", state="ACTIVE", url="u")

    assert not replay.is_out(Emit("events", "msg_tick", created), [codec.encode(active)])
    assert (
        replay.missing(
            (Emit("events", "msg_tick", created),),
            {("p.events", b"msg_tick"): [codec.encode(created)]},
            TOPICS,
        )
        == ()
    )


def test_a_step_without_a_claim_is_unchanged() -> None:
    plain = PublishRequest(request_id="r", message=_message())
    step = dedup.accept(plain, None, now_ms=NOW, window_ms=WINDOW)

    assert step == Step(emits=step.emits)
    assert step.claim is False
