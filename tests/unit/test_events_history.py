"""GET /v2/events across the hot view's horizon: the view, then the delivery log (and back)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.datastructures import QueryParams

from kafstash.producers.api import events
from kafstash.producers.events_view import EventStore
from kafstash.schemas.events import MessageEvent
from kafstash.schemas.history import HistoricalEvent, HistoryQuery

HORIZON = 1_000_000


class FakeHistory:
    """Ten old events of user u (times HORIZON-10 … HORIZON-1), answering like the real one."""

    def __init__(self) -> None:
        self.rows = [
            HistoricalEvent(
                time=HORIZON - 10 + i,
                event_id=f"t:0:{i}",
                message_id=f"old_{i}",
                state="DELIVERED",
                url="https://h/",
                retried=0,
            )
            for i in range(10)
        ]
        self.asked: list[HistoryQuery] = []

    def query(self, q: HistoryQuery) -> list[HistoricalEvent]:
        self.asked.append(q)
        rows = [r for r in self.rows if r.time < q.before_ms]
        if q.states:
            rows = [r for r in rows if r.state in q.states]
        rows.sort(key=lambda r: (r.time, r.event_id), reverse=q.order == "latestFirst")
        if q.after is not None:
            if q.order == "latestFirst":
                rows = [r for r in rows if (r.time, r.event_id) < q.after]
            else:
                rows = [r for r in rows if (r.time, r.event_id) > q.after]
        return rows[: q.limit]


async def _all(store: EventStore, history: FakeHistory, **params: str) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(50):
        q: dict[str, Any] = dict(params)
        if cursor:
            q["cursor"] = cursor
        page = await events.answer(
            store, history, "u", QueryParams(q), "events", horizon_ms=HORIZON
        )
        seen.extend(e["messageId"] for e in page["events"])
        cursor = page.get("cursor")
        if cursor is None:
            return seen
    raise AssertionError("the cursor never ended")


@pytest.mark.parametrize("count", ["1", "3", "5", "100"])
async def test_newest_first_continues_from_the_view_into_the_log(count: str) -> None:
    # 5 fills the first page with the view exactly: the next page must still reach the log.
    history = FakeHistory()
    got = await _all(_store(), history, count=count)
    assert got == [f"new_{i}" for i in range(4, -1, -1)] + [f"old_{i}" for i in range(9, -1, -1)]


@pytest.mark.parametrize("count", ["1", "4", "10", "100"])
async def test_oldest_first_starts_in_the_log_then_the_view(count: str) -> None:
    history = FakeHistory()
    got = await _all(_store(), history, count=count, order="earliestFirst")
    assert got == [f"old_{i}" for i in range(10)] + [f"new_{i}" for i in range(5)]


async def test_filters_the_log_cannot_answer_stop_at_the_horizon() -> None:
    history = FakeHistory()
    got = await _all(_store(), history, host="h")
    assert got == []  # the view's events have url "x": no host h; the log is not asked
    assert history.asked == []


async def test_without_a_log_the_view_answers_alone() -> None:
    page = await events.answer(_store(), None, "u", QueryParams({}), "logs", horizon_ms=HORIZON)
    assert len(page["logs"]) == 6  # no horizon without a log: the not-yet-pruned event too
    assert "cursor" not in page


def test_history_cursor_round_trips_and_rejects_garbage() -> None:
    cursor = events.render_history_cursor(123, "kafstash.events:3:17")
    assert events.parse_history_cursor(cursor) == (123, "kafstash.events:3:17")
    with pytest.raises(events.ApiError):
        events.parse_history_cursor("hxyz")


def _store() -> EventStore:
    s = EventStore(retention_ms=10**12)
    for i in range(5):
        s.add(
            MessageEvent(
                time=HORIZON + i, message_id=f"new_{i}", user_id="u", state="DELIVERED", url="x"
            )
        )
    s.add(
        MessageEvent(time=HORIZON - 3, message_id="old_7", user_id="u", state="DELIVERED", url="x")
    )
    return s
