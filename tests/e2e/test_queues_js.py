"""Queues and flow control through the official JS SDK (@upstash/qstash 2.12.0, via Node)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.jssdk import JsSdk
from tests.overlap import max_overlap
from tests.sink import Sink
from tests.stack import Stack

pytestmark = [pytest.mark.broker, pytest.mark.js]

WAIT = 60


@pytest.fixture(scope="module")
def stack(module_stack: Stack) -> Stack:
    """This module's tests share one kafstash (tests/conftest.py, ``module_stack``): each uses
    its own queue, flow-control key and URL group names, and none expects an empty list."""
    return module_stack


@pytest.fixture
def js(stack: Stack) -> JsSdk:
    return JsSdk(stack.base_url, stack.token)


def q(method: str, queue: str | None, *argv: Any) -> dict[str, Any]:
    """A step calling ``client.queue({queueName}).<method>(...argv)``."""
    self = {} if queue is None else {"queueName": queue}
    return {"op": f"queue.{method}", "args": {"self": self, "argv": list(argv)}}


def fc(method: str, *argv: Any) -> dict[str, Any]:
    return {"op": f"flowControl.{method}", "args": {"argv": list(argv)}}


def test_queue_upsert_enqueue_fifo_pause_resume_delete(
    js: JsSdk, sink: Sink, route: Callable[[str], str]
) -> None:
    path = route("slow/300")
    out = js.seq(
        [
            q("upsert", "jq", {"parallelism": 1}),
            q("get", "jq"),
            *(q("enqueueJSON", "jq", {"url": sink.url(path), "body": {"i": i}}) for i in range(4)),
            q("list", None),
        ]
    )
    got_queue, enqueued, listed = out[1], out[2:6], out[6]
    assert (got_queue["name"], got_queue["parallelism"], got_queue["paused"]) == ("jq", 1, False)
    assert {"name", "parallelism", "createdAt", "updatedAt", "lag", "paused"} <= set(got_queue)
    assert "jq" in [x["name"] for x in listed]
    got = sink.wait_count(path, 4, timeout=WAIT)
    assert [r.message_id for r in got] == [e["messageId"] for e in enqueued]  # FIFO
    assert [r.body for r in got] == [b'{"i":0}', b'{"i":1}', b'{"i":2}', b'{"i":3}']
    assert max_overlap(got, 300) == 1
    assert all(r.signature_ok for r in got)

    held = route("ok")
    _, _, paused = js.seq(
        [
            q("pause", "jq"),
            q("enqueueJSON", "jq", {"url": sink.url(held), "body": {"h": 1}}),
            q("get", "jq"),
        ]
    )
    assert paused["paused"] is True
    time.sleep(3)
    assert sink.received(held) == []
    assert js.seq([q("get", "jq")])[0]["lag"] >= 1
    js.seq([q("resume", "jq")])
    sink.wait_count(held, 1, timeout=WAIT)

    deleted, after = js.seq_envelopes([q("delete", "jq"), q("get", "jq")])
    assert deleted["ok"]
    assert not after["ok"]
    assert after.get("status") == 404


def test_flow_control_parallelism_and_admin(
    js: JsSdk, sink: Sink, route: Callable[[str], str]
) -> None:
    path = route("slow/400")
    # Paused first (an admin call creates the key), so every message is still waiting when read.
    js.seq([fc("pause", "jk")])
    published = js.seq(
        [
            {
                "op": "publishJSON",
                "args": {
                    "url": sink.url(path),
                    "body": {"n": n},
                    "flowControl": {"key": "jk", "parallelism": 1, "rate": 50, "period": "1m"},
                },
            }
            for n in range(4)
        ]
    )
    info, msg = js.seq(
        [fc("get", "jk"), {"op": "messages.get", "args": {"messageId": published[-1]["messageId"]}}]
    )
    assert (info["flowControlKey"], info["isPaused"]) == ("jk", True)
    assert (msg["flowControlKey"], msg["parallelism"], msg["rate"], msg["period"]) == (
        "jk",
        1,
        50,
        60,
    )
    deadline = time.monotonic() + WAIT  # the stream worker publishes the key's state
    while (info := js.seq([fc("get", "jk")])[0])["waitListSize"] != 4:
        assert time.monotonic() < deadline, info
        time.sleep(0.3)
    assert (info["parallelismMax"], info["rateMax"], info["ratePeriod"]) == (1, 50, 60)
    assert sink.received(path) == []
    js.seq([fc("resume", "jk")])
    got = sink.wait_count(path, 4, timeout=WAIT)
    assert {r.message_id for r in got} == {p["messageId"] for p in published}
    assert max_overlap(got, 400) == 1

    out = js.seq(
        [
            fc("pause", "jk"),
            fc("get", "jk"),
            fc("resume", "jk"),
            fc("pin", "jk", {"parallelism": 2, "rate": 10, "period": 120}),
            fc("get", "jk"),
            fc("unpin", "jk", {"parallelism": True, "rate": True}),
            fc("resetRate", "jk"),
            fc("get", "jk"),
            fc("getGlobalParallelism"),
        ]
    )
    paused, pinned, final, global_par = out[1], out[4], out[7], out[8]
    assert paused["isPaused"] is True
    assert (pinned["parallelismMax"], pinned["rateMax"], pinned["ratePeriod"]) == (2, 10, 120)
    assert (pinned["isPinnedParallelism"], pinned["isPinnedRate"]) == (True, True)
    assert (final["isPaused"], final["isPinnedParallelism"], final["isPinnedRate"]) == (
        False,
        False,
        False,
    )
    assert final["rateCount"] == 0
    assert set(global_par) == {"parallelismMax", "parallelismCount"}
