"""URL groups, callbacks, failure callbacks and the DLQ through the official Python SDK
(qstash 3.4.0), delivering to a real sink that verifies every signature with the SDK's Receiver
(a callback's signature is checked against the callback URL: ``sub`` = that URL)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import httpx
import pytest
from qstash import QStash
from qstash.errors import QStashError

from tests.sink import Receipt, Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker

T = TypeVar("T")


@pytest.fixture
def client(stack: Stack) -> Iterator[QStash]:
    c = QStash(stack.token, base_url=stack.base_url)
    yield c
    c.http._client.close()  # the SDK has no public close()


def eventually(probe: Callable[[], T | None], timeout: float = 30) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.1)


def payload(receipt: Receipt) -> dict[str, object]:
    data: dict[str, object] = json.loads(receipt.body)
    return data


def test_url_group_fan_out_and_callbacks(
    client: QStash, stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    a, b, cb = route("ok") + "-a", route("ok") + "-b", route("ok") + "-cb"
    client.url_group.delete("grp")  # missing group: still 2xx (the SDK's own tests rely on it)
    client.url_group.upsert_endpoints(
        url_group="grp", endpoints=[{"url": sink.url(a), "name": "ea"}, {"url": sink.url(b)}]
    )
    client.url_group.upsert_endpoints(url_group="grp", endpoints=[{"url": sink.url(b)}])  # no-op
    group = client.url_group.get("grp")
    assert group.name == "grp"
    assert [(e.url, e.name) for e in group.endpoints] == [(sink.url(a), "ea"), (sink.url(b), None)]
    assert [g.name for g in client.url_group.list()] == ["grp"]

    res = client.message.publish(
        url_group="grp",
        body="fan",
        callback=sink.url(cb),
        callback_headers={"cb": "1"},
        headers={"X-Src": "s"},
    )
    assert isinstance(res, list)
    assert sorted(r.url for r in res) == sorted([sink.url(a), sink.url(b)])
    got_a = sink.wait_count(a, 1)[0]
    got_b = sink.wait_count(b, 1)[0]
    for got in (got_a, got_b):
        assert got.body == b"fan"
        assert got.headers["Upstash-Topic-Name"] == "grp"
        assert got.signature_ok, got.signature_error
    by_url = {r.url: r.message_id for r in res}
    assert got_a.message_id == by_url[sink.url(a)]

    # One callback per attempt, i.e. per endpoint here, each a new signed message.
    calls = sink.wait_count(cb, 2)
    for call in calls:
        assert call.signature_ok, call.signature_error  # sub = the callback URL
        assert call.headers["Cb"] == "1"  # Python's Upstash-Callback-cb is forwarded
        assert call.headers["Content-Type"] == "application/json"
        assert call.message_id not in by_url.values()
    bodies = {payload(c)["sourceMessageId"]: payload(c) for c in calls}
    assert set(bodies) == set(by_url.values())
    first = bodies[by_url[sink.url(a)]]
    assert first["status"] == 200
    assert base64.b64decode(str(first["body"])) == b"answer 200"
    assert base64.b64decode(str(first["sourceBody"])) == b"fan"
    assert first["topicName"] == "grp"
    assert first["endpointName"] == "ea"
    assert first["url"] == sink.url(a)
    assert (first["retried"], first["maxRetries"]) == (0, 3)
    assert first["sourceHeader"] == {"X-Src": ["s"]}
    time.sleep(1)
    assert len(sink.received(cb)) == 2  # nothing more: callbacks have no callbacks

    # Batch: a group item answers with a nested array; a dedup id covers the whole fan-out.
    c = route("ok") + "-c"
    batch = client.message.batch(
        [
            {"url_group": "grp", "body": "b1", "deduplication_id": "d1"},
            {"url": sink.url(c), "body": "b2"},
        ]
    )
    assert isinstance(batch[0], list)
    assert len(batch[0]) == 2
    assert not isinstance(batch[1], list)
    again = client.message.publish(url_group="grp", body="b1", deduplication_id="d1")
    assert isinstance(again, list)
    assert sorted(r.message_id for r in again) == sorted(r.message_id for r in batch[0])
    assert [b.body for b in sink.wait_count(a, 2)] == [b"fan", b"b1"]
    sink.wait_count(c, 1)

    client.url_group.remove_endpoints(url_group="grp", endpoints=[{"name": "ea"}])
    assert [e.url for e in client.url_group.get("grp").endpoints] == [sink.url(b)]
    client.url_group.remove_endpoints(url_group="grp", endpoints=[{"url": sink.url(b)}])
    with pytest.raises(QStashError, match="not found"):
        client.url_group.get("grp")  # the last endpoint took the group with it
    with pytest.raises(QStashError, match="not found"):
        client.message.publish(url_group="grp", body="x")
    with pytest.raises(QStashError, match="url group name"):
        client.url_group.upsert_endpoints(url_group="bad name!", endpoints=[{"url": sink.url(a)}])
    auth = {"Authorization": f"Bearer {stack.token}"}
    r = httpx.post(
        f"{stack.base_url}/v2/topics/g2/endpoints",
        headers=auth,
        json={"endpoints": [{"url": "ftp://x"}]},
    )
    assert r.status_code == 400
    assert "error" in r.json()
    r = httpx.post(
        f"{stack.base_url}/v2/publish/{sink.url(a)}", headers={**auth, "Upstash-Callback": "nope"}
    )
    assert r.status_code == 400
    assert "Upstash-Callback" in r.json()["error"]
    assert client.url_group.list() == []


def test_dlq_and_failure_callback(
    client: QStash, stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    bad, fcb = route("status/500"), route("ok") + "-fcb"
    res = client.message.publish(
        url=sink.url(bad),
        body="doomed",
        retries=1,
        retry_delay="100",
        failure_callback=sink.url(fcb),
        failure_callback_headers={"Forward-F": "f"},
        label="L1",
    )
    [call] = sink.wait_count(fcb, 1)
    assert call.signature_ok, call.signature_error
    assert call.headers["F"] == "f"
    body = payload(call)
    assert body["sourceMessageId"] == res.message_id
    assert (body["status"], body["retried"], body["maxRetries"]) == (500, 1, 1)
    assert len(sink.received(bad)) == 2

    listed = eventually(lambda: client.dlq.list().messages)
    [entry] = listed
    assert entry.dlq_id == body["dlqId"]
    assert entry.message_id == res.message_id
    assert entry.response_status == 500
    assert entry.response_body == "answer 500"
    assert entry.label == "L1"
    assert client.dlq.get(entry.dlq_id).body == "doomed"
    assert client.dlq.list(filter={"url": sink.url(bad)}).messages[0].dlq_id == entry.dlq_id
    assert client.dlq.list(filter={"response_status": 404}).messages == []
    assert client.dlq.list(filter={"label": "L1"}).messages[0].dlq_id == entry.dlq_id

    # Two more, then paging and delete_many (its ids travel in a JSON body on DELETE).
    more = [
        client.message.publish(url=sink.url(bad) + f"-{i}", body=str(i), retries=0).message_id
        for i in range(2)
    ]
    eventually(lambda: len(client.dlq.list().messages) == 3)
    page1 = client.dlq.list(count=2)
    assert len(page1.messages) == 2
    assert page1.cursor
    page2 = client.dlq.list(count=2, cursor=page1.cursor)
    assert page2.cursor is None
    ids = [m.dlq_id for m in page1.messages + page2.messages]
    assert len(set(ids)) == 3
    assert {m.message_id for m in page1.messages + page2.messages} == {res.message_id, *more}

    client.dlq.delete(entry.dlq_id)
    with pytest.raises(QStashError):
        client.dlq.delete(entry.dlq_id)  # 404 once gone
    with pytest.raises(QStashError):
        client.dlq.get(entry.dlq_id)
    rest = [i for i in ids if i != entry.dlq_id]
    assert client.dlq.delete_many([rest[0], "no-such-id"]) == 1
    assert [m.dlq_id for m in client.dlq.list().messages] == [rest[1]]

    # A body that is not {"dlqIds": [...]} must never mean "delete everything".
    auth = {"Authorization": f"Bearer {stack.token}"}
    r = httpx.request("DELETE", f"{stack.base_url}/v2/dlq", headers=auth, json={"ids": [rest[1]]})
    assert r.status_code == 400
    assert len(client.dlq.list().messages) == 1
    # A single retry with an override delivers the original body as a NEW message.
    original_body = client.dlq.get(rest[1]).body
    r = httpx.post(
        f"{stack.base_url}/v2/dlq/retry/{rest[1]}",
        headers={**auth, "Upstash-Forward-X-Again": "yes", "Upstash-Retries": "0"},
    )
    assert r.status_code == 201
    new_id = r.json()["messageId"]
    assert new_id not in more
    again = sink.wait_for(bad, lambda got: any(g.message_id == new_id for g in got))
    [retried] = [g for g in again if g.message_id == new_id]
    assert retried.headers["X-Again"] == "yes"
    assert retried.signature_ok
    assert retried.body.decode() == original_body
    # Retries=0 overrode the original's: straight back into the DLQ, under a new dlqId.
    [back] = eventually(lambda: client.dlq.list(filter={"message_id": new_id}).messages)
    assert back.dlq_id != rest[1]
    assert back.max_retries == 0
    with pytest.raises(QStashError):
        client.dlq.get(rest[1])  # the retried entry is gone
