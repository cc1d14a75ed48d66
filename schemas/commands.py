"""Commands: what someone asks kafstash to do, appended to a topic and acted on by a room."""

from msgspec import Struct

from kafstash.schemas.message import Message
from kafstash.schemas.schedules import Tick
from kafstash.schemas.waiters import DropWaiters, Notified, NotifyEvent, WaitFor, WaitTimeout
from kafstash.schemas.workflow import EndRun, FailRun, FailureCallbackDone, Invoker, ReviveRun


class PublishRequest(
    Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="publish.v1"
):
    """Accept ``message`` unless its dedup key was seen within the window.

    Topic ``<prefix>.requests``, key = ``dedup_key`` when set, else the message id. ``reply``
    asks the stream worker to answer on ``<prefix>.decisions`` (the API sets it when it waits for
    the dedup decision). Kafka-native producers write this record; see schemas/json/.
    """

    request_id: str
    message: Message
    dedup_key: str | None = None
    reply: bool = False
    # Set on the start of a run begun by ``context.invoke``: who waits for its result.
    invoker: Invoker | None = None


class ExpireDedup(
    Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="expire-dedup"
):
    """Drop the dedup row ``key`` if it still expires at ``expires_at`` (sent by the sweeper).

    Topic ``<prefix>.requests``, key = ``key``, so it meets the row on its partition.
    """

    key: str
    expires_at: int


# Topic ``<prefix>.requests`` (workflow runs: schemas/workflow.py).
RequestCommand = (
    PublishRequest
    | ExpireDedup
    | EndRun
    | FailRun
    | FailureCallbackDone
    | ReviveRun
    | WaitFor
    | NotifyEvent
    | WaitTimeout
    | DropWaiters
)


class Schedule(Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="schedule"):
    """Hold ``message`` until ``due`` (ms), then deliver attempt number ``retried`` (0-based)."""

    message: Message
    due: int
    retried: int = 0


class Fire(Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="fire"):
    """The timer found ``message_id`` due; the partition owner decides and emits the delivery."""

    message_id: str
    due: int


class FireItem(Struct, frozen=True, kw_only=True, rename="camel"):
    """One due message of a ``FireMany``: the pair a ``Fire`` carries."""

    message_id: str
    due: int


class FireMany(
    Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="fire-many"
):
    """The timer found every one of ``fires`` due; the partition owner decides each in order.

    Unlike the other timer commands it goes to an explicit partition, the one every message id
    in ``fires`` hashes to, so that every row it touches lives on the partition the agent writes
    the changelog of. Its key is the first message id (which hashes there too).
    """

    fires: tuple[FireItem, ...]


class Cancel(Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="cancel"):
    """Drop ``message_id`` from the delay table; later retries of it are dropped too."""

    message_id: str
    user_id: str
    requested_at: int


# Topic ``<prefix>.timers``, keyed by message id (Tick: by schedule key, see schemas/schedules.py;
# FireMany: by its first message id, on the partition of all of them). Fire is no longer written
# but still read: a rolling upgrade finds it in the topic.
TimerCommand = Schedule | Fire | FireMany | Cancel | Tick


class DeliveryDue(
    Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="due.v1"
):
    """Deliver attempt ``retried`` of ``message`` now. Topic ``<prefix>.deliveries``."""

    message: Message
    retried: int
    due: int


class Accepted(
    Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="accepted.v1"
):
    """The dedup decision for request ``request_id``. Topic ``<prefix>.decisions``."""

    request_id: str
    message_id: str
    deduplicated: bool


# Topic ``<prefix>.decisions``: what a waiting API request is answered with.
Decision = Accepted | Notified
