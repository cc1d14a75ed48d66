"""``context.waitForEvent`` and ``notify`` (workflow-api.md §3.4): waiters for an event id.

Waiters live in the stream worker's ``waiters`` table, one row per ``(user, event id)`` (key
``wt/<user>/<event id>``), so a notify meets every waiter of its event on one partition. A
waiter holds the two messages it may become, built by the API from the wait request: the
notified step to the workflow URL, and the timed-out step to the timeout URL; the worker only
fills in their body and a message id derived from the waiter (a replay makes the same one).
The row's read model goes to the ``state`` topic under ``waiters/<user>/<event id>``.
"""

from msgspec import Struct

from kafstash.schemas.message import Message

WAITER_KEY_PREFIX = "wt/"
WAITERS_STATE_PREFIX = "waiters/"


def waiter_key(user_id: str, event_id: str) -> str:
    """The requests-topic key of every wait, notify and timeout of one event id."""
    return f"{WAITER_KEY_PREFIX}{user_id}/{event_id}"


def waiters_state_key(user_id: str, event_id: str) -> str:
    return f"{WAITERS_STATE_PREFIX}{user_id}/{event_id}"


class Waiter(Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """One run's step waiting for an event; ``step`` is the SDK's step JSON (stepId, stepName,
    stepType, concurrent, targetStep), ``deadline`` in Unix ms."""

    waiter_id: str
    run_id: str
    url: str
    deadline: int
    created_at: int
    step: bytes
    notified: Message  # the step delivered when the event comes (body and id filled in then)
    timed_out: Message  # the step delivered at the deadline instead
    headers: dict[str, list[str]] = {}
    timeout_url: str | None = None
    timeout_headers: dict[str, list[str]] = {}


class WaiterRow(Struct, frozen=True, kw_only=True, rename="camel"):
    """Row of the ``waiters`` table and its read model."""

    user_id: str
    event_id: str
    waiters: list[Waiter] = []


class WaitFor(Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="wait"):
    """``POST /v2/wait/<event id>``. Topic ``<prefix>.requests``: the API appends it under the
    run's key (``run_seen`` false), so the run's row learns the event id and refuses a wait of
    an ended run; the row passes it on under the waiter key with ``run_seen`` set."""

    user_id: str
    event_id: str
    waiter: Waiter
    run_seen: bool = False


class DropWaiters(
    Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="waiters-drop"
):
    """Run ``run_id`` ended (success, failure or cancel): its waiters of ``event_id`` go.
    Sent by the run's row; key = waiter key."""

    user_id: str
    event_id: str
    run_id: str


class NotifyEvent(
    Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="notify"
):
    """``POST /v2/notify/[<run id>/]<event id>``: wake the event's waiters (of ``run_id`` only,
    when given) with ``data``; the worker answers on ``decisions``. Key = waiter key."""

    request_id: str
    user_id: str
    event_id: str
    data: bytes
    at: int
    run_id: str | None = None


class WaitTimeout(
    Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="wait-timeout"
):
    """The timer found a waiter of ``event_id`` due at ``due``. Key = waiter key."""

    user_id: str
    event_id: str
    due: int


class NotifiedWaiter(Struct, frozen=True, kw_only=True, rename="camel"):
    waiter: Waiter
    message_id: str


class Notified(
    Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="notified.v1"
):
    """The answer to NotifyEvent ``request_id``: the waiters it woke. Topic ``decisions``."""

    request_id: str
    woken: list[NotifiedWaiter] = []
