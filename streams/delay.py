"""The delay table's decisions: hold a message until due, fire it, or drop it when cancelled.

One row per message id (first delivery and every retry pass through here). A cancelled message
leaves a ``Canceled`` row so that a retry still in flight at the sender is dropped when it returns.
"""

from collections.abc import Iterable

import msgspec
from msgspec import Struct

from kafstash.schemas.commands import Cancel, DeliveryDue, Fire, FireItem, FireMany, Schedule
from kafstash.schemas.defaults import CANCELED_MARKER_TTL_MS
from kafstash.schemas.events import MessageEvent
from kafstash.schemas.message import Message
from kafstash.schemas.partitioner import partition_of
from kafstash.streams.effects import Emit, Step
from kafstash.streams.gate import first_attempt


class Pending(Struct, frozen=True, kw_only=True, rename="camel", tag="pending"):
    message: Message
    due: int
    retried: int


class Canceled(Struct, frozen=True, kw_only=True, rename="camel", tag="canceled"):
    canceled_at: int
    expires_at: int  # the marker is deleted then (a Fire at this time)


Row = Pending | Canceled


def _due(message: Message, retried: int, now_ms: int) -> Emit:
    if retried == 0:
        return first_attempt(message, now_ms)  # a retry keeps its gate slot: no gate again
    return Emit(
        "deliveries", message.message_id, DeliveryDue(message=message, retried=retried, due=now_ms)
    )


def on_schedule(cmd: Schedule, row: Row | None, *, now_ms: int) -> Step:
    if isinstance(row, Canceled):
        return Step(notes=("dropped: message was cancelled",))
    if cmd.due <= now_ms:
        return Step(emits=(_due(cmd.message, cmd.retried, now_ms),), delete=row is not None)
    return Step(put=Pending(message=cmd.message, due=cmd.due, retried=cmd.retried), wake_at=cmd.due)


def on_fire(cmd: Fire | FireItem, row: Row | None, *, now_ms: int) -> Step:
    # Only the row's current due time counts: a Fire for an older schedule of the same message
    # (rescheduled since, or fired twice after a rebalance, or replayed after a crash: the row is
    # gone) is ignored. A FireMany is this, item by item, each reading the row as the previous
    # items left it.
    if isinstance(row, Pending) and row.due == cmd.due and row.due <= now_ms:
        return Step(emits=(_due(row.message, row.retried, now_ms),), delete=True)
    if isinstance(row, Canceled) and row.expires_at == cmd.due and row.expires_at <= now_ms:
        return Step(delete=True)
    return Step()


# A FireMany is bounded so that one record stays far below the timers topic's max.message.bytes
# (1 MiB + 64 KiB, kafstash/provision.py) and one event's work stays short: 500 fires are about
# 35 KB with the API's ids. The byte bound is for long ids from Kafka-native producers; even if
# JSON escaped every byte of them six-fold the record would stay under 400 KiB.
MAX_FIRES_PER_RECORD = 500
MAX_FIRE_ID_BYTES = 64 * 1024
# While messages keep falling due, the timer pops every FIRE_GATHER_S (timer_index.py's
# run_due_batches): a burst of 10,000 in one second popped every millisecond made 3,266
# records of three fires (median), and the agent's cost per record, not per fire, set the pace.
# 20 ms made them 156 records of 60 fires, for at most 20 ms of lateness.
FIRE_GATHER_S = 0.02


def fire_records(pairs: Iterable[tuple[int, str]], partitions: int) -> list[tuple[int, FireMany]]:
    """The due ``(time, message id)`` pairs of one pop as FireMany records, each with the
    partition (of ``partitions``) that every one of its message ids hashes to: one record per
    partition, split at ``MAX_FIRES_PER_RECORD`` fires or ``MAX_FIRE_ID_BYTES`` of ids. Each
    partition's pairs keep their order."""
    out: list[tuple[int, FireMany]] = []
    open_: dict[int, tuple[list[FireItem], int]] = {}
    for due, message_id in pairs:
        raw = message_id.encode()
        partition = partition_of(raw, partitions)
        items, size = open_.get(partition, ([], 0))
        if items and (len(items) >= MAX_FIRES_PER_RECORD or size + len(raw) > MAX_FIRE_ID_BYTES):
            out.append((partition, FireMany(fires=tuple(items))))
            items, size = [], 0
        items.append(FireItem(message_id=message_id, due=due))
        open_[partition] = (items, size + len(raw))
    out.extend((partition, FireMany(fires=tuple(items))) for partition, (items, _) in open_.items())
    return out


def misrouted(cmd: FireMany, partition: int, partitions: int) -> tuple[FireMany, tuple[Fire, ...]]:
    """The fires of ``cmd`` whose rows live on ``partition``, and the others as single Fires
    (keyed by message id, so the producer routes each to its row). ``fire_records`` never mixes
    partitions; this keeps a hand-written or mis-sent record from writing a row's changelog to
    another partition than its own."""
    here: list[FireItem] = []
    away: list[Fire] = []
    for item in cmd.fires:
        if partition_of(item.message_id.encode(), partitions) == partition:
            here.append(item)
        else:
            away.append(Fire(message_id=item.message_id, due=item.due))
    return (cmd if not away else FireMany(fires=tuple(here))), tuple(away)


def on_cancel(cmd: Cancel, row: Row | None, *, now_ms: int) -> Step:
    if isinstance(row, Canceled):
        return Step()
    url = row.message.url if isinstance(row, Pending) else ""
    retried = row.retried if isinstance(row, Pending) else 0
    event = MessageEvent(
        time=now_ms,
        message_id=cmd.message_id,
        user_id=cmd.user_id,
        state="CANCELED",
        url=url,
        retried=retried,
    )
    return Step(
        emits=(Emit("events", cmd.message_id, event), Emit("messages", cmd.message_id, None)),
        put=Canceled(canceled_at=now_ms, expires_at=now_ms + CANCELED_MARKER_TTL_MS),
        wake_at=now_ms + CANCELED_MARKER_TTL_MS,
    )


def wake_time(row: Row) -> int:
    """When the timer must look at ``row`` again (rebuilding the index after recovery)."""
    return row.due if isinstance(row, Pending) else row.expires_at


class _PendingWake(Struct, frozen=True, kw_only=True, rename="camel", tag="pending"):
    due: int


class _CanceledWake(Struct, frozen=True, kw_only=True, rename="camel", tag="canceled"):
    expires_at: int


_wake = msgspec.json.Decoder(_PendingWake | _CanceledWake)


def wake_time_of(raw: bytes) -> int:
    """``wake_time`` of an encoded row, decoding only its due time (a row holds its message)."""
    row = _wake.decode(raw)
    return row.due if isinstance(row, _PendingWake) else row.expires_at
