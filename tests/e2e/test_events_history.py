"""GET /v2/events past the API's in-memory window: older events come from the Iceberg log.

The API keeps 4 s of events (``KAFSTASH_EVENTS_RETENTION``); the archiver commits every 0.5 s.
A message delivered before that window is still listed, through both official SDKs, with the
same filters and a cursor that pages from the view into the log without a gap or a repeat.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from qstash import QStash

from tests.jssdk import JsSdk
from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker

RETENTION_S = 4


@pytest.fixture
def short_memory(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    env = {"KAFSTASH_EVENTS_RETENTION": str(RETENTION_S), "KAFSTASH_ARCHIVE_INTERVAL": "0.5"}
    with Stack(kafka_bootstrap, tmp_path, env=env) as s:
        s.start_role("archiver")
        yield s
        # Its table is not looked at after the test: no need for a graceful (slower) stop.
        s.kill("archiver")


def test_old_events_are_answered_from_the_delivery_log(
    short_memory: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    stack = short_memory
    client = QStash(stack.token, base_url=stack.base_url)
    try:
        _check_history(stack, client, sink, route)
    finally:
        client.http._client.close()  # the SDK has no public close()


def _check_history(stack: Stack, client: QStash, sink: Sink, route: Callable[[str], str]) -> None:
    old_path, new_path = route("ok") + "-old", route("ok") + "-new"
    old = client.message.publish(url=sink.url(old_path), body="old", label="hist")
    sink.wait_count(old_path, 1)
    # Past the view's window, and archived (the archiver commits every 0.5 s).
    time.sleep(RETENTION_S + 3)
    new = client.message.publish(url=sink.url(new_path), body="new", label="hist")
    sink.wait_count(new_path, 1)

    def states(message_id: str) -> list[str]:
        deadline = time.monotonic() + 30
        while True:
            logs = client.log.list(filter={"message_id": message_id}).logs
            got = sorted(str(e.state.value) for e in logs)
            if "DELIVERED" in got or time.monotonic() > deadline:
                return got
            time.sleep(0.5)

    assert states(old.message_id) == ["ACTIVE", "CREATED", "DELIVERED"]
    assert states(new.message_id) == ["ACTIVE", "CREATED", "DELIVERED"]

    # One event per page, newest first: the view's three, then the log's three, no repeats.
    seen: list[tuple[str, str]] = []
    cursor = None
    for _ in range(20):
        page = client.log.list(cursor=cursor, count=1, filter={"label": "hist"})
        seen.extend((e.message_id, str(e.state.value)) for e in page.logs)
        cursor = page.cursor
        if cursor is None:
            break
    assert [mid for mid, _ in seen] == [new.message_id] * 3 + [old.message_id] * 3
    assert len(set(seen)) == 6

    js = JsSdk(stack.base_url, stack.token)
    result = js.run("logs", filter={"messageId": old.message_id})
    assert sorted(e["state"] for e in result["logs"]) == ["ACTIVE", "CREATED", "DELIVERED"]
