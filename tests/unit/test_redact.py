import hashlib

import pytest

from kafstash.schemas.message import Message
from kafstash.schemas.redact import (
    InvalidRedactFields,
    parse_redact_fields,
    redacted,
    redacted_value,
)


def _msg(**kw: object) -> Message:
    base: dict[str, object] = {
        "message_id": "msg_1",
        "user_id": "u",
        "url": "http://x/",
        "created_at": 1,
        "not_before": 1,
        "header": {"Authorization": ["Bearer s3cret"], "X-Keep": ["k"]},
        "body": b"secret body",
    }
    base.update(kw)
    return Message(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "fields"),
    [
        ("body,header[Authorization]", ["body", "header[authorization]"]),
        ("body, headers[Authorization] ", ["body", "header[authorization]"]),
        ("header", ["header"]),
        ("headers,body,body", ["header", "body"]),
        ("", []),
        (None, []),
    ],
)
def test_parse_accepts_both_spellings(raw: str | None, fields: list[str]) -> None:
    assert parse_redact_fields(raw) == fields


@pytest.mark.parametrize("raw", ["url", "body[x]", "header[]", "cookies"])
def test_parse_refuses_unknown_fields(raw: str) -> None:
    with pytest.raises(InvalidRedactFields):
        parse_redact_fields(raw)


def test_redacted_hides_body_and_named_header_only() -> None:
    m = _msg(redact=["body", "header[authorization]"])
    r = redacted(m)
    assert r.body == f"REDACTED:{hashlib.sha256(b'secret body').hexdigest()}".encode()
    assert r.header["Authorization"] == [redacted_value("Bearer s3cret")]
    assert r.header["X-Keep"] == ["k"]
    assert m.body == b"secret body"  # the original (used for delivery) is untouched


def test_redacted_header_means_every_header() -> None:
    r = redacted(_msg(redact=["header"]))
    assert r.body == b"secret body"
    assert all(v[0].startswith("REDACTED:") for v in r.header.values())


def test_nothing_to_redact_is_identity() -> None:
    m = _msg()
    assert redacted(m) is m
