"""``DELETE /v2/messages``: which pending messages a bulk cancel means (qstash-api.md §3.4).

Three dialects reach this endpoint:

1. JS ``cancel([ids])``: query ``messageIds`` (repeated); any other filter is then ignored.
2. JS ``cancel({filter})`` / ``cancel({all: true})``: query filters plus ``count`` (100 unless
   the caller gave one).
3. Python ``cancel_many(ids)``: a JSON body ``{"messageIds": [...]}``. A server that ignored a
   DELETE body would read this as "cancel everything", so a body is always read, and an empty
   ``messageIds`` list cancels nothing.

``count`` is honoured as QStash documents it: at most ``count`` messages (1..500), the oldest
first; without one, every match. QStash's own SDK tests expect ``cancel({all: true, count: 1})``
to cancel exactly one, so JS ``cancel({all: true})`` (which sends ``count=100``) cancels at most
100 per call; the SDK's documented loop repeats it until ``cancelled`` is 0. Unknown fields are
refused (filter_fields.py). Only a request with neither filters nor a body (Python
``cancel_all``) cancels every pending message of the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kafstash.producers.api.filter_fields import CANCEL_MESSAGES, checked, decode_ids_body
from kafstash.producers.api.filters import MessageFilter, MultiParams, parse_filter, values
from kafstash.schemas.message import Message


@dataclass(frozen=True, slots=True)
class CancelSelection:
    """Either explicit ids, or a filter over the caller's pending messages (empty = all);
    ``count`` bounds how many are cancelled (None: every one selected)."""

    message_ids: tuple[str, ...] | None = None
    filter: MessageFilter = field(default_factory=MessageFilter)
    count: int | None = None


def parse_selection(params: MultiParams, body: bytes) -> CancelSelection:
    """What a ``DELETE /v2/messages`` asks for; 400 for an unknown field, a malformed value or a
    body that is not ``{"messageIds": [...]}``, before anything is cancelled."""
    count = checked(CANCEL_MESSAGES, params.multi_items())
    body_ids = decode_ids_body(CANCEL_MESSAGES, body)
    wanted = parse_filter(params, with_states=False)  # malformed dates are 400 in every dialect
    ids = values(params, "messageIds")
    if ids:
        return CancelSelection(message_ids=tuple(dict.fromkeys(ids)), count=count)
    if body_ids is not None:
        return CancelSelection(message_ids=body_ids, count=count)
    return CancelSelection(filter=wanted, count=count)


def select(selection: CancelSelection, pending: list[Message]) -> list[Message]:
    """The caller's pending messages the selection names (``pending`` holds only theirs), the
    oldest first (created_at, then id), at most ``count`` of them."""
    if selection.message_ids is not None:
        wanted_ids = set(selection.message_ids)
        found = [m for m in pending if m.message_id in wanted_ids]
    else:
        wanted = selection.filter
        found = [
            m
            for m in pending
            if wanted.matches(message_id=m.message_id, url=m.url, message=m, at_ms=m.created_at)
        ]
    found.sort(key=lambda m: (m.created_at, m.message_id))
    return found if selection.count is None else found[: selection.count]
