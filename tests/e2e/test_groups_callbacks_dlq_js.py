"""URL groups, callbacks, failure callbacks and the DLQ through the official JS SDK
(@upstash/qstash 2.12.0, driven through Node), delivering to a real sink that verifies every
signature (a callback's against the callback URL)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.jssdk import JsSdk, JsSdkError
from tests.sink import Sink
from tests.stack import Stack

pytestmark = [pytest.mark.broker, pytest.mark.js]

WAIT = 60  # the machine may be busy with other test runs


def step(op: str, **args: Any) -> dict[str, Any]:
    return {"op": op, "args": args}


def wait_dlq(js: JsSdk, predicate: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + WAIT
    while True:
        messages: list[dict[str, Any]] = js.run("dlq.listMessages")["messages"]
        if predicate(messages):
            return messages
        assert time.monotonic() < deadline, f"DLQ never matched; last: {messages}"
        time.sleep(0.2)


def test_js_url_groups_callbacks_and_dlq(
    stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    js = JsSdk(stack.base_url, stack.token)
    a, b = route("ok") + "-a", route("ok") + "-b"
    cb, fcb, bad = route("ok") + "-cb", route("ok") + "-fcb", route("status/500")
    got = js.seq(
        [
            step(
                "urlGroups.addEndpoints",
                name="jsgrp",
                endpoints=[{"url": sink.url(a), "name": "ea"}],
            ),
            step(
                "urlGroups.addEndpoints",
                name="jsgrp",
                endpoints=[{"url": sink.url(b), "name": "eb"}],
            ),
            step("urlGroups.get", argv=["jsgrp"]),
            step("urlGroups.list"),
            step(
                "publish",
                urlGroup="jsgrp",
                body="to-group",
                callback=sink.url(cb),
                headers={
                    "Upstash-Callback-Forward-X-Cb": "c",
                    "Upstash-Callback-Workflow-RunId": "wfr_1",
                },
            ),
        ]
    )
    group, groups, published = got[2], got[3], got[4]
    assert [e["name"] for e in group["endpoints"]] == ["ea", "eb"]
    assert isinstance(group["createdAt"], int)
    assert [g["name"] for g in groups] == ["jsgrp"]
    assert isinstance(published, list)
    assert sorted(p["url"] for p in published) == sorted([sink.url(a), sink.url(b)])
    for path in (a, b):
        [r] = sink.wait_count(path, 1, timeout=WAIT)
        assert r.headers["Upstash-Topic-Name"] == "jsgrp"
        assert r.body == b"to-group"
        assert r.signature_ok, r.signature_error
    calls = sink.wait_count(cb, 2, timeout=WAIT)
    for call in calls:
        assert call.signature_ok, call.signature_error
        assert call.headers["X-Cb"] == "c"
        assert call.headers["Upstash-Workflow-Runid"] == "wfr_1"  # workflow's header mapping
        body = json.loads(call.body)
        assert body["status"] == 200
        assert base64.b64decode(body["body"]) == b"answer 200"
        assert body["topicName"] == "jsgrp"
    assert {json.loads(c.body)["endpointName"] for c in calls} == {"ea", "eb"}

    # A final failure: DLQ entry plus one failure callback that names it.
    res = js.run(
        "publish",
        url=sink.url(bad),
        body="doomed",
        retries=0,
        failureCallback=sink.url(fcb),
        headers={"Upstash-Failure-Callback-Forward-F": "f"},
    )
    [fcall] = sink.wait_count(fcb, 1, timeout=WAIT)
    assert fcall.signature_ok, fcall.signature_error
    assert fcall.headers["F"] == "f"
    fbody = json.loads(fcall.body)
    [entry] = wait_dlq(js, lambda ms: len(ms) == 1)
    assert entry["dlqId"] == fbody["dlqId"]
    assert entry["messageId"] == res["messageId"] == fbody["sourceMessageId"]
    assert entry["responseStatus"] == 500
    assert js.run("dlq.listMessages", dlqIds=[entry["dlqId"]])["messages"][0]["body"] == "doomed"

    # Retry republishes a NEW message with the same body and removes the entry.
    retried = js.run("dlq.retry", argv=[[entry["dlqId"]]])
    [new] = retried["responses"]
    assert new["messageId"] != res["messageId"]
    assert retried.get("cursor") is None
    sink.wait_for(bad, lambda rs: any(r.message_id == new["messageId"] for r in rs), timeout=WAIT)
    with pytest.raises(JsSdkError) as err:
        js.run("dlq.delete", argv=[entry["dlqId"]])
    assert err.value.status == 404
    # The retried message fails again (retries 0): a new entry, deleted with a filter.
    wait_dlq(js, lambda ms: [m["messageId"] for m in ms] == [new["messageId"]])
    assert js.run("dlq.delete", filter={"url": sink.url(bad)})["deleted"] == 1
    assert js.run("dlq.listMessages")["messages"] == []

    js.seq(
        [
            step("urlGroups.removeEndpoints", name="jsgrp", endpoints=[{"name": "ea"}]),
        ]
    )
    assert [e["url"] for e in js.run("urlGroups.get", argv=["jsgrp"])["endpoints"]] == [sink.url(b)]
    js.run("urlGroups.delete", argv=["jsgrp"])
    with pytest.raises(JsSdkError) as err:
        js.run("urlGroups.get", argv=["jsgrp"])
    assert err.value.status == 404
    assert js.run("urlGroups.list") == []
