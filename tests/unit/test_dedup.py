"""accept(): deduplicate a PublishRequest and route the new message to delivery or delay."""

from kafstash.schemas.commands import Accepted, DeliveryDue, ExpireDedup, PublishRequest, Schedule
from kafstash.schemas.events import MessageEvent
from kafstash.schemas.message import Message
from kafstash.streams.dedup import DedupEntry, accept, expire, expired_keys
from kafstash.streams.effects import Emit, Step

NOW = 1_700_000_000_000
WINDOW = 600_000
USER = "defaultUser"
KEY = f"{USER}:id:order-42"


def _message(message_id: str = "msg_new", *, not_before: int = NOW) -> Message:
    return Message(
        message_id=message_id,
        user_id=USER,
        url="https://example.com/hook",
        created_at=NOW - 5,
        not_before=not_before,
        body=b'{"a":1}',
        header={"Content-Type": ["application/json"]},
        max_retries=2,
    )


def _request(
    message: Message, *, dedup_key: str | None = None, reply: bool = False
) -> PublishRequest:
    return PublishRequest(request_id="req_1", message=message, dedup_key=dedup_key, reply=reply)


def _created(message: Message, now_ms: int = NOW) -> Emit:
    event = MessageEvent(
        time=now_ms,
        message_id=message.message_id,
        user_id=USER,
        state="CREATED",
        url="https://example.com/hook",
        max_retries=2,
        next_delivery_time=message.not_before,
        message=message,
    )
    return Emit("events", message.message_id, event)


def _decision(message_id: str, *, deduplicated: bool) -> Emit:
    return Emit(
        "decisions",
        "req_1",
        Accepted(request_id="req_1", message_id=message_id, deduplicated=deduplicated),
    )


# --- no dedup key --------------------------------------------------------------------------


def test_new_message_due_now_is_delivered_at_once() -> None:
    msg = _message()

    step = accept(_request(msg), None, now_ms=NOW, window_ms=WINDOW)

    assert step == Step(
        emits=(
            _created(msg),
            Emit("messages", "msg_new", msg),
            Emit("deliveries", "msg_new", DeliveryDue(message=msg, retried=0, due=NOW)),
        )
    )
    assert step.put is None
    assert step.delete is False


def test_not_before_in_the_past_is_delivered_at_once_with_due_now() -> None:
    msg = _message(not_before=NOW - 1_000)

    step = accept(_request(msg), None, now_ms=NOW, window_ms=WINDOW)

    assert step.emits[2] == Emit(
        "deliveries", "msg_new", DeliveryDue(message=msg, retried=0, due=NOW)
    )


def test_new_message_in_the_future_goes_to_the_timers() -> None:
    msg = _message(not_before=NOW + 10_000)

    step = accept(_request(msg), None, now_ms=NOW, window_ms=WINDOW)

    assert step == Step(
        emits=(
            _created(msg),
            Emit("messages", "msg_new", msg),
            Emit("timers", "msg_new", Schedule(message=msg, due=NOW + 10_000)),
        )
    )


def test_not_before_equal_to_now_is_due() -> None:
    msg = _message(not_before=NOW)

    step = accept(_request(msg), None, now_ms=NOW, window_ms=WINDOW)

    assert [e.topic for e in step.emits] == ["events", "messages", "deliveries"]


def test_reply_without_dedup_key_still_answers() -> None:
    msg = _message()

    step = accept(_request(msg, reply=True), None, now_ms=NOW, window_ms=WINDOW)

    assert step.emits[-1] == _decision("msg_new", deduplicated=False)
    assert step.put is None


# --- with a dedup key ----------------------------------------------------------------------


def test_first_request_with_dedup_key_records_the_key_and_answers() -> None:
    msg = _message()

    step = accept(_request(msg, dedup_key=KEY, reply=True), None, now_ms=NOW, window_ms=WINDOW)

    assert step.put == DedupEntry(message_id="msg_new", expires_at=NOW + WINDOW, claimed_at=NOW)
    assert step.emits == (
        _created(msg),
        Emit("messages", "msg_new", msg),
        Emit("deliveries", "msg_new", DeliveryDue(message=msg, retried=0, due=NOW)),
    )
    # The row is claimed (durable) before those are produced; the answer once they are durable.
    assert step.claim is True
    assert step.put_after_acks is False
    assert step.then == (_decision("msg_new", deduplicated=False),)


def test_first_request_with_dedup_key_and_no_reply_emits_no_decision() -> None:
    msg = _message()

    step = accept(_request(msg, dedup_key=KEY, reply=False), None, now_ms=NOW, window_ms=WINDOW)

    assert step.put == DedupEntry(message_id="msg_new", expires_at=NOW + WINDOW, claimed_at=NOW)
    assert step.claim is True
    assert [e.topic for e in step.emits] == ["events", "messages", "deliveries"]
    assert step.then == ()


def test_duplicate_within_window_answers_with_the_first_message_id_only() -> None:
    first = DedupEntry(message_id="msg_first", expires_at=NOW + 1)
    msg = _message("msg_second")

    step = accept(_request(msg, dedup_key=KEY, reply=True), first, now_ms=NOW, window_ms=WINDOW)

    assert step == Step(emits=(_decision("msg_first", deduplicated=True),))


def test_duplicate_within_window_without_reply_emits_nothing() -> None:
    first = DedupEntry(message_id="msg_first", expires_at=NOW + WINDOW)

    step = accept(
        _request(_message("msg_second"), dedup_key=KEY, reply=False),
        first,
        now_ms=NOW,
        window_ms=WINDOW,
    )

    assert step == Step()


def test_duplicate_at_the_expiry_instant_is_accepted_as_new() -> None:
    # expires_at is exclusive: at now == expires_at the entry is gone.
    old = DedupEntry(message_id="msg_first", expires_at=NOW)
    msg = _message("msg_second")

    step = accept(_request(msg, dedup_key=KEY, reply=True), old, now_ms=NOW, window_ms=WINDOW)

    assert step.put == DedupEntry(message_id="msg_second", expires_at=NOW + WINDOW, claimed_at=NOW)
    assert step.emits[0] == _created(msg)
    assert step.then == (_decision("msg_second", deduplicated=False),)


def test_duplicate_after_expiry_is_accepted_as_new() -> None:
    old = DedupEntry(message_id="msg_first", expires_at=NOW - 60_000)
    msg = _message("msg_second", not_before=NOW + 5_000)

    step = accept(_request(msg, dedup_key=KEY, reply=True), old, now_ms=NOW, window_ms=WINDOW)

    assert step.put == DedupEntry(message_id="msg_second", expires_at=NOW + WINDOW, claimed_at=NOW)
    assert step.emits == (
        _created(msg),
        Emit("messages", "msg_second", msg),
        Emit("timers", "msg_second", Schedule(message=msg, due=NOW + 5_000)),
    )
    assert step.then == (_decision("msg_second", deduplicated=False),)


def test_replay_of_an_older_versions_row_repeats_only_the_answer() -> None:
    # Rows without ``claimed_at`` were written once the records were acknowledged.
    msg = _message("msg_same")
    req = _request(msg, dedup_key=KEY, reply=True)
    row = DedupEntry(message_id="msg_same", expires_at=NOW + WINDOW)

    again = accept(req, row, now_ms=NOW + 2_000, window_ms=WINDOW)

    assert again == Step(emits=(_decision("msg_same", deduplicated=False),))


def test_replay_of_a_claimed_request_rebuilds_its_records_unless_out() -> None:
    msg = _message("msg_same", not_before=NOW + 1_000)
    req = _request(msg, dedup_key=KEY, reply=True)
    first = accept(req, None, now_ms=NOW, window_ms=WINDOW)
    assert first.put is not None

    # The worker died after the claim: the same record comes again, later. The records are
    # those the first run built (a Schedule: it was delayed then, though due by now), to be
    # produced only where the first run did not get them out; the row stays as it is.
    again = accept(req, first.put, now_ms=NOW + 5_000, window_ms=WINDOW)  # type: ignore[arg-type]

    assert again.emits == first.emits
    assert again.unless_since == NOW
    assert again.put is None
    assert again.claim is False
    assert again.then == first.then == (_decision("msg_same", deduplicated=False),)


def test_replay_without_reply_of_an_older_versions_row_emits_nothing() -> None:
    msg = _message("msg_same")
    req = _request(msg, dedup_key=KEY, reply=False)
    row = DedupEntry(message_id="msg_same", expires_at=NOW + WINDOW)

    assert accept(req, row, now_ms=NOW + 1, window_ms=WINDOW) == Step()


# --- expiry sweep ----------------------------------------------------------------------------


def test_expired_keys_lists_only_expired_rows() -> None:
    rows = [
        ("u:id:old", DedupEntry(message_id="m1", expires_at=NOW - 1)),
        ("u:id:edge", DedupEntry(message_id="m2", expires_at=NOW)),
        ("u:id:live", DedupEntry(message_id="m3", expires_at=NOW + 1)),
    ]

    assert expired_keys(rows, now_ms=NOW) == [
        ExpireDedup(key="u:id:old", expires_at=NOW - 1),
        ExpireDedup(key="u:id:edge", expires_at=NOW),
    ]


def test_expire_deletes_the_row_the_sweeper_saw() -> None:
    row = DedupEntry(message_id="m1", expires_at=NOW - 1)

    assert expire(ExpireDedup(key="k", expires_at=NOW - 1), row, now_ms=NOW) == Step(delete=True)


def test_expire_keeps_a_row_renewed_since_the_sweep() -> None:
    renewed = DedupEntry(message_id="m2", expires_at=NOW + 3_600_000)

    assert expire(ExpireDedup(key="k", expires_at=NOW - 1), renewed, now_ms=NOW) == Step()


def test_expire_without_row_is_a_no_op() -> None:
    assert expire(ExpireDedup(key="k", expires_at=NOW - 1), None, now_ms=NOW) == Step()
