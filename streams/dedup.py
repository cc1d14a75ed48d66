"""The accept step: deduplicate a PublishRequest and route the new message to delivery or delay."""

from collections.abc import Iterable

from msgspec import Struct

from kafstash.schemas.commands import Accepted, ExpireDedup, PublishRequest, Schedule
from kafstash.schemas.events import MessageEvent
from kafstash.schemas.message import Message
from kafstash.schemas.redact import redacted
from kafstash.streams.effects import Emit, Step
from kafstash.streams.gate import first_attempt


class DedupEntry(Struct, frozen=True, kw_only=True, rename="camel"):
    """Row of the dedup table: the first message id seen for a dedup key, until ``expires_at``.

    ``claimed_at`` is when the row claimed the key: it is written, and acknowledged, before the
    message's records are produced. None on a row written by an older version, which wrote it
    only once the records were acknowledged.
    """

    message_id: str
    expires_at: int
    claimed_at: int | None = None


def accept(
    req: PublishRequest, existing: DedupEntry | None, *, now_ms: int, window_ms: int
) -> Step:
    message = req.message
    mid = message.message_id
    live = existing is not None and existing.expires_at > now_ms
    if req.dedup_key and existing is not None and live and existing.message_id != mid:
        emits: tuple[Emit, ...] = ()
        if req.reply:
            decision = Accepted(
                request_id=req.request_id, message_id=existing.message_id, deduplicated=True
            )
            emits = (Emit("decisions", req.request_id, decision),)
        return Step(emits=emits)

    reply = (
        Emit(
            "decisions",
            req.request_id,
            Accepted(request_id=req.request_id, message_id=mid, deduplicated=False),
        ),
    )
    if req.dedup_key and existing is not None and live and existing.message_id == mid:
        if existing.claimed_at is None:
            # An older version's row, written once the records below were acknowledged: they
            # are durable, and repeating them would deliver the message twice.
            return Step(emits=reply if req.reply else ())
        # This very request again (its offset was not committed, or a schedule's tick came
        # again) after a run that claimed the row and then may have stopped anywhere: the
        # records that run built (at its time, so a delayed message is held, not delivered,
        # whatever the time now), less those it got out; then the answer.
        return Step(
            emits=_records(message, now_ms=existing.claimed_at),
            unless_since=existing.claimed_at,
            then=reply if req.reply else (),
        )

    # A new message. Without a dedup key no row records it, so a replay after a crash repeats
    # these records (same message id; consumers are idempotent on it, receivers dedupe).
    if not req.dedup_key:
        out = _records(message, now_ms=now_ms)
        return Step(emits=(*out, *(reply if req.reply else ())))
    # The row is claimed before the records go out. Written after them, a worker killed between
    # their acknowledgement and the row's left no row, and the replay delivered the message a
    # second time (tests/faults/test_schedule_groups_restart.py). The caller's answer goes out
    # last, once the records are durable too.
    claim = DedupEntry(message_id=mid, expires_at=now_ms + window_ms, claimed_at=now_ms)
    return Step(
        emits=_records(message, now_ms=now_ms),
        put=claim,
        claim=True,
        then=reply if req.reply else (),
    )


def _records(message: Message, *, now_ms: int) -> tuple[Emit, ...]:
    """A new message's records: CREATED, the messages view's record, its first step."""
    mid = message.message_id
    # What is stored for reading shows redacted fields hashed; deliveries keep the originals.
    shown = redacted(message)
    created = MessageEvent(
        time=now_ms,
        message_id=mid,
        user_id=message.user_id,
        state="CREATED",
        url=message.url,
        max_retries=message.max_retries,
        next_delivery_time=message.not_before,
        message=shown,
    )
    first = (
        first_attempt(message, now_ms)  # its queue / flow-control gate, if any
        if message.not_before <= now_ms
        else Emit("timers", mid, Schedule(message=message, due=message.not_before))
    )
    return (Emit("events", mid, created), Emit("messages", mid, shown), first)


def expire(cmd: ExpireDedup, existing: DedupEntry | None, *, now_ms: int) -> Step:
    """Delete the row only if it is the one the sweeper saw and it has expired.

    A row renewed since the sweep (a new message with the same key after expiry) is kept.
    """
    if existing is not None and existing.expires_at == cmd.expires_at <= now_ms:
        return Step(delete=True)
    return Step()


def expired_keys(rows: Iterable[tuple[str, DedupEntry]], *, now_ms: int) -> list[ExpireDedup]:
    """What the sweeper sends for the rows it read."""
    return [ExpireDedup(key=k, expires_at=e.expires_at) for k, e in rows if e.expires_at <= now_ms]
