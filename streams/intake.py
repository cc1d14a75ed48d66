"""The intake's decision: which requests the accept step can decide without a table.

A publish with no deduplication id and no workflow run is decided by ``dedup.accept`` alone
(there is no row to read or write), so the stream workers' intake accepts it as soon as it is
read; every other request needs a table and goes on, under its key, to the tables' agent.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from kafstash.schemas import codec
from kafstash.schemas.commands import PublishRequest
from kafstash.streams import dedup
from kafstash.streams.effects import Step


@dataclass(frozen=True, slots=True)
class Forward:
    """The request needs the dedup, workflow or waiters table: the tables' agent decides it."""


@dataclass(frozen=True, slots=True)
class Unreadable:
    reason: str


Routed = Step | Forward | Unreadable

FORWARD = Forward()


def route(raw: bytes, *, now_ms: int, window_ms: int) -> Routed:
    try:
        cmd = codec.decode_request(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        # A malformed record from a Kafka-native producer must not stall its partition.
        return Unreadable(str(exc))
    if isinstance(cmd, PublishRequest) and not cmd.dedup_key and cmd.message.workflow is None:
        return dedup.accept(cmd, None, now_ms=now_ms, window_ms=window_ms)
    return FORWARD
