"""State changes of a message: the event log every view and the audit trail are built from."""

from typing import Literal

from msgspec import Struct

from kafstash.schemas.message import Message
from kafstash.schemas.workflow import RunStatus

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

    Upstash Workflow: every event of a run's message names the run (``workflow_run_id``) and,
    for a step's message, the step it carries (``step_id``, ``step_name``, ``step_type``).
    A run's own lifecycle is an event too, keyed and identified by the run id: ``run_status``
    is set (RUN_STARTED, RUN_SUCCESS, RUN_FAILED, RUN_CANCELED), ``state`` mirrors it (ACTIVE,
    DELIVERED, FAILED, CANCELED), ``url`` is the workflow URL, and an end carries the run's
    ``duration_ms`` (start to end). Message views skip run events (:func:`is_run_event`).
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
    workflow_run_id: str | None = None
    step_id: int | None = None
    step_name: str | None = None
    step_type: str | None = None
    run_status: RunStatus | None = None


RUN_EVENT_STATES: dict[RunStatus, State] = {
    "RUN_STARTED": "ACTIVE",
    "RUN_SUCCESS": "DELIVERED",
    "RUN_FAILED": "FAILED",
    "RUN_CANCELED": "CANCELED",
}


def is_run_event(event: MessageEvent) -> bool:
    """A workflow run's lifecycle event, not a message's state change."""
    return event.run_status is not None
