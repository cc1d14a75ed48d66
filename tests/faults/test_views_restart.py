"""Every read view survives a restart of every role (issue: "state survives a restart").

One stack gets a URL group, a paused queue with parallelism 2, a rotated signing key, a DLQ
entry and a delivered message (its events). All three roles are then stopped and started again,
with the stream workers' local state deleted: the API's views come back from the compacted
topics (state, dlq, keys) and the events topic, the queue's state from its table's changelog.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.sink import Sink
from tests.stack import ROLES, Stack

pytestmark = pytest.mark.broker


def _eventually(check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _snapshot(http: httpx.Client, dlq_id: str, message_id: str) -> dict[str, Any]:
    group = http.get("/v2/topics/views-g").json()
    queue = http.get("/v2/queues/views-q").json()
    dlq = http.get(f"/v2/dlq/{dlq_id}").json()
    events = http.get("/v2/events", params={"messageId": message_id}).json()["events"]
    return {
        "group": sorted(e["url"] for e in group["endpoints"]),
        "queue": (queue["parallelism"], queue["paused"]),
        "keys": http.get("/v2/keys").json(),
        "dlq": (dlq["dlqId"], dlq["responseStatus"], dlq["messageId"]),
        "events": sorted(e["state"] for e in events),
    }


def test_read_views_come_back_after_every_role_restarts(
    stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    with httpx.Client(
        base_url=stack.base_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=30
    ) as http:
        _exercise(stack, sink, route, http)


def _exercise(stack: Stack, sink: Sink, route: Callable[[str], str], http: httpx.Client) -> None:
    ok, failing = route("ok"), route("status/500")
    endpoints = [{"url": sink.url(ok) + "-a"}, {"url": sink.url(ok) + "-b", "name": "b"}]
    assert http.post("/v2/topics/views-g/endpoints", json={"endpoints": endpoints}).is_success
    queue = {"queueName": "views-q", "parallelism": 2, "paused": True}
    assert http.post("/v2/queues", json=queue).is_success
    rotated = http.post("/v2/keys/rotate").json()
    failed = http.post(f"/v2/publish/{sink.url(failing)}", headers={"Upstash-Retries": "0"})
    delivered = http.post(f"/v2/publish/{sink.url(ok)}", content=b"x").json()["messageId"]

    def dlq_entry() -> str:
        params = {"messageId": failed.json()["messageId"]}
        entries = http.get("/v2/dlq", params=params).json()["messages"]
        assert len(entries) == 1, entries
        return str(entries[0]["dlqId"])

    dlq_id = _eventually(dlq_entry)

    def delivered_events() -> dict[str, Any]:
        snap = _snapshot(http, dlq_id, delivered)
        assert "DELIVERED" in snap["events"]
        return snap

    before = _eventually(delivered_events)
    assert before["keys"] == rotated
    assert before["queue"] == (2, True)

    stack.stop()
    shutil.rmtree(stack.home / "streams")  # the tables can only come back from their changelogs
    for role in ROLES:
        stack.start_role(role)
    stack.wait_api()

    after = _eventually(lambda: _check_equal(_snapshot(http, dlq_id, delivered), before))
    assert after == before


def _check_equal(got: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
    assert got == want
    return got
