"""What the sender appends after an attempt: events, the retry, the end of the message's life."""

from schemas.commands import DeliveryDue, Schedule
from schemas.events import MessageEvent, State
from schemas.gates import Release, gates_of
from schemas.message import Message
from sinks.http.outcome import DeadLetter, Delivered, Outcome, RetryAt

RESPONSE_BODY_LIMIT = 4096  # bytes of a destination's answer kept in events (audit, DLQ)

Record = tuple[str, str, object | None]  # (topic role, key, record or tombstone)


def releases(message: Message) -> list[Record]:
    """A finished message frees its queue / flow-control slots (QStash also waits for callbacks
    before freeing a queue slot; kafstash frees it at DELIVERED or FAILED)."""
    return [("gates", g, Release(message_id=message.message_id)) for g in gates_of(message)]


def after_attempt(
    due: DeliveryDue,
    outcome: Outcome,
    *,
    status: int | None,
    response_body: bytes | None,
    error: str | None,
    duration_ms: int,
    started_ms: int,
    now_ms: int,
) -> list[Record]:
    m = due.message
    mid = m.message_id

    def event(state: State, at: int | None = None, **extra: object) -> MessageEvent:
        return MessageEvent(
            time=now_ms if at is None else at,
            message_id=mid,
            user_id=m.user_id,
            state=state,
            url=m.url,
            retried=due.retried,
            max_retries=m.max_retries,
            response_status=status,
            response_body=response_body[:RESPONSE_BODY_LIMIT] if response_body else None,
            duration_ms=duration_ms,
            **extra,  # type: ignore[arg-type]
        )

    active = MessageEvent(
        time=started_ms,
        message_id=mid,
        user_id=m.user_id,
        state="ACTIVE",
        url=m.url,
        retried=due.retried,
        max_retries=m.max_retries,
    )
    first: list[Record] = [("events", mid, active)]
    match outcome:
        case Delivered():
            return [
                *first,
                ("events", mid, event("DELIVERED")),
                ("messages", mid, None),
                *releases(m),
            ]
        case RetryAt(at_ms=at_ms, reason=reason):
            retry = Schedule(message=m, due=at_ms, retried=due.retried + 1)
            return [
                *first,
                ("events", mid, event("ERROR", error=error or reason)),
                ("events", mid, event("RETRY", next_delivery_time=at_ms, error=reason)),
                ("timers", mid, retry),
            ]
        case DeadLetter(reason=reason):
            return [
                *first,
                ("events", mid, event("ERROR", error=error or reason)),
                ("events", mid, event("FAILED", error=reason)),
                ("messages", mid, None),
                *releases(m),
            ]
