"""The official JS SDK (@upstash/qstash 2.12.0, driven through Node) against kafstash on a real
broker, delivering to a real sink. Every delivery is verified twice: by the sink with the Python
Receiver and, once per test, with the JS Receiver."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from tests.jssdk import JsSdk, JsSdkError
from tests.sink import Receipt, Sink
from tests.stack import Stack

pytestmark = [pytest.mark.broker, pytest.mark.js]


@pytest.fixture(scope="module")
def stack(module_stack: Stack) -> Stack:
    """This module's tests share one kafstash (tests/conftest.py, ``module_stack``)."""
    return module_stack


WAIT = 60  # seconds to wait for a delivery; the machine may be busy with other test runs
DEV_KEYS = {
    "current": "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r",
    "next": "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs",
}


@pytest.fixture
def js(stack: Stack) -> JsSdk:
    return JsSdk(stack.base_url, stack.token)


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def assert_signed(stack: Stack, sink: Sink, receipts: Iterable[Receipt]) -> None:
    """Both receivers accept every receipt's signature for the URL it was delivered to."""
    receipts = list(receipts)
    assert receipts
    for r in receipts:
        assert r.signature_ok, (r.path, r.signature_error)
    items = [
        {
            "signature": r.headers["Upstash-Signature"],
            "bodyBase64": base64.b64encode(r.body).decode("ascii"),
            "url": sink.url(r.path),
        }
        for r in receipts
    ]
    results = JsSdk(stack.base_url, stack.token).verify(
        stack.user.current_signing_key, stack.user.next_signing_key, items
    )
    assert results == [{"valid": True}] * len(items), results


def step(op: str, **args: Any) -> dict[str, Any]:
    return {"op": op, "args": args}


def test_publish_delivers_signed_request(
    js: JsSdk, stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    base = route("ok")
    path = base + "/?x=1&y=2"
    res = js.run(
        "publish", url=sink.url(path), body="hello", method="PUT", headers={"my-header": "v"}
    )
    assert res["messageId"].startswith("msg_")
    [got] = sink.wait_count(base, 1, timeout=WAIT)
    assert got.path == path
    assert got.method == "PUT"
    assert got.body == b"hello"
    assert got.message_id == res["messageId"]
    assert got.retried == 0
    headers = lower(got.headers)
    assert headers["my-header"] == "v"
    assert headers["user-agent"] == "Upstash-QStash"
    assert headers["content-type"] == "text/plain;charset=UTF-8"  # set by fetch, forwarded
    leaked = [h for h in headers if h.startswith(("upstash-forward-", "upstash-telemetry-"))]
    assert leaked == []
    assert_signed(stack, sink, [got])


def test_publish_json_sets_content_type(
    js: JsSdk, stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    path = route("ok")
    res = js.run("publishJSON", url=sink.url(path), body={"a": 1, "b": ["x"]})
    [got] = sink.wait_count(path, 1, timeout=WAIT)
    assert got.message_id == res["messageId"]
    assert json.loads(got.body) == {"a": 1, "b": ["x"]}
    assert lower(got.headers)["content-type"] == "application/json"
    assert_signed(stack, sink, [got])


def test_batch_and_batch_json(
    js: JsSdk, stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    base = route("ok")
    a, b, c, d = (f"{base}-{x}" for x in "abcd")
    plain, as_json = js.seq(
        [
            step(
                "batch",
                messages=[
                    {"url": sink.url(a), "body": "one", "headers": {"X-N": "1"}},
                    {"url": sink.url(b), "body": "two", "method": "PATCH"},
                ],
            ),
            step(
                "batchJSON",
                messages=[
                    {"url": sink.url(c), "body": {"n": 3}},
                    {"url": sink.url(d), "body": {"n": 4}},
                ],
            ),
        ]
    )
    assert len(plain) == 2
    assert len(as_json) == 2
    got = [sink.wait_count(p, 1, timeout=WAIT)[0] for p in (a, b, c, d)]
    ids = [r["messageId"] for r in plain + as_json]
    assert [r.message_id for r in got] == ids
    assert len(set(ids)) == 4
    assert [r.body for r in got[:2]] == [b"one", b"two"]
    assert [r.method for r in got] == ["POST", "PATCH", "POST", "POST"]
    assert lower(got[0].headers)["x-n"] == "1"
    assert [json.loads(r.body) for r in got[2:]] == [{"n": 3}, {"n": 4}]
    assert [lower(r.headers)["content-type"] for r in got[2:]] == ["application/json"] * 2
    assert_signed(stack, sink, got)


def test_delay_and_not_before(
    js: JsSdk, stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    base = route("ok")
    d, nb = base + "-delay", base + "-nb"
    t0 = time.time()
    js.seq(
        [
            step("publish", url=sink.url(d), body="d", delay=2),
            step("publish", url=sink.url(nb), body="n", notBefore=int(t0) + 3),
        ]
    )
    got_d = sink.wait_count(d, 1, timeout=WAIT)[0]
    got_nb = sink.wait_count(nb, 1, timeout=WAIT)[0]
    # Never early: the publish happened after t0.
    assert got_d.at >= t0 + 2
    assert got_nb.at >= int(t0) + 3
    assert (got_d.body, got_nb.body) == (b"d", b"n")
    assert_signed(stack, sink, [got_d, got_nb])


def test_get_and_cancel_delayed_message(
    js: JsSdk, stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    base = route("ok")
    doomed, control = base + "-doomed", base + "-control"
    target, ctl = js.seq(
        [
            step(
                "publish",
                url=sink.url(doomed),
                body="never",
                delay=4,
                retries=1,
                method="PUT",
                headers={"my-header": "v"},
            ),
            # Same delay, not cancelled: once it arrives, the doomed one would have too.
            step("publish", url=sink.url(control), body="ctl", delay=4),
        ]
    )
    mid = target["messageId"]
    got, cancelled, after = js.seq_envelopes(
        [
            step("messages.get", messageId=mid),
            step("messages.cancel", messageId=mid),
            step("messages.get", messageId=mid),
        ]
    )
    assert got["ok"], got
    msg = got["result"]
    assert msg["messageId"] == mid
    assert msg["url"] == sink.url(doomed)
    assert msg["method"] == "PUT"
    assert msg["maxRetries"] == 1
    assert msg["body"] == "never"
    assert lower(msg["header"])["my-header"] == ["v"]
    assert isinstance(msg["createdAt"], int)
    assert isinstance(msg["notBefore"], int)
    assert abs(msg["notBefore"] - msg["createdAt"] - 4000) < 1000  # both in ms
    assert abs(msg["createdAt"] / 1000 - time.time()) < 60
    assert cancelled == {"ok": True, "result": {"cancelled": 1}}
    assert not after["ok"]
    assert after.get("status") == 404, after
    [arrived] = sink.wait_count(control, 1, timeout=WAIT)
    assert arrived.message_id == ctl["messageId"]
    time.sleep(1)
    assert sink.received(doomed) == []
    assert_signed(stack, sink, [arrived])


def test_unknown_message_is_404(js: JsSdk) -> None:
    got, cancelled = js.seq_envelopes(
        [
            step("messages.get", messageId="msg_doesnotexist"),
            step("messages.cancel", messageId="msg_doesnotexist"),
        ]
    )
    assert (got["ok"], got.get("status")) == (False, 404), got
    assert (cancelled["ok"], cancelled.get("status")) == (False, 404), cancelled


def test_retries_with_custom_delay(
    js: JsSdk, stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    path = route("fail").replace("/fail/", "/fail/3/")
    res = js.run("publish", url=sink.url(path), body="r", retries=5, retryDelay="200 * retried")
    sink.wait_count(path, 4, timeout=WAIT)
    time.sleep(1)  # a fifth attempt after the 200 would be a bug
    got = sink.received(path)
    assert [r.retried for r in got] == [0, 1, 2, 3]
    assert [r.answered for r in got] == [500, 500, 500, 200]
    assert {r.message_id for r in got} == {res["messageId"]}
    assert all(r.body == b"r" for r in got)
    # Each retry waited at least 200 * retried ms after the previous attempt.
    for n in (1, 2):
        assert got[n + 1].at - got[n].at >= 0.2 * n - 0.05
    assert_signed(stack, sink, got)


def test_489_nonretryable_fails_at_once(
    js: JsSdk, stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    path = route("nonretryable")
    js.run("publish", url=sink.url(path), body="x", retries=3, retryDelay="50")
    sink.wait_count(path, 1, timeout=WAIT)
    time.sleep(1.5)  # a retry would come 50 ms after the first attempt
    got = sink.received(path)
    assert [(r.retried, r.answered) for r in got] == [(0, 489)]
    assert_signed(stack, sink, got)


def test_timeout_counts_as_failed_attempt(
    js: JsSdk, stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    path = route("slow").replace("/slow/", "/slow/3000/")
    js.run("publish", url=sink.url(path), body="x", retries=1, retryDelay="100", timeout=1)
    # The sink answers 200 after 3 s; only the 1 s timeout can make a second attempt happen.
    got = sink.wait_count(path, 2, timeout=WAIT)
    assert [r.retried for r in got] == [0, 1]
    assert len({r.message_id for r in got}) == 1
    # Receipts are stamped after the same 3 s sleep: the retry began >= timeout + delay later.
    assert got[1].at - got[0].at >= 0.9
    assert_signed(stack, sink, got)


def test_dedup_by_id(js: JsSdk, stack: Stack, sink: Sink, route: Callable[[str], str]) -> None:
    path = route("ok")
    first, second = js.seq(
        [
            step("publish", url=sink.url(path), body="a", deduplicationId=path),
            step("publish", url=sink.url(path), body="b", deduplicationId=path),
        ]
    )
    assert second["messageId"] == first["messageId"]
    assert second.get("deduplicated") is True
    assert not first.get("deduplicated")
    sink.wait_count(path, 1, timeout=WAIT)
    time.sleep(1)
    got = sink.received(path)
    assert [(r.body, r.message_id) for r in got] == [(b"a", first["messageId"])]
    assert_signed(stack, sink, got)


def test_dedup_by_content(js: JsSdk, stack: Stack, sink: Sink, route: Callable[[str], str]) -> None:
    path = route("ok")
    one, two, other = js.seq(
        [
            step("publish", url=sink.url(path), body="same", contentBasedDeduplication=True),
            step("publish", url=sink.url(path), body="same", contentBasedDeduplication=True),
            step("publish", url=sink.url(path), body="diff", contentBasedDeduplication=True),
        ]
    )
    assert two["messageId"] == one["messageId"]
    assert two.get("deduplicated") is True
    assert other["messageId"] != one["messageId"]
    assert not other.get("deduplicated")
    assert not one.get("deduplicated")
    sink.wait_count(path, 2, timeout=WAIT)
    time.sleep(1)
    got = sink.received(path)
    assert sorted((r.body, r.message_id) for r in got) == sorted(
        [(b"diff", other["messageId"]), (b"same", one["messageId"])]
    )
    assert_signed(stack, sink, got)


def test_bad_token_is_401(stack: Stack, sink: Sink, route: Callable[[str], str]) -> None:
    path = route("ok")
    bad = JsSdk(stack.base_url, "not-a-token")
    with pytest.raises(JsSdkError) as err:
        bad.run("publish", url=sink.url(path), body="x")
    assert err.value.status == 401
    others = bad.seq_envelopes(
        [
            step("publishJSON", url=sink.url(path), body={"a": 1}),
            step("batch", messages=[{"url": sink.url(path), "body": "x"}]),
            step("messages.get", messageId="msg_doesnotexist"),
            step("keys.get"),
        ]
    )
    assert [(e["ok"], e.get("status")) for e in others] == [(False, 401)] * 4, others
    time.sleep(0.5)
    assert sink.received(path) == []


def test_keys_are_the_dev_keys(js: JsSdk, stack: Stack) -> None:
    keys = js.run("keys.get")
    assert keys == DEV_KEYS
    assert keys == {
        "current": stack.user.current_signing_key,
        "next": stack.user.next_signing_key,
    }
