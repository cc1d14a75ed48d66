"""The accept step: deduplicate a PublishRequest and route the new message to delivery or delay."""

from collections.abc import Iterable

from msgspec import Struct

from kafstash.schemas.commands import Accepted, ExpireDedup, PublishRequest, Schedule
from kafstash.schemas.events import MessageEvent
from kafstash.schemas.redact import redacted
from kafstash.streams.effects import Emit, Step
from kafstash.streams.gate import first_attempt


class DedupEntry(Struct, frozen=True, kw_only=True, rename="camel"):
    """Row of the dedup table: the first message id seen for a dedup key, until ``expires_at``."""

    message_id: str
    expires_at: int


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
        # This very request again, after a crash before its offset was committed. The row is
        # written only once the records below were acknowledged (put_after_acks), so they are
        # durable: repeating them would deliver the message twice. Only the answer is repeated.
        return Step(emits=reply if req.reply else ())

    # A new message. Without a dedup key no row records it, so a replay after a crash repeats
    # these records (same message id; consumers are idempotent on it, receivers dedupe).
    put = DedupEntry(message_id=mid, expires_at=now_ms + window_ms) if req.dedup_key else None
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
    out = [Emit("events", mid, created), Emit("messages", mid, shown)]
    if message.not_before <= now_ms:
        out.append(first_attempt(message, now_ms))  # its queue / flow-control gate, if any
    else:
        out.append(Emit("timers", mid, Schedule(message=message, due=message.not_before)))
    if put is None:
        return Step(emits=(*out, *(reply if req.reply else ())))
    # The caller's answer goes out last, once the row is durable: after a 2xx, a crash of this
    # worker can no longer replay the request into a second delivery.
    return Step(emits=tuple(out), put=put, put_after_acks=True, then=reply if req.reply else ())


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
