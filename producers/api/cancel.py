"""``DELETE /v2/messages``: which pending messages a bulk cancel means (qstash-api.md §3.4).

Three dialects reach this endpoint:

1. JS ``cancel([ids])``: query ``messageIds`` (repeated); any other filter is then ignored.
2. JS ``cancel({filter})`` / ``cancel({all: true})``: query filters plus ``count=100``. ``count``
   is ignored (the 2.12.0 SDK documents that the server ignores it): honouring it would make
   ``cancel({all: true})`` stop after 100 messages.
3. Python ``cancel_many(ids)``: a JSON body ``{"messageIds": [...]}``. A server that ignored a
   DELETE body would read this as "cancel everything", so a body is always read, and an empty
   ``messageIds`` list cancels nothing.

Only a request with neither filters nor a body (Python ``cancel_all``) cancels every pending
message of the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from kafstash.producers.api.errors import ApiError
from kafstash.producers.api.filters import MessageFilter, MultiParams, parse_filter, values
from kafstash.schemas.message import Message


class _CancelBody(msgspec.Struct, forbid_unknown_fields=True):
    messageIds: list[str]  # the wire name


_body_decoder = msgspec.json.Decoder(_CancelBody)


@dataclass(frozen=True, slots=True)
class CancelSelection:
    """Either explicit ids, or a filter over the caller's pending messages (empty = all)."""

    message_ids: tuple[str, ...] | None = None
    filter: MessageFilter = field(default_factory=MessageFilter)


def parse_selection(params: MultiParams, body: bytes) -> CancelSelection:
    """What a ``DELETE /v2/messages`` asks for; 400 for a body that is not ``{"messageIds"}``."""
    ids = values(params, "messageIds")
    if ids:
        return CancelSelection(message_ids=tuple(dict.fromkeys(ids)))
    if body.strip():
        try:
            parsed = _body_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ApiError(f'invalid body: expected {{"messageIds": [...]}}: {exc}') from None
        return CancelSelection(message_ids=tuple(dict.fromkeys(parsed.messageIds)))
    # count and cursor belong to the JS bulk-action payload; neither limits a cancel.
    return CancelSelection(filter=parse_filter(params, with_states=False))


def select(selection: CancelSelection, pending: list[Message]) -> list[Message]:
    """The caller's pending messages the selection names (``pending`` holds only theirs)."""
    if selection.message_ids is not None:
        by_id = {m.message_id: m for m in pending}
        return [by_id[i] for i in selection.message_ids if i in by_id]
    wanted = selection.filter
    return [
        m
        for m in pending
        if wanted.matches(message_id=m.message_id, url=m.url, message=m, at_ms=m.created_at)
    ]
