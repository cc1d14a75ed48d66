"""Queues and flow control through the official Python SDK (qstash 3.4.0) on a real broker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from qstash import QStash
from qstash.errors import QStashError

from tests.overlap import max_overlap
from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker


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


def test_queue_admin_fifo_pause_resume_delete(
    client: QStash, sink: Sink, route: Callable[[str], str], stack: Stack
) -> None:
    name = "orders.v1"
    client.queue.upsert(name, parallelism=1)
    q = client.queue.get(name)
    assert (q.name, q.parallelism, q.paused) == (name, 1, False)
    assert name in [x.name for x in client.queue.list()]

    # FIFO with parallelism 1: enqueued in order, delivered in order, one at a time.
    path = route("slow/300")
    ids = [
        client.message.enqueue(queue=name, url=sink.url(path), body=f"m{i}").message_id  # type: ignore[union-attr]
        for i in range(4)
    ]
    ids.append(
        client.message.enqueue_json(queue=name, url=sink.url(path), body={"i": 4}).message_id
    )  # type: ignore[union-attr]
    got = sink.wait_count(path, 5, timeout=60)
    assert [r.message_id for r in got] == ids
    assert [r.body for r in got[:4]] == [b"m0", b"m1", b"m2", b"m3"]
    assert max_overlap(got, 300) == 1
    assert all(r.signature_ok for r in got)

    # Paused: accepted but held; a cancelled one leaves the wait list; resume delivers the
    # others, still in order.
    client.queue.pause(name)
    assert client.queue.get(name).paused is True
    held = route("ok")
    held_ids = [
        client.message.enqueue(queue=name, url=sink.url(held), body=f"h{i}").message_id  # type: ignore[union-attr]
        for i in range(3)
    ]
    client.message.cancel(held_ids[1])
    time.sleep(3)
    assert sink.received(held) == []
    raw = httpx.get(
        f"{stack.base_url}/v2/messages/{held_ids[0]}",
        headers={"Authorization": f"Bearer {stack.token}"},
    ).json()
    assert raw["queueName"] == name  # the Python Message type has no queue field
    assert client.queue.get(name).lag == 2
    client.queue.resume(name)
    assert [r.message_id for r in sink.wait_count(held, 2)] == [held_ids[0], held_ids[2]]
    time.sleep(1)
    assert len(sink.received(held)) == 2  # the cancelled message never came

    # Upsert toggles pause too; delete makes the queue unknown.
    client.queue.upsert(name, parallelism=2, paused=True)
    assert (client.queue.get(name).parallelism, client.queue.get(name).paused) == (2, True)
    client.queue.delete(name)
    with pytest.raises(QStashError):
        client.queue.get(name)
    assert name not in [x.name for x in client.queue.list()]


def test_enqueue_creates_queue_batch_with_queue_and_bad_names(
    client: QStash, sink: Sink, route: Callable[[str], str], stack: Stack
) -> None:
    path = route("ok")
    res = client.message.enqueue(queue="auto-q", url=sink.url(path), body="a")
    q = client.queue.get("auto-q")  # created by the enqueue, parallelism 1
    assert (q.name, q.parallelism) == ("auto-q", 1)
    batch = client.message.batch(
        [
            {"queue": "auto-q", "url": sink.url(path), "body": "b"},
            {"queue": "other-q", "url": sink.url(path), "body": "c"},
            {"url": sink.url(path), "body": "d"},
        ]
    )
    got = sink.wait_count(path, 4)
    assert sorted(r.body for r in got) == [b"a", b"b", b"c", b"d"]
    ids = {r.message_id for r in got}
    assert {res.message_id, *(b.message_id for b in batch)} == ids  # type: ignore[union-attr]
    assert "other-q" in [x.name for x in client.queue.list()]

    auth = {"Authorization": f"Bearer {stack.token}"}
    bad = httpx.post(f"{stack.base_url}/v2/enqueue/bad!name/{sink.url(path)}", headers=auth)
    assert bad.status_code == 400
    assert "error" in bad.json()
    bad = httpx.post(f"{stack.base_url}/v2/queues", headers=auth, json={"queueName": "a b"})
    assert bad.status_code == 400
    bad = httpx.post(
        f"{stack.base_url}/v2/publish/{sink.url(path)}",
        headers={**auth, "Upstash-Flow-Control-Key": "k"},
    )
    assert bad.status_code == 400
    assert "Upstash-Flow-Control-Value" in bad.json()["error"]
    assert httpx.get(f"{stack.base_url}/v2/flowControl/nope", headers=auth).status_code == 404


def test_flow_control_parallelism_and_admin(
    client: QStash, sink: Sink, route: Callable[[str], str]
) -> None:
    path = route("slow/600")
    ids = [
        client.message.publish(
            url=sink.url(path), body=f"f{i}", flow_control={"key": "fk", "parallelism": 2}
        ).message_id  # type: ignore[union-attr]
        for i in range(6)
    ]
    msg = client.message.get(ids[-1])  # waiting behind the others
    assert msg.flow_control is not None
    assert (msg.flow_control.key, msg.flow_control.parallelism, msg.flow_control.period) == (
        "fk",
        2,
        1,
    )
    info = client.flow_control.get("fk")
    assert info.key == "fk"
    assert info.parallelism_max == 2
    got = sink.wait_count(path, 6, timeout=60)
    assert {r.message_id for r in got} == set(ids)
    assert max_overlap(got, 600) == 2

    # Pause holds new messages; resume lets them through; pin/unpin/resetRate show in the info.
    client.flow_control.pause("fk")
    assert client.flow_control.get("fk").is_paused is True
    later = route("ok")
    client.message.publish(url=sink.url(later), body="x", flow_control={"key": "fk", "rate": 5})
    time.sleep(2.5)
    assert sink.received(later) == []
    assert client.flow_control.get("fk").wait_list_size == 1
    client.flow_control.resume("fk")
    sink.wait_count(later, 1)
    client.flow_control.pin("fk", {"parallelism": 3, "period": 120})
    info = client.flow_control.get("fk")
    assert (info.parallelism_max, info.rate_period, info.is_pinned_parallelism) == (3, 120, True)
    client.flow_control.unpin("fk", {"parallelism": True})
    client.flow_control.reset_rate("fk")
    info = client.flow_control.get("fk")
    assert (info.is_pinned_parallelism, info.rate_count) == (False, 0)
    assert client.flow_control.get_global_parallelism().parallelism_count >= 0


def test_flow_control_rate_per_period(
    client: QStash, sink: Sink, route: Callable[[str], str]
) -> None:
    path = route("ok")
    for i in range(6):
        client.message.publish(
            url=sink.url(path), body=f"r{i}", flow_control={"key": "rk", "rate": 2, "period": "2s"}
        )
    got = sink.wait_count(path, 6, timeout=60)
    # 2 per 2-second period, counted from the first delivery (the stack may still be warming up
    # when the first message arrives): pairs about 2 s apart, never 3 within one period.
    t = sorted(r.at for r in got)
    rel = [x - t[0] for x in t]
    assert rel[1] < 1.0, rel
    assert rel[2] >= 1.5, rel
    assert rel[3] < rel[2] + 1.0, rel
    assert rel[4] >= 3.5, rel
    assert all(t[k + 2] - t[k] >= 1.5 for k in range(4)), rel
    info = client.flow_control.get("rk")
    assert (info.rate_max, info.rate_period) == (2, 2)
