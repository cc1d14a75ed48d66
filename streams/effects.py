"""What a processing step asks the runtime to do: emit records, change its table row, wake a timer.

Steps are plain values so the decisions can be tested without a broker and the runtime (faust
today) could be swapped without touching them.
"""

from dataclasses import dataclass, field
from typing import Literal

from msgspec import Struct

OutTopic = Literal[
    "events", "deliveries", "timers", "messages", "decisions", "requests", "gates", "state"
]


@dataclass(frozen=True, slots=True)
class Emit:
    topic: OutTopic
    key: str
    value: Struct | None  # None is a tombstone (compacted topics)


@dataclass(frozen=True, slots=True)
class Step:
    emits: tuple[Emit, ...] = ()
    put: Struct | None = None  # the table row's new value
    delete: bool = False  # remove the table row
    wake_at: int | None = None  # the row is due at this time (ms): tell the timer index
    # Write the row only after every emit is acknowledged, so that finding the row later
    # proves the emits are durable (a replay can then skip them instead of repeating them).
    put_after_acks: bool = False
    # Write the row, and wait for its acknowledgement, before producing any emit: a replay that
    # does not find the row knows that none of them went out. One that finds it cannot tell
    # which did (the worker may have died between the two), hence ``unless_since``.
    claim: bool = False
    # Produce only the emits not already in their topic partition at or after this time (ms):
    # the replay of a step whose row was claimed then, whose emits may be partly out.
    unless_since: int | None = None
    # Sent once the row and the emits are durable (the API answers on it).
    then: tuple[Emit, ...] = ()
    notes: tuple[str, ...] = field(default=())
