"""Which records of a replayed step are already out: the pure half of ``Step.unless_since``.

A deduplicated request claims its dedup row (written and acknowledged) before its message's
records are produced (streams/dedup.py). A request that finds its own claim is the replay of a
run that stopped somewhere after the claim, so some of those records may be out and some not.
The runtime reads back the records under their keys since the claim (views/recent.py) and
produces only the ones this module does not find among them.

A record matches on what makes it the same event of the same message (the message id and, for
an event, its state; for an attempt, its number), not on its bytes: the replay stamps its own
time on the records it builds. A value this module does not know is never found, so it is
produced again: at-least-once is the floor.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from kafstash.schemas import codec
from kafstash.schemas.commands import DeliveryDue, Schedule
from kafstash.schemas.events import MessageEvent
from kafstash.schemas.gates import Admit
from kafstash.schemas.message import Message
from kafstash.streams.effects import Emit

Found = dict[tuple[str, bytes], list[bytes | None]]


def identity(value: msgspec.Struct | None) -> tuple[object, ...] | None:
    """What two records of one key must share to be the same output; None: not comparable."""
    match value:
        case MessageEvent():
            return ("event", value.message_id, value.state, value.retried)
        case Message():
            return ("message", value.message_id)
        case DeliveryDue():
            return ("due", value.message.message_id, value.retried)
        case Schedule():
            return ("schedule", value.message.message_id, value.retried)
        case Admit():
            return ("admit", value.message.message_id)
    return None


def is_out(emit: Emit, values: Sequence[bytes | None]) -> bool:
    """Whether one of ``values`` (records under ``emit.key`` in its topic) is ``emit``."""
    if emit.value is None:
        return False  # a tombstone repeated is harmless, and compaction may have dropped it
    want = identity(emit.value)
    if want is None:
        return False
    kind = type(emit.value)
    for raw in values:
        if raw is None:
            continue
        try:
            got = codec.decode(raw, kind)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # another kind of record under the same key (a Cancel, a gate command)
        if identity(got) == want:
            return True
    return False


def wanted(emits: Sequence[Emit], topics: dict[str, str]) -> list[tuple[str, bytes]]:
    """The (topic, key) pairs to read back for ``emits``; ``topics`` maps out-topics to names."""
    return [(topics[e.topic], e.key.encode()) for e in emits]


def missing(emits: Sequence[Emit], found: Found, topics: dict[str, str]) -> tuple[Emit, ...]:
    """The emits not among the records ``found`` under their keys, in their order."""
    return tuple(
        e for e in emits if not is_out(e, found.get((topics[e.topic], e.key.encode()), []))
    )
