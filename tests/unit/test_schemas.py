"""Typed records round-trip through JSON, and the checked-in JSON Schemas match the types."""

from __future__ import annotations

import pytest

from kafstash.schemas import codec
from kafstash.schemas.commands import (
    Accepted,
    Cancel,
    DeliveryDue,
    ExpireDedup,
    Fire,
    PublishRequest,
    Schedule,
)
from kafstash.schemas.events import MessageEvent
from kafstash.schemas.jsonschema import DOCUMENTS, OUT, render
from kafstash.schemas.message import Message

MSG = Message(
    message_id="msg_1",
    user_id="u",
    url="https://example.com/x?y=1",
    created_at=1,
    not_before=2,
    header={"Content-Type": ["text/plain"]},
    body=b"\x00\x01binary",
    labels=["a"],
)


@pytest.mark.parametrize(
    "record",
    [
        PublishRequest(request_id="r", message=MSG, dedup_key="u:id:d", reply=True),
        Schedule(message=MSG, due=5, retried=2),
        Fire(message_id="msg_1", due=5),
        Cancel(message_id="msg_1", user_id="u", requested_at=3),
        DeliveryDue(message=MSG, retried=1, due=4),
        Accepted(request_id="r", message_id="msg_1", deduplicated=True),
        MessageEvent(
            time=1, message_id="msg_1", user_id="u", state="CREATED", url="x", message=MSG
        ),
    ],
)
def test_round_trip(record: object) -> None:
    data = codec.encode(record)  # type: ignore[arg-type]
    assert codec.decode(data, type(record)) == record


def test_request_commands_decode_by_tag() -> None:
    expire = ExpireDedup(key="u:id:x", expires_at=5)
    assert codec.decode_request(codec.encode(expire)) == expire
    publish = PublishRequest(request_id="r", message=MSG)
    assert codec.decode_request(codec.encode(publish)) == publish


def test_timer_commands_decode_by_tag() -> None:
    assert codec.decode_timer(codec.encode(Fire(message_id="m", due=1))) == Fire(
        message_id="m", due=1
    )


def test_wire_is_camel_case_with_base64_body() -> None:
    data = codec.encode(PublishRequest(request_id="r", message=MSG))
    assert b'"type":"publish.v1"' in data
    assert b'"messageId":"msg_1"' in data
    assert b'"body":"AAFiaW5hcnk="' in data


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_checked_in_json_schema_is_current(name: str) -> None:
    assert (OUT / name).read_text() == render(DOCUMENTS[name]), (
        "regenerate with: python -m kafstash.schemas.jsonschema"
    )
