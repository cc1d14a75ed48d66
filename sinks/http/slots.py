"""When a finished message's gate slots are freed (docs/gates.md, "Callbacks hold the slot").

QStash: "the next message [of a queue] becomes ACTIVE only after the current one is DELIVERED or
FAILED, including its retries and its callback / failure callback". So when the final attempt of
a queued message produces a callback message, the sender does not release the queue slot; the
callback message carries the release (``Message.release_of`` / ``release_gates``) and the sender
appends it when *that* message is DELIVERED or FAILED.

The rule for which follow-up carries it (exactly one does, so the slot is freed once):

- DELIVERED with a ``callback``: the callback.
- FAILED with a ``failure_callback``: the failure callback (even when a ``callback`` is sent
  too; that one then does not hold the slot).
- FAILED with only a ``callback``: the callback.
- no callback message: the slot is freed at once, as before.

Only queue gates wait: a flow-control slot limits concurrent deliveries to the destination and
is freed at the message's own outcome (the callback goes to another URL).

Replays are harmless: a replayed attempt republishes the same callback (same id and dedup key,
dropped by dedup), and a replayed Release of a message no longer active frees nothing
(streams/gate.py).
"""

from typing import Literal

from msgspec import structs

from kafstash.schemas.commands import PublishRequest
from kafstash.schemas.gates import Release, gates_of
from kafstash.schemas.message import Message

Carrier = Literal["callback", "failure-callback"]
Record = tuple[str, str, object | None]  # as kafstash.sinks.http.report.Record


def _held(gate: str) -> bool:
    """Whether ``gate``'s slot waits for the callback (queues do, flow-control keys do not)."""
    return gate.startswith("q/")


def carrier(message: Message, *, final: bool, failed: bool) -> Carrier | None:
    """Which callback message of the attempt carries the release of ``message``'s queue slots
    (None: none does, the sender frees them itself). ``final``: DELIVERED or FAILED."""
    if not final or not any(_held(g) for g in gates_of(message)):
        return None
    if failed and message.failure_callback:
        return "failure-callback"
    if message.callback:
        return "callback"
    return None


def carrying(req: PublishRequest, source: Message) -> PublishRequest:
    """The callback request ``req`` of ``source``, now also freeing ``source``'s queue slots."""
    held = [g for g in gates_of(source) if _held(g)]
    message = structs.replace(req.message, release_of=source.message_id, release_gates=held)
    return structs.replace(req, message=message)


def releases(message: Message, *, carried_by: Carrier | None) -> list[Record]:
    """The Release records the sender appends when ``message`` is DELIVERED or FAILED: its own
    gates (minus the queue slots a callback now carries) and the slots it carries itself."""
    own = [g for g in gates_of(message) if carried_by is None or not _held(g)]
    out: list[Record] = [("gates", g, Release(message_id=message.message_id)) for g in own]
    if message.release_of is not None:
        freed = Release(message_id=message.release_of)
        out.extend(("gates", g, freed) for g in message.release_gates)
    return out
