"""Schedules whose destination is a URL group, through both official SDKs on a real broker.

Each tick publishes one message per endpoint the group has *at that tick*; every delivery
reaches the sink, which verifies its signature. Crons use the seconds extension
(``*/2 * * * * *``) so ticks come every two seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from qstash import QStash
from qstash.errors import QStashError

from tests.jssdk import JsSdk, JsSdkError
from tests.sink import Receipt, Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker

EVERY_2S = "*/2 * * * * *"
WAIT = 30


@pytest.fixture
def client(stack: Stack) -> Iterator[QStash]:
    c = QStash(stack.token, base_url=stack.base_url)
    yield c
    c.http._client.close()  # the SDK has no public close()


def step(op: str, **args: Any) -> dict[str, Any]:
    return {"op": op, "args": args}


def assert_group_deliveries(receipts: list[Receipt], group: str, schedule_id: str) -> None:
    assert receipts
    for r in receipts:
        assert r.headers["Upstash-Topic-Name"] == group
        assert r.headers["Upstash-Schedule-Id"] == schedule_id
        assert r.body == b"tick"
        assert r.signature_ok, r.signature_error


def first_ticks_reach_both(sink: Sink, a: str, b: str, group: str, sid: str) -> None:
    got_a = sink.wait_count(a, 2, timeout=WAIT)
    got_b = sink.wait_count(b, 2, timeout=WAIT)
    assert_group_deliveries(got_a + got_b, group, sid)
    # One message per endpoint per tick: the two endpoints never share a message id.
    assert not {r.message_id for r in got_a} & {r.message_id for r in got_b}


def later_ticks_reach_only(sink: Sink, kept: str, removed: str) -> list[Receipt]:
    """After ``removed`` left the group: three ticks at ``kept`` settle any tick in flight at
    the removal; from then on, two more ticks reach ``kept`` and none reaches ``removed``."""
    n = len(sink.received(kept))
    sink.wait_count(kept, n + 3, timeout=WAIT)
    settled = len(sink.received(removed))
    later = sink.wait_count(kept, n + 5, timeout=WAIT)
    assert len(sink.received(removed)) == settled
    return later


def test_python_sdk_schedule_to_url_group(
    client: QStash, stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    group, a, b = "pygrp", route("ok") + "-a", route("ok") + "-b"
    # No such group yet: 404, and nothing is stored.
    with pytest.raises(QStashError, match=r"status: 404.*not found"):
        client.schedule.create(destination=group, cron=EVERY_2S, body="tick")
    assert client.schedule.list() == []
    client.url_group.upsert_endpoints(
        url_group=group,
        endpoints=[{"url": sink.url(a), "name": "ea"}, {"url": sink.url(b)}],
    )
    sid = client.schedule.create(destination=group, cron=EVERY_2S, body="tick", method="POST")
    got = client.schedule.get(sid)
    assert (got.destination, got.cron, got.error) == (group, EVERY_2S, None)

    first_ticks_reach_both(sink, a, b, group, sid)

    client.url_group.remove_endpoints(url_group=group, endpoints=[{"url": sink.url(a)}])
    assert_group_deliveries(later_ticks_reach_only(sink, b, a), group, sid)

    # The group deleted: ticks publish nothing and the schedule says why.
    client.url_group.delete(group)
    deadline = time.monotonic() + WAIT
    while (err := client.schedule.get(sid).error) is None:
        assert time.monotonic() < deadline, "the schedule never reported the missing group"
        time.sleep(0.3)
    assert err == "url group not found"
    quiet = len(sink.received(b))
    time.sleep(4.5)  # two more ticks
    assert len(sink.received(b)) == quiet
    assert client.schedule.get(sid).destination == group


@pytest.mark.js
def test_js_sdk_schedule_to_url_group(
    stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    js = JsSdk(stack.base_url, stack.token)
    group, a, b = "jsgrp", route("ok") + "-a", route("ok") + "-b"
    with pytest.raises(JsSdkError) as missing:
        js.run("schedules.create", destination="nogrp", cron=EVERY_2S, body="tick")
    assert missing.value.status == 404
    _, created = js.seq(
        [
            step(
                "urlGroups.addEndpoints",
                name=group,
                endpoints=[{"url": sink.url(a), "name": "ea"}, {"url": sink.url(b), "name": "eb"}],
            ),
            step("schedules.create", destination=group, cron=EVERY_2S, body="tick"),
        ]
    )
    sid = created["scheduleId"]
    got = js.run("schedules.get", argv=[sid])
    assert (got["destination"], got["cron"]) == (group, EVERY_2S)

    first_ticks_reach_both(sink, a, b, group, sid)

    js.run("urlGroups.removeEndpoints", name=group, endpoints=[{"name": "eb"}])
    assert_group_deliveries(later_ticks_reach_only(sink, a, b), group, sid)
    # The last firing published to the one endpoint left.
    assert len(js.run("schedules.get", argv=[sid])["lastScheduleStates"]) == 1
