"""JSON encoding of every record that crosses Kafka (msgspec: strict, typed, fast)."""

from typing import Any, TypeVar

import msgspec

from kafstash.schemas.commands import (
    Accepted,
    Decision,
    DeliveryDue,
    PublishRequest,
    RequestCommand,
    TimerCommand,
)
from kafstash.schemas.events import MessageEvent
from kafstash.schemas.message import Message

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t)
    for t in (
        PublishRequest,
        RequestCommand,
        TimerCommand,
        DeliveryDue,
        Accepted,
        Decision,
        MessageEvent,
        Message,
    )
}


def encode(record: msgspec.Struct) -> bytes:
    return _encoder.encode(record)


def decode(data: bytes, kind: type[T]) -> T:
    """Decode ``data`` as ``kind``; raises msgspec.ValidationError / DecodeError on bad input."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    result: T = decoder.decode(data)
    return result


def decode_request(data: bytes) -> RequestCommand:
    result: RequestCommand = _decoders[RequestCommand].decode(data)
    return result


def decode_timer(data: bytes) -> TimerCommand:
    result: TimerCommand = _decoders[TimerCommand].decode(data)
    return result


def decode_decision(data: bytes) -> Decision:
    result: Decision = _decoders[Decision].decode(data)
    return result
