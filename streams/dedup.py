"""The accept step: deduplicate a PublishRequest and route the new message to delivery or delay."""

from collections.abc import Iterable

from msgspec import Struct

from schemas.commands import Accepted, DeliveryDue, ExpireDedup, PublishRequest, Schedule
from schemas.events import MessageEvent
from streams.effects import Emit, Step


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

    # New message, or this very request processed again after a crash (same message id): emit
    # the same records again; every consumer of them is idempotent on the message id.
    put = None
    if req.dedup_key and not (live and existing is not None and existing.message_id == mid):
        put = DedupEntry(message_id=mid, expires_at=now_ms + window_ms)
    created = MessageEvent(
        time=now_ms,
        message_id=mid,
        user_id=message.user_id,
        state="CREATED",
        url=message.url,
        max_retries=message.max_retries,
        next_delivery_time=message.not_before,
        message=message,
    )
    out = [Emit("events", mid, created), Emit("messages", mid, message)]
    if message.not_before <= now_ms:
        out.append(Emit("deliveries", mid, DeliveryDue(message=message, retried=0, due=now_ms)))
    else:
        out.append(Emit("timers", mid, Schedule(message=message, due=message.not_before)))
    if req.reply:
        out.append(
            Emit(
                "decisions",
                req.request_id,
                Accepted(request_id=req.request_id, message_id=mid, deduplicated=False),
            )
        )
    return Step(emits=tuple(out), put=put)


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
