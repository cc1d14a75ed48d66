"""kafstash's own Python client (``from kafstash import Client``) against kafstash on the real
broker, delivering to a real sink. Every receipt is verified twice: by the sink with the official
Receiver, and here with ours.

The exact requests of every method are also pinned in tests/unit/test_client_mock.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest

from kafstash import ApiError, AsyncClient, Client, NotFound, Receiver, Unauthorized
from tests.sink import Receipt, Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def stack(module_stack: Stack) -> Stack:
    """This module's tests share one kafstash (tests/conftest.py, ``module_stack``)."""
    return module_stack


Route = Callable[[str], str]


@pytest.fixture
def client(stack: Stack) -> Iterator[Client]:
    with Client(token=stack.token, base_url=stack.base_url) as c:
        yield c


@pytest.fixture
def receiver(stack: Stack) -> Receiver:
    return Receiver(
        current_signing_key=stack.user.current_signing_key,
        next_signing_key=stack.user.next_signing_key,
    )


def verified(
    receiver: Receiver, sink: Sink, receipts: list[Receipt], *, official: bool = True
) -> list[Receipt]:
    """``receipts``, each checked by the official Receiver (in the sink) and by ours.

    ``official=False`` for binary bodies: qstash 3.4.0's Receiver takes the body as ``str``, so
    the sink hands it a lossy decode that cannot verify; ours takes the bytes.
    """
    for r in receipts:
        if official:
            assert r.signature_ok, r.signature_error
        claims = receiver.verify(
            signature=r.headers["Upstash-Signature"], body=r.body, url=sink.url(r.path)
        )
        assert claims["sub"] == sink.url(r.path)
    return receipts


def test_publish(client: Client, receiver: Receiver, sink: Sink, route: Route) -> None:
    path = route("ok") + "?x=1&y=2"
    result = client.publish(
        url=sink.url(path),
        body=b"hello \xff",
        method="PUT",
        headers={"My-Header": "v"},
        content_type="application/octet-stream",
        label="client",
    )
    assert result.url == sink.url(path)
    assert result.message_id.startswith("msg_")
    assert not result.deduplicated
    [got] = verified(receiver, sink, sink.wait_count(path.split("?")[0], 1), official=False)
    assert (got.path, got.method, got.body) == (path, "PUT", b"hello \xff")
    assert got.message_id == result.message_id
    assert got.headers["My-Header"] == "v"
    assert got.headers["Content-Type"] == "application/octet-stream"
    assert got.retried == 0


def test_publish_json(client: Client, receiver: Receiver, sink: Sink, route: Route) -> None:
    path = route("ok")
    client.publish_json(url=sink.url(path), body={"a": [1, "ü"]})
    [got] = verified(receiver, sink, sink.wait_count(path, 1))
    assert json.loads(got.body) == {"a": [1, "ü"]}
    assert got.headers["Content-Type"] == "application/json"


def test_batch(client: Client, receiver: Receiver, sink: Sink, route: Route) -> None:
    a, b = route("ok") + "-a", route("ok") + "-b"
    results = client.batch(
        [
            {"url": sink.url(a), "body": "one", "headers": {"X-N": "1"}},
            {"url": sink.url(b), "body": b"two", "method": "PATCH", "retries": 0},
        ]
    )
    assert [r.url for r in results] == [sink.url(a), sink.url(b)]
    got_a = verified(receiver, sink, sink.wait_count(a, 1))[0]
    got_b = verified(receiver, sink, sink.wait_count(b, 1))[0]
    assert (got_a.body, got_b.body, got_b.method) == (b"one", b"two", "PATCH")
    assert got_a.headers["X-N"] == "1"
    assert [got_a.message_id, got_b.message_id] == [r.message_id for r in results]


def test_delay_get_and_cancel(client: Client, receiver: Receiver, sink: Sink, route: Route) -> None:
    kept, cancelled = route("ok") + "-kept", route("ok") + "-cancelled"
    t0 = time.time()
    keep = client.publish(url=sink.url(kept), body="later", delay=2000)  # int: milliseconds
    drop = client.publish(url=sink.url(cancelled), body="never", delay="4s", retries=1)

    msg = client.get_message(drop.message_id)
    assert (msg.message_id, msg.url, msg.max_retries) == (drop.message_id, sink.url(cancelled), 1)
    assert msg.content == b"never"
    assert msg.not_before - msg.created_at >= 4000
    client.cancel_message(drop.message_id)
    with pytest.raises(NotFound):
        client.get_message(drop.message_id)
    with pytest.raises(NotFound):
        client.cancel_message(drop.message_id)

    [got] = verified(receiver, sink, sink.wait_count(kept, 1, timeout=60))
    assert got.message_id == keep.message_id
    assert got.at >= t0 + 2  # a lower bound only: a busy machine may deliver later
    # The cancelled message was due 4 s after t0; give it time to (wrongly) show up.
    time.sleep(max(0.0, t0 + 7 - time.time()))
    assert sink.received(cancelled) == []


def test_dedup(client: Client, receiver: Receiver, sink: Sink, route: Route) -> None:
    by_id, by_content = route("ok") + "-id", route("ok") + "-content"
    first = client.publish(url=sink.url(by_id), body="a", deduplication_id=by_id)
    second = client.publish(url=sink.url(by_id), body="b", deduplication_id=by_id)
    assert (second.message_id, second.deduplicated, first.deduplicated) == (
        first.message_id,
        True,
        False,
    )
    one = client.publish(url=sink.url(by_content), body="s", content_based_deduplication=True)
    two = client.publish(url=sink.url(by_content), body="s", content_based_deduplication=True)
    assert (two.message_id, two.deduplicated) == (one.message_id, True)
    verified(receiver, sink, sink.wait_count(by_id, 1))
    verified(receiver, sink, sink.wait_count(by_content, 1))
    time.sleep(1.5)
    assert [r.body for r in sink.received(by_id)] == [b"a"]
    assert [r.body for r in sink.received(by_content)] == [b"s"]


def test_errors(stack: Stack, client: Client) -> None:
    with (
        Client(token="wrong", base_url=stack.base_url) as stranger,
        pytest.raises(Unauthorized, match="401"),
    ):
        stranger.publish(url="http://127.0.0.1:1/x", body="x")
    with pytest.raises(NotFound) as info:
        client.get_message("msg_doesnotexist")
    assert info.value.status == 404
    assert info.value.message  # QStash's {"error": ...}, parsed
    with pytest.raises(ApiError) as bad:
        client.publish(url="ftp://example.com/x")
    assert (bad.value.status, bad.value.retryable) == (400, False)
    with pytest.raises(ApiError, match="Upstash-Retry-Delay"):
        client.publish(url="http://127.0.0.1:1/x", retry_delay="__import__('os')")


async def test_async_client(stack: Stack, receiver: Receiver, sink: Sink, route: Route) -> None:
    path = route("ok")
    async with AsyncClient(token=stack.token, base_url=stack.base_url) as client:
        result = await client.publish_json(url=sink.url(path), body=[1, 2], delay="1s")
        pending = await client.get_message(result.message_id)
        assert pending.url == sink.url(path)
        [batched] = await client.batch([{"url": sink.url(path), "body": "b"}])
        with pytest.raises(NotFound):
            await client.cancel_message("msg_doesnotexist")
    got = verified(receiver, sink, sink.wait_count(path, 2, timeout=60))
    assert {r.message_id for r in got} == {result.message_id, batched.message_id}


def test_enqueue_keeps_fifo_and_schedules_fire(
    client: Client, receiver: Receiver, sink: Sink, route: Route
) -> None:
    slow = route("slow/300")
    for i in range(3):
        client.enqueue(queue="client-q", url=sink.url(slow), body=f"m{i}")
    got = verified(receiver, sink, sink.wait_count(slow, 3, timeout=60))
    assert [r.body for r in got] == [b"m0", b"m1", b"m2"]  # parallelism 1: publish order

    ticks = route("ok") + "-tick"
    sid = client.schedules.create(
        destination=sink.url(ticks), cron="*/2 * * * * *", body="tick", schedule_id="client-s"
    )
    assert sid == "client-s"
    assert client.schedules.get(sid).cron == "*/2 * * * * *"
    assert [s.schedule_id for s in client.schedules.list()] == [sid]
    client.schedules.pause(sid)
    assert client.schedules.get(sid).paused
    client.schedules.resume(sid)
    assert not client.schedules.get(sid).paused
    [first] = verified(receiver, sink, sink.wait_count(ticks, 1, timeout=30))[:1]
    assert first.headers["Upstash-Schedule-Id"] == sid
    assert first.body == b"tick"
    client.schedules.delete(sid)
    with pytest.raises(NotFound):
        client.schedules.get(sid)
