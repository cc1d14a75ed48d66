"""What the API shares between queues, flow control, batch and cancel: the gate-state view,
gate records for ``<prefix>.gates`` and the cancel records of a (possibly gated) message.

The gate-state view is a CompactedView of the ``state`` topic whose read-your-writes floor is a
state's ``admin_at``: after this API instance answered an admin request it shows the expected
state at once, and a record the stream worker wrote for an older admin request (still in flight)
does not undo that for a moment."""

from __future__ import annotations

import re

import msgspec
from msgspec import structs

from kafstash.producers.api.errors import ApiError
from kafstash.schemas import codec
from kafstash.schemas.commands import Cancel, PublishRequest
from kafstash.schemas.gates import (
    FLOW_CONTROL_STATE_PREFIX,
    QUEUE_STATE_PREFIX,
    FlowControlState,
    GateCommand,
    GateState,
    QueueState,
    Withdraw,
    flow_control_gate,
    gates_of,
    queue_gate,
    state_key,
)
from kafstash.schemas.message import Message
from kafstash.schemas.topics import Topics
from kafstash.views.compacted import CompactedView

Record = tuple[str, bytes, bytes]  # (topic, key, value) for KafkaLog.append_many

_QUEUE_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
_state_decoder = msgspec.json.Decoder(GateState)


GateStateView = CompactedView[GateState]
"""Queue and flow-control read models, keyed ``queue/<user>/<name>`` / ``flowControl/...``."""


def open_gate_state_view(bootstrap: str, state_topic: str) -> GateStateView:
    return CompactedView(bootstrap, state_topic, decode_gate_state, version=_admin_at)


def decode_gate_state(key: str, value: bytes) -> GateState | None:
    # The state topic also carries other kinds (schedules, URL groups): only ours are read.
    if not key.startswith((QUEUE_STATE_PREFIX, FLOW_CONTROL_STATE_PREFIX)):
        return None
    state: GateState = _state_decoder.decode(value)
    return state


def _admin_at(state: GateState) -> int:
    return state.admin_at


def check_queue_name(name: str) -> str:
    if not _QUEUE_NAME.fullmatch(name):
        raise ApiError(f"invalid queue name {name!r}: use 1-100 of A-Z a-z 0-9 . _ -")
    return name


def with_queue(req: PublishRequest, queue: str) -> PublishRequest:
    """``req`` with its message enqueued in ``queue`` (checked)."""
    message = structs.replace(req.message, queue_name=check_queue_name(queue))
    return structs.replace(req, message=message)


def gate_record(topics: Topics, gate: str, cmd: GateCommand) -> Record:
    return (topics.gates, gate.encode(), codec.encode(cmd))


def cancel_records(topics: Topics, message: Message, requested_at: int) -> list[Record]:
    """Cancel ``message``: its delay-table Cancel plus a Withdraw from each of its gates (frees
    its queue / flow-control slot, or takes it off the wait list). For single and bulk cancel."""
    cancel = Cancel(
        message_id=message.message_id, user_id=message.user_id, requested_at=requested_at
    )
    out: list[Record] = [(topics.timers, message.message_id.encode(), codec.encode(cancel))]
    withdraw = Withdraw(message_id=message.message_id)
    out.extend(gate_record(topics, g, withdraw) for g in gates_of(message))
    if message.release_of is not None:
        # A cancelled callback message never finishes: free the queue slots it was holding.
        source = Withdraw(message_id=message.release_of)
        out.extend(gate_record(topics, g, source) for g in message.release_gates)
    return out


def remember_gates(view: GateStateView, messages: list[Message], now_ms: int) -> None:
    """Read-your-writes: a queue or flow-control key created by a publish is shown at once."""
    for m in messages:
        if m.queue_name:
            key = state_key(queue_gate(m.user_id, m.queue_name))
            if view.get(key) is None:
                view.put(
                    key,
                    QueueState(
                        name=m.queue_name,
                        parallelism=1,
                        created_at=now_ms,
                        updated_at=now_ms,
                        lag=1,
                        paused=False,
                    ),
                )
        fc = m.flow_control
        if fc is not None:
            key = state_key(flow_control_gate(m.user_id, fc.key))
            if view.get(key) is None:
                view.put(
                    key,
                    FlowControlState(
                        flow_control_key=fc.key,
                        wait_list_size=0,
                        parallelism_max=fc.parallelism or 0,
                        parallelism_count=0,
                        rate_max=fc.rate or 0,
                        rate_count=0,
                        rate_period=fc.period,
                        rate_period_start=now_ms // 1000,
                        is_paused=False,
                        is_pinned_parallelism=False,
                        is_pinned_rate=False,
                    ),
                )
