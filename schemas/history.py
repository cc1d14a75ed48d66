"""Older events, read back from the delivery log (Iceberg) when the API's hot view has let them go.

The API asks with a :class:`HistoryQuery` and gets :class:`HistoricalEvent` rows; the archiver's
side answers (``sinks/iceberg/history.py``). The composition root connects the two, so the API
never imports the Iceberg code. A historical event carries what the table keeps: no headers and
no message body (the table never stores them), the first KiB of the destination's answer.
"""

from __future__ import annotations

from typing import Literal, Protocol

from msgspec import Struct

Order = Literal["latestFirst", "earliestFirst"]


class HistoryQuery(Struct, frozen=True, kw_only=True):
    """Events of ``user_id`` strictly older than ``before_ms`` (the hot view's horizon).

    Within one field the values are OR-ed, across fields AND-ed (QStash's filter rule); an empty
    list means "any". ``after`` is a cursor position (``(time_ms, event_id)``): the page starts
    strictly past it in ``order``.
    """

    user_id: str
    before_ms: int
    limit: int
    order: Order = "latestFirst"
    after: tuple[int, str] | None = None
    from_ms: int | None = None
    to_ms: int | None = None
    message_ids: list[str] = []
    states: list[str] = []
    urls: list[str] = []
    topic_names: list[str] = []
    schedule_ids: list[str] = []
    queue_names: list[str] = []
    labels: list[str] = []


class HistoricalEvent(Struct, frozen=True, kw_only=True):
    time: int
    event_id: str  # unique and ordered within one millisecond: the cursor's tie-breaker
    message_id: str
    state: str
    url: str
    retried: int
    method: str | None = None
    max_retries: int | None = None
    response_status: int | None = None
    response_body: str | None = None
    error: str | None = None
    next_delivery_time: int | None = None
    topic_name: str | None = None
    queue_name: str | None = None
    schedule_id: str | None = None
    labels: list[str] = []


class EventHistory(Protocol):
    """Blocking: the API runs it in a worker thread."""

    def query(self, q: HistoryQuery) -> list[HistoricalEvent]: ...
