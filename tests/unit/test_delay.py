"""The delay table's decisions: hold until due, fire, or drop when cancelled."""

import msgspec
import pytest

from kafstash.schemas import codec
from kafstash.schemas.commands import Cancel, DeliveryDue, Fire, FireItem, FireMany, Schedule
from kafstash.schemas.defaults import CANCELED_MARKER_TTL_MS
from kafstash.schemas.events import MessageEvent
from kafstash.schemas.message import Message
from kafstash.schemas.partitioner import partition_of
from kafstash.streams.delay import (
    MAX_FIRE_ID_BYTES,
    MAX_FIRES_PER_RECORD,
    Canceled,
    Pending,
    Row,
    fire_records,
    misrouted,
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


# --- FireMany: one record per partition and pop --------------------------------------------


def _fire_many(rows: dict[str, Row], cmd: FireMany, *, now_ms: int) -> list[Step]:
    """What the agent does with a FireMany (streams/app.py): ``on_fire`` item by item, each
    reading the row as the earlier items left it."""
    steps = []
    for item in cmd.fires:
        step = on_fire(item, rows.get(item.message_id), now_ms=now_ms)
        if step.delete:
            del rows[item.message_id]
        steps.append(step)
    return steps


def _pending(mid: str, due: int, retried: int = 0) -> Pending:
    return Pending(message=msgspec.structs.replace(MSG, message_id=mid), due=due, retried=retried)


def test_a_fire_item_decides_as_a_fire() -> None:
    row = Pending(message=MSG, due=NOW - 3, retried=2)

    item = on_fire(FireItem(message_id=MID, due=NOW - 3), row, now_ms=NOW)

    assert item == on_fire(Fire(message_id=MID, due=NOW - 3), row, now_ms=NOW)
    assert item == Step(emits=(_due(2),), delete=True)


def test_fire_many_delivers_each_due_row_once_and_ignores_the_rest() -> None:
    rows: dict[str, Row] = {
        "m1": _pending("m1", NOW - 5),
        "m2": _pending("m2", NOW + 60_000),  # rescheduled: the item is stale
        "m3": Canceled(canceled_at=NOW - 10, expires_at=NOW - 1),
    }
    cmd = FireMany(
        fires=(
            FireItem(message_id="m1", due=NOW - 5),
            FireItem(message_id="m2", due=NOW - 4),
            FireItem(message_id="m3", due=NOW - 1),
            FireItem(message_id="gone", due=NOW - 1),
        )
    )

    steps = _fire_many(rows, cmd, now_ms=NOW)

    assert [len(s.emits) for s in steps] == [1, 0, 0, 0]
    assert [s.delete for s in steps] == [True, False, True, False]
    assert rows == {"m2": _pending("m2", NOW + 60_000)}


def test_a_replayed_fire_many_delivers_nothing_again() -> None:
    # faust replays a record whose offset was not committed before a crash: its rows are gone.
    rows: dict[str, Row] = {f"m{i}": _pending(f"m{i}", NOW - i) for i in range(5)}
    cmd = FireMany(fires=tuple(FireItem(message_id=f"m{i}", due=NOW - i) for i in range(5)))
    first = _fire_many(rows, cmd, now_ms=NOW)
    assert sum(len(s.emits) for s in first) == 5

    assert _fire_many(rows, cmd, now_ms=NOW + 1_000) == [Step()] * 5


def test_the_same_message_twice_in_one_record_delivers_once() -> None:
    # A stale pair and the current one for one message can fall due in the same pop.
    rows: dict[str, Row] = {"m": _pending("m", NOW - 1)}
    cmd = FireMany(
        fires=(
            FireItem(message_id="m", due=NOW - 9),
            FireItem(message_id="m", due=NOW - 1),
            FireItem(message_id="m", due=NOW - 1),
        )
    )

    steps = _fire_many(rows, cmd, now_ms=NOW)

    assert [len(s.emits) for s in steps] == [0, 1, 0]


def test_fire_records_put_every_pair_once_on_its_own_partition_in_order() -> None:
    pairs = [(NOW + i // 7, f"msg_{i}") for i in range(3_000)]

    records = fire_records(pairs, partitions=6)

    seen: list[tuple[int, str]] = []
    for partition, cmd in records:
        assert 0 < len(cmd.fires) <= MAX_FIRES_PER_RECORD
        assert {partition_of(i.message_id.encode(), 6) for i in cmd.fires} == {partition}
        seen += [(i.due, i.message_id) for i in cmd.fires]
    assert sorted(seen) == sorted(pairs)
    for p in range(6):
        mine = [pair for pair in pairs if partition_of(pair[1].encode(), 6) == p]
        assert [(i.due, i.message_id) for q, c in records if q == p for i in c.fires] == mine


def test_fire_records_are_one_per_partition_until_a_record_is_full() -> None:
    pairs = [(NOW, f"msg_{i}") for i in range(40)]

    records = fire_records(pairs, partitions=3)

    assert sorted(p for p, _ in records) == [0, 1, 2]
    assert len(fire_records(pairs, partitions=1)) == 1


def test_fire_records_split_at_the_count_bound() -> None:
    n = 2 * MAX_FIRES_PER_RECORD + 1
    records = fire_records([(NOW, f"msg_{i}") for i in range(n)], partitions=1)

    assert [len(c.fires) for _, c in records] == [MAX_FIRES_PER_RECORD] * 2 + [1]


def test_fire_records_split_long_ids_at_the_byte_bound() -> None:
    long_ids = [(NOW, f"{i:06d}" + "x" * 10_000) for i in range(20)]

    records = fire_records(long_ids, partitions=1)

    assert len(records) > 1
    for _, cmd in records:
        assert sum(len(i.message_id) for i in cmd.fires) <= MAX_FIRE_ID_BYTES
        assert len(codec.encode(cmd)) < 256 * 1024
    assert [i.message_id for _, c in records for i in c.fires] == [m for _, m in long_ids]


def test_a_full_record_stays_far_below_the_topics_max_message_bytes() -> None:
    pairs = [(NOW + i, f"msg_{'Z' * 32}{i:04d}") for i in range(MAX_FIRES_PER_RECORD)]
    [(_, cmd)] = fire_records(pairs, partitions=1)

    assert len(codec.encode(cmd)) < 64 * 1024
    assert codec.decode_timer(codec.encode(cmd)) == cmd


def test_fire_records_of_nothing_is_nothing() -> None:
    assert fire_records([], partitions=4) == []


def test_a_fire_many_on_its_own_partition_is_kept_whole() -> None:
    [(partition, cmd)] = fire_records([(NOW, f"msg_{i}") for i in range(1)], partitions=4)

    assert misrouted(cmd, partition, 4) == (cmd, ())


def test_fires_on_another_partition_are_sent_on_as_single_fires() -> None:
    mids = [f"msg_{i}" for i in range(30)]
    cmd = FireMany(fires=tuple(FireItem(message_id=m, due=NOW) for m in mids))

    here, away = misrouted(cmd, 0, 3)

    assert [i.message_id for i in here.fires] == [
        m for m in mids if partition_of(m.encode(), 3) == 0
    ]
    assert away == tuple(
        Fire(message_id=m, due=NOW) for m in mids if partition_of(m.encode(), 3) != 0
    )


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
