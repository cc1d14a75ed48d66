"""Typed records round-trip through JSON, and the checked-in JSON Schemas match the types."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from kafstash.schemas import codec, jsonschema
from kafstash.schemas.commands import (
    Accepted,
    Cancel,
    DeliveryDue,
    ExpireDedup,
    Fire,
    FireItem,
    FireMany,
    PublishRequest,
    Schedule,
)
from kafstash.schemas.events import MessageEvent
from kafstash.schemas.jsonschema import (
    DOCUMENTS,
    OUT,
    WRITE_COMMAND,
    drift,
    main,
    normalise,
    render,
)
from kafstash.schemas.message import Message
from kafstash.schemas.workflow import Invoker

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
        FireMany(fires=(FireItem(message_id="msg_1", due=5), FireItem(message_id="m2", due=6))),
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
    many = FireMany(fires=(FireItem(message_id="m", due=1),))
    assert codec.decode_timer(codec.encode(many)) == many


def test_a_fire_written_before_fire_many_still_reads() -> None:
    # A rolling upgrade: single Fire records an older worker wrote are still in the topic.
    assert codec.decode_timer(b'{"type":"fire","messageId":"msg_1","due":7}') == Fire(
        message_id="msg_1", due=7
    )
    assert codec.decode_timer(
        b'{"type":"fire-many","fires":[{"messageId":"msg_1","due":7}]}'
    ) == FireMany(fires=(FireItem(message_id="msg_1", due=7),))


def test_wire_is_camel_case_with_base64_body() -> None:
    data = codec.encode(PublishRequest(request_id="r", message=MSG))
    assert b'"type":"publish.v1"' in data
    assert b'"messageId":"msg_1"' in data
    assert b'"body":"AAFiaW5hcnk="' in data


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_checked_in_json_schema_is_current(name: str) -> None:
    assert (OUT / name).read_text() == render(DOCUMENTS[name]), (
        f"regenerate with: {WRITE_COMMAND}\n" + "".join(drift(name, DOCUMENTS[name]))
    )


def _publish_request(fields: list[tuple[str, object, object]]) -> type:
    """A stand-in for PublishRequest: same name, docstring and wire config, other fields."""
    return msgspec.defstruct(
        "PublishRequest",
        fields,
        namespace={"__doc__": PublishRequest.__doc__},
        kw_only=True,
        frozen=True,
        rename="camel",
        tag_field="type",
        tag="publish.v1",
    )


_FIELDS: list[tuple[str, object, object]] = [
    ("request_id", str, msgspec.NODEFAULT),
    ("message", Message, msgspec.NODEFAULT),
    ("dedup_key", str | None, None),
    ("reply", bool, False),
    ("invoker", Invoker | None, None),
]


def test_the_stand_in_renders_the_checked_in_schema() -> None:
    # Without this the wire-change test below could pass on a stand-in that differs anyway.
    assert drift("publish-request.v1.schema.json", _publish_request(_FIELDS)) == []


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param([*_FIELDS, ("priority", int, 0)], id="field added"),
        pytest.param([("req_id", str, msgspec.NODEFAULT), *_FIELDS[1:]], id="field renamed"),
        pytest.param([*_FIELDS[:3], ("reply", int, 0), _FIELDS[4]], id="type changed"),
        pytest.param(
            [*_FIELDS[:2], ("dedup_key", str, msgspec.NODEFAULT), *_FIELDS[3:]],
            id="field made required",
        ),
        pytest.param(_FIELDS[:4], id="field removed"),
    ],
)
def test_a_wire_change_is_drift(fields: list[tuple[str, object, object]]) -> None:
    assert drift("publish-request.v1.schema.json", _publish_request(fields)) != []


def test_descriptions_and_branch_order_are_not_drift() -> None:
    # What msgspec 0.22 and 0.19-0.21 emitted for the same types as 0.23.
    raw = {
        "description": "Summary.\n\n    Details over\n    two lines.",
        "anyOf": [{"type": "null"}, {"type": "integer"}],
        "required": ["b", "a"],
    }
    cleaned = {
        "description": "Summary.\n\nDetails over\ntwo lines.",
        "anyOf": [{"type": "integer"}, {"type": "null"}],
        "required": ["a", "b"],
    }
    assert normalise(raw) == normalise(cleaned) == cleaned


def test_the_command_checks_by_default_and_writes_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(jsonschema, "OUT", tmp_path)
    assert main([]) == 1  # nothing checked in yet: every file is drift
    assert list(tmp_path.iterdir()) == []
    assert WRITE_COMMAND in capsys.readouterr().out
    assert main(["--write"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(DOCUMENTS)
    assert main([]) == 0
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "--write" in capsys.readouterr().out
