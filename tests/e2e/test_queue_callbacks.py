"""A queue's next message waits for the current one's callback / failure callback, and enqueue to
a URL group fans out inside the queue, through both official SDKs on a real broker, with every
delivery verified at the sink (docs/gates.md, "Callbacks hold the queue slot")."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from qstash import QStash
from qstash.errors import QStashError

from tests.jssdk import JsSdk
from tests.overlap import max_overlap
from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker

WAIT = 60  # the machine may be busy with other test runs


@pytest.fixture(scope="module")
def stack(module_stack: Stack) -> Stack:
    """This module's tests share one kafstash (tests/conftest.py, ``module_stack``): each uses
    its own queue, flow-control key and URL group names, and none expects an empty list."""
    return module_stack


@pytest.fixture
def client(stack: Stack) -> Iterator[QStash]:
    c = QStash(stack.token, base_url=stack.base_url)
    yield c
    c.http._client.close()  # the SDK has no public close()


def test_python_queue_waits_for_callbacks_and_enqueues_to_a_group(
    client: QStash, sink: Sink, route: Callable[[str], str]
) -> None:
    name = "cbq"
    client.queue.upsert(name, parallelism=1)

    # A is delivered at once; its callback takes 1.5 s to answer; B must wait for that answer.
    a_path, b_path, cb = route("ok") + "-a", route("ok") + "-b", route("slow/1500") + "-cb"
    a = client.message.enqueue(queue=name, url=sink.url(a_path), body="A", callback=sink.url(cb))
    b = client.message.enqueue(queue=name, url=sink.url(b_path), body="B")
    got_b = sink.wait_count(b_path, 1, timeout=WAIT)[0]
    [got_a] = sink.received(a_path)
    [call] = sink.received(cb)  # the sink records a receipt when it answers
    assert json.loads(call.body)["sourceMessageId"] == a.message_id  # type: ignore[union-attr]
    assert got_b.message_id == b.message_id  # type: ignore[union-attr]
    assert got_a.at < call.at <= got_b.at
    assert all(r.signature_ok for r in (got_a, call, got_b))

    # Final failure with both callbacks: the failure callback (slow) holds the slot, not the
    # callback (fast), so D arrives only after the failure callback was answered.
    c_path, d_path = route("status/500") + "-c", route("ok") + "-d"
    fast_cb, slow_fcb = route("ok") + "-cb2", route("slow/1500") + "-fcb"
    c = client.message.enqueue(
        queue=name,
        url=sink.url(c_path),
        body="C",
        retries=0,
        callback=sink.url(fast_cb),
        failure_callback=sink.url(slow_fcb),
    )
    client.message.enqueue(queue=name, url=sink.url(d_path), body="D")
    got_d = sink.wait_count(d_path, 1, timeout=WAIT)[0]
    [fcall] = sink.received(slow_fcb)
    [ccall] = sink.received(fast_cb)
    assert json.loads(fcall.body)["sourceMessageId"] == c.message_id  # type: ignore[union-attr]
    assert ccall.at < fcall.at <= got_d.at

    # Enqueue to a URL group: one queued message per endpoint, answered with a list; with
    # parallelism 1 the two slow deliveries never overlap.
    g1, g2 = route("slow/400") + "-g1", route("slow/400") + "-g2"
    client.url_group.upsert_endpoints(
        url_group="qgrp", endpoints=[{"url": sink.url(g1), "name": "e1"}, {"url": sink.url(g2)}]
    )
    res = client.message.enqueue(queue=name, url_group="qgrp", body="G")
    assert isinstance(res, list)
    assert sorted(r.url for r in res) == sorted([sink.url(g1), sink.url(g2)])
    got = [sink.wait_count(g1, 1, timeout=WAIT)[0], sink.wait_count(g2, 1, timeout=WAIT)[0]]
    assert {r.message_id for r in got} == {r.message_id for r in res}
    for r in got:
        assert (r.body, r.headers["Upstash-Topic-Name"]) == (b"G", "qgrp")
        assert r.signature_ok, r.signature_error
    assert max_overlap(got, 400) == 1
    with pytest.raises(QStashError, match="status: 404"):
        client.message.enqueue(queue=name, url_group="nogrp", body="x")


@pytest.mark.js
def test_js_enqueue_to_a_group_holds_the_queue_for_its_callbacks(
    stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    js = JsSdk(stack.base_url, stack.token)
    g1, g2 = route("ok") + "-g1", route("ok") + "-g2"
    cb, after = route("slow/1000") + "-cb", route("ok") + "-after"

    def queue(method: str, *argv: Any) -> dict[str, Any]:
        args = {"self": {"queueName": "jcbq"}, "argv": list(argv)}
        return {"op": f"queue.{method}", "args": args}

    out = js.seq(
        [
            {
                "op": "urlGroups.addEndpoints",
                "args": {
                    "name": "jgrp",
                    "endpoints": [{"url": sink.url(g1)}, {"url": sink.url(g2)}],
                },
            },
            queue("upsert", {"parallelism": 1}),
            queue("enqueue", {"urlGroup": "jgrp", "body": "J", "callback": sink.url(cb)}),
            queue("enqueue", {"url": sink.url(after), "body": "after"}),
        ]
    )
    fanned, last = out[2], out[3]
    assert sorted(e["url"] for e in fanned) == sorted([sink.url(g1), sink.url(g2)])
    got_after = sink.wait_count(after, 1, timeout=WAIT)[0]
    assert got_after.message_id == last["messageId"]
    got = [*sink.received(g1), *sink.received(g2)]
    assert {r.message_id for r in got} == {e["messageId"] for e in fanned}
    assert all(r.signature_ok and r.body == b"J" for r in got)
    assert got_after.signature_ok
    # Each endpoint's message held the queue until its callback was answered: the second
    # delivery came after the first callback, the last message after both callbacks.
    calls = sorted(sink.received(cb), key=lambda r: r.at)
    first, second = sorted(got, key=lambda r: r.at)
    assert len(calls) == 2
    assert first.at < calls[0].at <= second.at < calls[1].at <= got_after.at
    assert {json.loads(c.body)["sourceMessageId"] for c in calls} == {r.message_id for r in got}
