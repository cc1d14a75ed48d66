"""``Upstash-Redact-Fields``: what a message looks like wherever it is stored for reading.

The delivery uses the original body and headers; views, events, DLQ listings and the Iceberg log
show ``REDACTED:<sha256 hex of the original>`` instead, so a redacted value can still be matched
against a known one without being readable.
"""

from __future__ import annotations

import hashlib
import re

import msgspec

from kafstash.schemas.message import Message

_FIELD = re.compile(r"^(body|headers?)(?:\[([^\[\]]+)\])?$", re.IGNORECASE)


class InvalidRedactFields(ValueError):
    """The header names something that cannot be redacted."""


def parse_redact_fields(raw: str | None) -> list[str]:
    """``"body, header[Authorization]"`` → ``["body", "header[authorization]"]`` (normalised).

    Accepts the SDKs' ``header`` and the docs' ``headers`` spelling, with or without spaces.
    """
    if raw is None or not raw.strip():
        return []
    out: list[str] = []
    for part in raw.split(","):
        item = part.strip()
        if not item:
            continue
        match = _FIELD.match(item)
        if match is None:
            raise InvalidRedactFields(f"cannot redact {item!r}: use body, header or header[Name]")
        kind = "body" if match.group(1).lower() == "body" else "header"
        if kind == "body" and match.group(2):
            raise InvalidRedactFields(f"cannot redact {item!r}: body takes no name")
        name = match.group(2)
        field = f"header[{name.strip().lower()}]" if name else kind
        if field not in out:
            out.append(field)
    return out


def redacted_value(value: bytes | str) -> str:
    data = value.encode() if isinstance(value, str) else value
    return f"REDACTED:{hashlib.sha256(data).hexdigest()}"


def redact_headers(header: dict[str, list[str]], fields: list[str]) -> dict[str, list[str]]:
    if not fields:
        return header
    everything = "header" in fields
    names = {f[len("header[") : -1] for f in fields if f.startswith("header[")}
    if not everything and not names:
        return header
    return {
        name: [redacted_value(v) for v in values] if everything or name.lower() in names else values
        for name, values in header.items()
    }


def redacted(message: Message) -> Message:
    """The copy of ``message`` that may be stored for reading (itself when nothing is redacted)."""
    fields = message.redact
    if not fields:
        return message
    changes: dict[str, object] = {"header": redact_headers(message.header, fields)}
    if "body" in fields and message.body:
        changes["body"] = redacted_value(message.body).encode()
    return msgspec.structs.replace(message, **changes)
