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
    # proves the emits are durable (a replay can then skip them instead of repeating them);
    # ``then`` is sent once the row itself is durable (the API answers on it).
    put_after_acks: bool = False
    then: tuple[Emit, ...] = ()
    notes: tuple[str, ...] = field(default=())
