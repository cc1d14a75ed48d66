"""The official Python SDK (qstash 3.4.0) against kafstash on a real broker, delivering to a
real sink that verifies every signature with the SDK's Receiver."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from qstash import QStash
from qstash.errors import QStashError

from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def stack(module_stack: Stack) -> Stack:
    """This module's tests share one kafstash (tests/conftest.py, ``module_stack``)."""
    return module_stack


@pytest.fixture
def client(stack: Stack) -> Iterator[QStash]:
    c = QStash(stack.token, base_url=stack.base_url)
    yield c
    c.http._client.close()  # the SDK has no public close()


def test_publish_delivers_signed_request(
    client: QStash, sink: Sink, route: Callable[[str], str]
) -> None:
    path = route("ok") + "?x=1&y=2"
    res = client.message.publish(
        url=sink.url(path), body="hello", headers={"my-header": "v"}, method="PUT"
    )
    [got] = sink.wait_count(route("ok").split("?")[0], 1)
    assert got.path == path
    assert got.method == "PUT"
    assert got.body == b"hello"
    assert got.message_id == res.message_id
    assert got.headers["My-Header"] == "v"
    assert got.headers["User-Agent"] == "Upstash-QStash"
    assert got.retried == 0
    assert got.signature_ok, got.signature_error


def test_publish_json_sets_content_type(
    client: QStash, sink: Sink, route: Callable[[str], str]
) -> None:
    path = route("ok")
    client.message.publish_json(url=sink.url(path), body={"a": 1})
    [got] = sink.wait_count(path, 1)
    assert json.loads(got.body) == {"a": 1}
    assert got.headers["Content-Type"] == "application/json"
    assert got.signature_ok


def test_batch(client: QStash, sink: Sink, route: Callable[[str], str]) -> None:
    a, b = route("ok") + "-a", route("ok") + "-b"
    res = client.message.batch(
        [
            {"url": sink.url(a), "body": "one", "headers": {"X-N": "1"}},
            {"url": sink.url(b), "body": "two"},
        ]
    )
    assert len(res) == 2
    got_a = sink.wait_count(a, 1)[0]
    got_b = sink.wait_count(b, 1)[0]
    assert (got_a.body, got_b.body) == (b"one", b"two")
    assert got_a.headers["X-N"] == "1"
    assert [got_a.message_id, got_b.message_id] == [r.message_id for r in res]  # type: ignore[union-attr]


def test_delay_and_not_before(client: QStash, sink: Sink, route: Callable[[str], str]) -> None:
    d, nb = route("ok") + "-delay", route("ok") + "-nb"
    t0 = time.time()
    client.message.publish(url=sink.url(d), body="d", delay="2s")
    client.message.publish(url=sink.url(nb), body="n", not_before=int(t0) + 3)
    got_d = sink.wait_count(d, 1, timeout=30)[0]
    got_nb = sink.wait_count(nb, 1, timeout=30)[0]
    assert got_d.at >= t0 + 2
    assert got_nb.at >= int(t0) + 3


def test_get_and_cancel_delayed_message(
    client: QStash, sink: Sink, route: Callable[[str], str]
) -> None:
    path = route("ok")
    res = client.message.publish(url=sink.url(path), body="never", delay="4s", retries=1)
    msg = client.message.get(res.message_id)
    assert msg.message_id == res.message_id
    assert msg.url == sink.url(path)
    assert msg.max_retries == 1
    assert msg.body == "never"
    assert msg.not_before > msg.created_at
    client.message.cancel(res.message_id)
    with pytest.raises(QStashError, match="404"):
        client.message.get(res.message_id)
    time.sleep(6)
    assert sink.received(path) == []


def test_unknown_message_is_404(client: QStash) -> None:
    with pytest.raises(QStashError, match="404"):
        client.message.get("msg_doesnotexist")


def test_retries_with_custom_delay(client: QStash, sink: Sink, route: Callable[[str], str]) -> None:
    path = route("fail").replace("/fail/", "/fail/3/")
    client.message.publish(url=sink.url(path), body="r", retries=5, retry_delay="200 * retried")
    got = sink.wait_count(path, 4, timeout=30)
    time.sleep(1)
    got = sink.received(path)
    assert [r.retried for r in got] == [0, 1, 2, 3]
    assert [r.answered for r in got] == [500, 500, 500, 200]
    assert len({r.message_id for r in got}) == 1
    assert all(r.signature_ok for r in got)
    # Each retry waited at least 200 * retried ms after the previous attempt.
    for n in (1, 2):
        assert got[n + 1].at - got[n].at >= 0.2 * n - 0.05


def test_retries_exhausted_then_stop(
    client: QStash, sink: Sink, route: Callable[[str], str]
) -> None:
    path = route("status").replace("/status/", "/status/500/")
    client.message.publish(url=sink.url(path), body="x", retries=2, retry_delay="100")
    sink.wait_count(path, 3, timeout=30)
    time.sleep(1.5)
    assert [r.retried for r in sink.received(path)] == [0, 1, 2]


def test_retry_after_is_honoured(client: QStash, sink: Sink, route: Callable[[str], str]) -> None:
    path = route("retry-after").replace("/retry-after/", "/retry-after/2/")
    # Without Retry-After the custom delay (50 ms) would retry almost at once.
    client.message.publish(url=sink.url(path), body="x", retries=2, retry_delay="50")
    first, second = sink.wait_count(path, 2, timeout=30)[:2]
    assert first.answered == 503
    assert second.answered == 200
    assert second.at - first.at >= 1.9


def test_489_nonretryable_fails_at_once(
    client: QStash, sink: Sink, route: Callable[[str], str]
) -> None:
    path = route("nonretryable")
    client.message.publish(url=sink.url(path), body="x", retries=3, retry_delay="50")
    sink.wait_count(path, 1)
    time.sleep(1.5)
    assert len(sink.received(path)) == 1


def test_timeout_counts_as_failed_attempt(
    client: QStash, sink: Sink, route: Callable[[str], str]
) -> None:
    path = route("slow").replace("/slow/", "/slow/3000/")
    client.message.publish(url=sink.url(path), body="x", retries=1, retry_delay="100", timeout="1s")
    got = sink.wait_count(path, 2, timeout=30)
    assert [r.retried for r in got[:2]] == [0, 1]
    # The second attempt started about one timeout after the first, not after the 3 s answer.
    assert got[1].at - got[0].at < 2.5


def test_dedup_by_id(client: QStash, sink: Sink, route: Callable[[str], str]) -> None:
    path = route("ok")
    first = client.message.publish(url=sink.url(path), body="a", deduplication_id=path)
    second = client.message.publish(url=sink.url(path), body="b", deduplication_id=path)
    assert second.message_id == first.message_id
    assert second.deduplicated is True
    assert first.deduplicated is False
    sink.wait_count(path, 1)
    time.sleep(1)
    assert [r.body for r in sink.received(path)] == [b"a"]


def test_dedup_by_content(client: QStash, sink: Sink, route: Callable[[str], str]) -> None:
    path = route("ok")
    one = client.message.publish(url=sink.url(path), body="same", content_based_deduplication=True)
    two = client.message.publish(url=sink.url(path), body="same", content_based_deduplication=True)
    other = client.message.publish(
        url=sink.url(path), body="diff", content_based_deduplication=True
    )
    assert two.message_id == one.message_id
    assert two.deduplicated
    assert other.message_id != one.message_id
    assert not other.deduplicated
    sink.wait_count(path, 2)
    time.sleep(1)
    assert sorted(r.body for r in sink.received(path)) == [b"diff", b"same"]


def test_bad_input_is_rejected_with_qstash_errors(stack: Stack) -> None:
    auth = {"Authorization": f"Bearer {stack.token}"}
    base = f"{stack.base_url}/v2/publish/"
    cases = [
        ({}, "ftp://example.com/x", 400),
        ({"Upstash-Delay": "soon"}, "http://127.0.0.1:1/x", 400),
        ({"Upstash-Retries": "many"}, "http://127.0.0.1:1/x", 400),
        ({"Upstash-Retry-Delay": "__import__('os')"}, "http://127.0.0.1:1/x", 400),
        ({"Authorization": "Bearer wrong"}, "http://127.0.0.1:1/x", 401),
    ]
    for extra, dest, status in cases:
        r = httpx.post(base + dest, headers={**auth, **extra}, content=b"x")
        assert r.status_code == status, (extra, r.text)
        assert "error" in r.json()
    r = httpx.post(base + "http://127.0.0.1:1/x", headers=auth, content=b"x" * (600 * 1024))
    assert r.status_code == 413
    assert "error" in r.json()
    big = [{"destination": "http://127.0.0.1:1/x", "body": "x" * (400 * 1024)}] * 6
    r = httpx.post(f"{stack.base_url}/v2/batch", headers=auth, json=big)
    assert r.status_code == 413
    r = httpx.post(f"{stack.base_url}/v2/batch", headers=auth, content=b"[{not json")
    assert r.status_code == 400
    assert "error" in r.json()
    r = httpx.get(f"{stack.base_url}/v2/keys")
    assert r.status_code == 401


def test_keys_are_the_dev_keys(stack: Stack) -> None:
    r = httpx.get(f"{stack.base_url}/v2/keys", headers={"Authorization": f"Bearer {stack.token}"})
    assert r.json() == {
        "current": "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r",
        "next": "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs",
    }


def test_dedup_window_ends(kafka_bootstrap: str, tmp_path: Path) -> None:
    with Stack(kafka_bootstrap, tmp_path, env={"KAFSTASH_DEDUP_WINDOW": "2"}) as stack:
        client = QStash(stack.token, base_url=stack.base_url)
        url = "http://127.0.0.1:9/never"  # undeliverable is fine: only ids are compared
        first = client.message.publish(url=url, body="a", deduplication_id="w", retries=0)
        again = client.message.publish(url=url, body="a", deduplication_id="w", retries=0)
        assert again.message_id == first.message_id
        time.sleep(2.5)
        later = client.message.publish(url=url, body="a", deduplication_id="w", retries=0)
        assert later.message_id != first.message_id
        assert not later.deduplicated
        client.http._client.close()
