"""Gates: queues and flow-control keys that hold messages back before their first attempt.

A message with ``queue_name`` and/or ``flow_control`` passes its gates in order (queue first, then
flow control) before its first DeliveryDue; retries keep the slot the message already holds.
Gate commands travel on ``<prefix>.gates`` keyed by gate key, so every command of one gate meets
its table row on one partition. The gate owner publishes read models to the compacted
``<prefix>.state`` topic, keyed ``queue/<user>/<name>`` and ``flowControl/<user>/<key>``.
"""

from typing import Literal

from msgspec import Struct

from kafstash.schemas.message import Message

GateKind = Literal["q", "f"]

QUEUE_STATE_PREFIX = "queue/"
FLOW_CONTROL_STATE_PREFIX = "flowControl/"


def queue_gate(user_id: str, queue: str) -> str:
    return f"q/{user_id}/{queue}"


def flow_control_gate(user_id: str, key: str) -> str:
    return f"f/{user_id}/{key}"


def gates_of(message: Message) -> list[str]:
    """The gate keys ``message`` passes before its first attempt, in order."""
    out: list[str] = []
    if message.queue_name:
        out.append(queue_gate(message.user_id, message.queue_name))
    if message.flow_control is not None:
        out.append(flow_control_gate(message.user_id, message.flow_control.key))
    return out


def split_gate(gate: str) -> tuple[GateKind, str, str]:
    """``q/<user>/<name>`` → ("q", user, name). Names may contain ``/`` (flow-control keys)."""
    kind, user, name = gate.split("/", 2)
    if kind not in ("q", "f"):
        raise ValueError(f"not a gate key: {gate!r}")
    return ("q" if kind == "q" else "f"), user, name


def state_key(gate: str) -> str:
    """The ``state`` topic key of a gate's read model."""
    kind, user, name = split_gate(gate)
    prefix = QUEUE_STATE_PREFIX if kind == "q" else FLOW_CONTROL_STATE_PREFIX
    return f"{prefix}{user}/{name}"


# -- commands on <prefix>.gates --------------------------------------------------------------


class Admit(Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="admit"):
    """``message`` asks to pass the gate (its first attempt); it waits if the gate is full."""

    message: Message


class Release(Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="release"):
    """``message_id`` finished (DELIVERED or FAILED): its slot is free."""

    message_id: str


class Withdraw(Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="withdraw"):
    """``message_id`` was cancelled: drop it from the wait list, or free its slot."""

    message_id: str


class UpsertQueue(
    Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="queue.upsert"
):
    """Create or change a queue; ``None`` keeps the current value (pause / resume send one)."""

    parallelism: int | None = None
    paused: bool | None = None
    at: int  # request time (ms)


class DeleteQueue(
    Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="queue.delete"
):
    at: int


FlowAction = Literal["pause", "resume", "pin", "unpin", "resetRate"]


class FlowControlAdmin(
    Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="flow.admin"
):
    """Pause, resume, pin, unpin or reset the rate of a flow-control key.

    ``pin`` sets the given limits (``period`` in seconds) over the messages' own; ``unpin``
    drops the pins whose flag is true.
    """

    action: FlowAction
    at: int
    parallelism: int | None = None
    rate: int | None = None
    period: int | None = None
    unpin_parallelism: bool = False
    unpin_rate: bool = False


class GateTick(Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="tick"):
    """A rate period of the gate ended at ``due``: look at the wait list again."""

    due: int


GateCommand = Admit | Release | Withdraw | UpsertQueue | DeleteQueue | FlowControlAdmin | GateTick


# -- read models on <prefix>.state -------------------------------------------------------------


class QueueState(Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="queue"):
    """QStash's Queue object (qstash-api.md §8.5); ``lag`` counts waiting and active messages."""

    name: str
    parallelism: int
    created_at: int
    updated_at: int
    lag: int
    paused: bool
    # Request time of the last admin command applied: an API instance ignores records older
    # than its own read-your-writes value (not part of QStash's JSON).
    admin_at: int = 0


class FlowControlState(
    Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="flowControl"
):
    """QStash's FlowControlInfo (qstash-api.md §8.7); periods in seconds, 0 = no limit."""

    flow_control_key: str
    wait_list_size: int
    parallelism_max: int
    parallelism_count: int
    rate_max: int
    rate_count: int
    rate_period: int
    rate_period_start: int  # Unix seconds
    is_paused: bool
    is_pinned_parallelism: bool
    is_pinned_rate: bool
    admin_at: int = 0  # as in QueueState


GateState = QueueState | FlowControlState
