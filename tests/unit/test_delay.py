"""The delay table's decisions: hold until due, fire, or drop when cancelled."""

import msgspec
import pytest

from kafstash.schemas.commands import Cancel, DeliveryDue, Fire, Schedule
from kafstash.schemas.defaults import CANCELED_MARKER_TTL_MS
from kafstash.schemas.events import MessageEvent
from kafstash.schemas.message import Message
from kafstash.streams.delay import (
    Canceled,
    Pending,
    Row,
    on_cancel,
    on_fire,
    on_schedule,
    wake_time,
    wake_time_of,
)
from kafstash.streams.effects import Emit, Step

NOW = 1_700_000_000_000
MID = "msg_delayed"
USER = "defaultUser"
URL = "https://example.com/later"

MSG = Message(
    message_id=MID,
    user_id=USER,
    url=URL,
    created_at=NOW - 60_000,
    not_before=NOW + 30_000,
    body=b"hello",
)


def _due(retried: int, now_ms: int = NOW) -> Emit:
    return Emit("deliveries", MID, DeliveryDue(message=MSG, retried=retried, due=now_ms))


# --- on_schedule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "row", [None, Pending(message=MSG, due=NOW + 5_000, retried=0)], ids=["no row", "pending"]
)
def test_schedule_in_the_future_holds_the_message(row: Row | None) -> None:
    step = on_schedule(Schedule(message=MSG, due=NOW + 30_000, retried=2), row, now_ms=NOW)

    assert step == Step(put=Pending(message=MSG, due=NOW + 30_000, retried=2), wake_at=NOW + 30_000)


def test_schedule_already_due_without_row_delivers_now() -> None:
    step = on_schedule(Schedule(message=MSG, due=NOW - 1, retried=4), None, now_ms=NOW)

    assert step == Step(emits=(_due(4),), delete=False)


def test_schedule_due_exactly_now_delivers_now() -> None:
    step = on_schedule(Schedule(message=MSG, due=NOW, retried=1), None, now_ms=NOW)

    assert step.emits == (_due(1),)
    assert step.put is None
    assert step.wake_at is None


def test_schedule_already_due_over_a_pending_row_delivers_and_deletes_it() -> None:
    row = Pending(message=MSG, due=NOW + 60_000, retried=0)

    step = on_schedule(Schedule(message=MSG, due=NOW - 10, retried=3), row, now_ms=NOW)

    # retried comes from the command, not from the old row
    assert step == Step(emits=(_due(3),), delete=True)


@pytest.mark.parametrize("due", [NOW - 1, NOW + 30_000], ids=["due", "future"])
def test_schedule_after_cancel_is_dropped(due: int) -> None:
    step = on_schedule(
        Schedule(message=MSG, due=due, retried=1),
        Canceled(canceled_at=NOW - 5, expires_at=NOW + 1_000),
        now_ms=NOW,
    )

    assert step.emits == ()
    assert step.put is None
    assert step.delete is False
    assert step.wake_at is None
    assert step.notes == ("dropped: message was cancelled",)


# --- on_fire -------------------------------------------------------------------------------


def test_fire_for_the_current_due_time_delivers_and_deletes() -> None:
    row = Pending(message=MSG, due=NOW - 3, retried=2)

    step = on_fire(Fire(message_id=MID, due=NOW - 3), row, now_ms=NOW)

    assert step == Step(emits=(_due(2),), delete=True)


def test_fire_exactly_at_due_delivers() -> None:
    row = Pending(message=MSG, due=NOW, retried=0)

    assert on_fire(Fire(message_id=MID, due=NOW), row, now_ms=NOW) == Step(
        emits=(_due(0),), delete=True
    )


def test_fire_for_a_stale_due_time_is_ignored() -> None:
    # rescheduled since: the row now holds a later due time
    row = Pending(message=MSG, due=NOW + 60_000, retried=1)

    assert on_fire(Fire(message_id=MID, due=NOW - 1_000), row, now_ms=NOW) == Step()


def test_fire_before_due_is_ignored() -> None:
    row = Pending(message=MSG, due=NOW + 1, retried=0)

    assert on_fire(Fire(message_id=MID, due=NOW + 1), row, now_ms=NOW) == Step()


def test_fire_without_row_is_ignored() -> None:
    assert on_fire(Fire(message_id=MID, due=NOW - 1), None, now_ms=NOW) == Step()


def test_fire_after_cancel_is_ignored() -> None:
    row = Canceled(canceled_at=NOW - 100, expires_at=NOW + 1_000)

    assert on_fire(Fire(message_id=MID, due=NOW - 1), row, now_ms=NOW) == Step()


def test_fire_twice_delivers_once() -> None:
    fire = Fire(message_id=MID, due=NOW - 1)
    first = on_fire(fire, Pending(message=MSG, due=NOW - 1, retried=0), now_ms=NOW)
    assert first.delete is True

    assert on_fire(fire, None, now_ms=NOW + 10) == Step()  # the row is gone after the first


# --- on_cancel -----------------------------------------------------------------------------

CANCEL = Cancel(message_id=MID, user_id=USER, requested_at=NOW - 20)


def test_cancel_pending_message() -> None:
    row = Pending(message=MSG, due=NOW + 30_000, retried=2)

    step = on_cancel(CANCEL, row, now_ms=NOW)

    event = MessageEvent(
        time=NOW, message_id=MID, user_id=USER, state="CANCELED", url=URL, retried=2
    )
    assert step == Step(
        emits=(Emit("events", MID, event), Emit("messages", MID, None)),
        put=Canceled(canceled_at=NOW, expires_at=NOW + CANCELED_MARKER_TTL_MS),
        wake_at=NOW + CANCELED_MARKER_TTL_MS,
    )


def test_cancel_without_row_still_leaves_a_canceled_row() -> None:
    # The message may be in flight at the sender: its retry must be dropped when it returns.
    step = on_cancel(CANCEL, None, now_ms=NOW)

    event = MessageEvent(time=NOW, message_id=MID, user_id=USER, state="CANCELED", url="")
    assert step == Step(
        emits=(Emit("events", MID, event), Emit("messages", MID, None)),
        put=Canceled(canceled_at=NOW, expires_at=NOW + CANCELED_MARKER_TTL_MS),
        wake_at=NOW + CANCELED_MARKER_TTL_MS,
    )


def test_cancel_twice_is_a_no_op_the_second_time() -> None:
    first = on_cancel(CANCEL, Pending(message=MSG, due=NOW + 1, retried=0), now_ms=NOW)
    assert isinstance(first.put, Canceled)

    second = on_cancel(CANCEL, first.put, now_ms=NOW + 1_000)

    assert second == Step()


def test_retry_scheduled_after_cancel_is_dropped() -> None:
    canceled = on_cancel(CANCEL, None, now_ms=NOW).put
    assert isinstance(canceled, Canceled)

    step = on_schedule(Schedule(message=MSG, due=NOW + 12_182, retried=1), canceled, now_ms=NOW)

    assert step.emits == ()
    assert step.put is None


# --- the cancelled marker's end ------------------------------------------------------------


def test_cancelled_marker_is_deleted_when_its_time_comes() -> None:
    row = Canceled(canceled_at=NOW - 10, expires_at=NOW - 1)

    assert on_fire(Fire(message_id=MID, due=NOW - 1), row, now_ms=NOW) == Step(delete=True)


def test_cancelled_marker_stays_before_its_time() -> None:
    row = Canceled(canceled_at=NOW - 10, expires_at=NOW + 5)

    assert on_fire(Fire(message_id=MID, due=NOW + 5), row, now_ms=NOW) == Step()


def test_stale_fire_never_deletes_the_marker() -> None:
    # A Fire for the message's old due time arrives after the cancel: the marker must stay.
    row = Canceled(canceled_at=NOW - 10, expires_at=NOW + CANCELED_MARKER_TTL_MS)

    assert on_fire(Fire(message_id=MID, due=NOW - 20), row, now_ms=NOW) == Step()


def test_wake_time_of_each_row_kind() -> None:
    assert wake_time(Pending(message=MSG, due=NOW + 7, retried=0)) == NOW + 7
    assert wake_time(Canceled(canceled_at=NOW, expires_at=NOW + 9)) == NOW + 9


def test_wake_time_of_an_encoded_row_reads_only_its_due_time() -> None:
    # The recovery path decodes rows this way; it must agree with wake_time on every kind.
    encoder = msgspec.json.Encoder()
    rows: list[Row] = [
        Pending(message=MSG, due=NOW + 7, retried=2),
        Canceled(canceled_at=NOW, expires_at=NOW + 9),
    ]
    for row in rows:
        assert wake_time_of(encoder.encode(row)) == wake_time(row)
