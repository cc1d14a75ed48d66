"""State changes of a message: the event log every view and the audit trail are built from."""

from typing import Literal

from msgspec import Struct

from kafstash.schemas.message import Message

State = Literal["CREATED", "ACTIVE", "DELIVERED", "ERROR", "RETRY", "FAILED", "CANCELED"]
TERMINAL_STATES: frozenset[State] = frozenset({"DELIVERED", "FAILED", "CANCELED"})


class MessageEvent(
    Struct,
    frozen=True,
    kw_only=True,
    rename="camel",
    tag_field="type",
    tag="event.v1",
    omit_defaults=True,
):
    """One state change. Topic ``<prefix>.events``, keyed by message id.

    ``retried`` is the attempt number (0-based) the event belongs to. ``message`` is set on CREATED
    so the event log alone can rebuild every view.
    """

    time: int
    message_id: str
    user_id: str
    state: State
    url: str
    retried: int = 0
    max_retries: int = 0
    response_status: int | None = None
    response_body: bytes | None = None
    # The destination's answer headers (Go-canonical names to value lists), on outcome events.
    response_headers: dict[str, list[str]] | None = None
    error: str | None = None
    next_delivery_time: int | None = None
    duration_ms: int | None = None
    message: Message | None = None
