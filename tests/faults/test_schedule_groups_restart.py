"""A schedule to a URL group across a kill -9 of the stream worker with its local state deleted.

The worker's copy of the URL groups is not a faust table: it is rebuilt from the compacted
``state`` topic at every start (streams/groups_view.py). After the restart both endpoints of the
group must keep receiving every tick, each message once, which shows the restarted worker
resolved the group (rather than taking it for deleted) and that ids stayed per endpoint.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable

import pytest
from qstash import QStash

from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker

EVERY_2S = "*/2 * * * * *"


def test_group_schedule_survives_a_streams_kill(
    stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    a, b = route("ok") + "-a", route("ok") + "-b"
    client = QStash(stack.token, base_url=stack.base_url)
    try:
        client.url_group.upsert_endpoints(
            url_group="g", endpoints=[{"url": sink.url(a)}, {"url": sink.url(b)}]
        )
        sid = client.schedule.create(destination="g", cron=EVERY_2S, body="k")
        sink.wait_count(a, 1, timeout=60)
        sink.wait_count(b, 1, timeout=60)

        stack.kill("streams")
        shutil.rmtree(stack.home / "streams", ignore_errors=True)
        stack.restart("streams")
        restarted = time.time()
        n_a, n_b = len(sink.received(a)), len(sink.received(b))
        sink.wait_count(a, n_a + 2, timeout=90)
        sink.wait_count(b, n_b + 2, timeout=90)
        state = client.schedule.get(sid)
        assert state.error is None
        assert state.last_schedule_time is not None
        assert state.last_schedule_time >= int(restarted * 1000)
    finally:
        client.http._client.close()

    for path in (a, b):
        receipts = sink.received(path)
        assert all(r.signature_ok for r in receipts)
        assert all(r.headers["Upstash-Topic-Name"] == "g" for r in receipts)
        assert [m for m, n in Counter(r.message_id for r in receipts).items() if n > 1] == []
