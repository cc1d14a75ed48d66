"""Schedules to a URL group: the tick decision with the group passed in, and the workers' view.

Reuses the cron-table harness of test_schedule.py (``Table`` applies Steps as streams/app.py
does and runs published requests through the real dedup step).
"""

from __future__ import annotations

import asyncio

import msgspec

from kafstash.schemas import codec
from kafstash.schemas.groups import Endpoint, UrlGroup, group_key
from kafstash.schemas.schedules import ScheduleSpec, Tick, group_tick_message_id
from kafstash.streams import schedule
from kafstash.streams.groups_view import GroupsView
from kafstash.streams.schedule import GROUP_NOT_FOUND, TickTarget
from tests.unit.test_schedule import EVERY_2S, KEY, T0, Table, spec

A = "https://a.example/hook"
B = "https://b.example/hook"


def group_spec(**kw: object) -> ScheduleSpec:
    fields: dict[str, object] = {"destination": "team", "targets": [], "url_group": "team"}
    return spec(EVERY_2S, **{**fields, **kw})


def team(*endpoints: Endpoint) -> UrlGroup:
    return UrlGroup(
        name="team", user_id="alice", endpoints=list(endpoints), created_at=T0, updated_at=T0
    )


def tick(t: Table, group: UrlGroup | None, *, due: int | None = None, lateness: int = 5) -> int:
    assert t.row is not None
    assert t.row.next_schedule_time is not None
    due = t.row.next_schedule_time if due is None else due
    step = schedule.on_tick(
        Tick(schedule_key=KEY, due=due), t.row, now_ms=due + lateness, group=group
    )
    t.apply(step, due + lateness)
    return due


def test_a_group_tick_publishes_one_message_per_current_endpoint() -> None:
    t = Table()
    t.spec(group_spec(), T0 + 500)
    due = tick(t, team(Endpoint(url=A, name="ea"), Endpoint(url=B)))
    ma, mb = t.out.delivered
    assert (ma.url, ma.topic_name, ma.endpoint_name) == (A, "team", "ea")
    assert (mb.url, mb.topic_name, mb.endpoint_name) == (B, "team", None)
    assert ma.message_id == group_tick_message_id("alice", "s1", due, A)
    assert mb.message_id == group_tick_message_id("alice", "s1", due, B)
    assert (ma.method, ma.body, ma.schedule_id) == ("PUT", b"tick", "s1")
    assert t.row is not None
    assert t.row.spec.destination == "team"  # GET shows the group's name
    assert t.row.last_message_ids == [ma.message_id, mb.message_id]
    assert t.row.error is None
    # The next tick uses the group as it is then: an endpoint removed since gets nothing.
    tick(t, team(Endpoint(url=B)))
    assert [m.url for m in t.out.delivered] == [A, B, B]
    assert len({m.message_id for m in t.out.delivered}) == 3


def test_a_deleted_group_publishes_nothing_and_records_the_error() -> None:
    t = Table()
    t.spec(group_spec(), T0 + 500)
    due = tick(t, None)
    assert t.out.delivered == []
    assert t.row is not None
    assert t.row.error == GROUP_NOT_FOUND == "url group not found"
    assert t.row.last_schedule_time == due
    assert t.row.next_schedule_time == due + 2000  # keeps ticking
    assert t.states[-1] == t.row  # published to the state topic: visible in GET
    # Re-created: the next tick publishes again and clears the error.
    tick(t, team(Endpoint(url=A)))
    assert [m.url for m in t.out.delivered] == [A]
    assert t.row.error is None


def test_a_replayed_group_tick_never_doubles_even_if_the_group_changed() -> None:
    # Crash after the requests were acknowledged but before the advanced row was stored.
    t = Table()
    t.spec(group_spec(), T0 + 500)
    old_row = t.row
    due = tick(t, team(Endpoint(url=A), Endpoint(url=B)))
    assert len(t.out.delivered) == 2
    t.row = old_row
    # Between the tick and its replay, A was removed and C added: B must not be sent twice
    # (ids follow the url, not the position), C gets its message.
    tick(t, team(Endpoint(url=B), Endpoint(url="https://c.example/h")), due=due, lateness=3000)
    assert [m.url for m in t.out.delivered] == [A, B, "https://c.example/h"]


def test_paused_group_schedule_publishes_nothing() -> None:
    t = Table()
    t.spec(group_spec(paused=True), T0 + 500)
    tick(t, team(Endpoint(url=A)))
    assert t.out.delivered == []


def test_tick_messages_with_targets_and_a_url_schedule_unchanged() -> None:
    s = group_spec()
    reqs = schedule.tick_messages(s, T0, [TickTarget(url=A, topic_name="team")], now_ms=T0)
    [r] = reqs
    assert r.dedup_key is not None
    assert r.dedup_key.startswith("alice:schedule:s1:")
    assert r.message.topic_name == "team"
    # A URL schedule ignores ``group`` and keeps its index-based ids.
    url_spec = spec()
    plain = schedule.tick_messages(url_spec, T0, now_ms=T0)
    assert [p.message.url for p in plain] == ["https://example.com/hook"]
    assert plain[0].dedup_key == f"alice:schedule:s1:{T0}:0"
    assert plain[0].message.topic_name is None


def test_spec_with_url_group_round_trips() -> None:
    s = group_spec()
    back = codec.decode(codec.encode(s), ScheduleSpec)
    assert back.url_group == "team"
    assert back == s
    # A spec written before this field existed reads as a URL schedule.
    old = msgspec.json.decode(codec.encode(spec()))
    assert "urlGroup" not in old


def test_groups_view_follows_group_records_only() -> None:
    async def run() -> None:
        view = GroupsView("127.0.0.1:1", "p.state")
        key = group_key("alice", "team").encode()
        view.apply(key, codec.encode(team(Endpoint(url=A))))
        view.apply(b"schedule/alice/s1", b"{not a group}")
        view.apply(group_key("alice", "bad").encode(), b"garbage")
        view.ready.set()
        got = await view.get("alice", "team")
        assert got is not None
        assert [e.url for e in got.endpoints] == [A]
        assert await view.get("bob", "team") is None
        assert await view.get("alice", "bad") is None
        assert view.lookup("alice", "team") == got
        view.apply(key, None)
        assert await view.get("alice", "team") is None
        assert view.lookup("alice", "team") is None

    asyncio.run(run())


def test_groups_view_answers_only_once_caught_up() -> None:
    async def run() -> None:
        view = GroupsView("127.0.0.1:1", "p.state")
        pending = asyncio.ensure_future(view.get("alice", "team"))
        await asyncio.sleep(0.01)
        assert not pending.done()
        view.ready.set()
        assert await pending is None

    asyncio.run(run())
