"""Events/logs, bulk cancel, redaction, signing keys and user isolation through BOTH official
SDKs (qstash 3.4.0 and @upstash/qstash 2.12.0) against kafstash on the real broker; deliveries
are verified at the sink (signatures checked by the Python Receiver)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from qstash import QStash, Receiver
from qstash.errors import QStashError
from qstash.log import Log, LogState

from tests.jssdk import JsSdk
from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker

WAIT = 60
SECRET = "planted-s3cret-9f3a"


@pytest.fixture
def client(stack: Stack) -> Iterator[QStash]:
    c = QStash(stack.token, base_url=stack.base_url)
    yield c
    c.http._client.close()  # the SDK has no public close()


def step(op: str, **args: Any) -> dict[str, Any]:
    return {"op": op, "args": args}


def wait_logs(
    client: QStash, predicate: Callable[[list[Log]], bool], timeout: float = WAIT, **kw: Any
) -> list[Log]:
    """Poll ``client.log.list(**kw)`` (all pages) until ``predicate`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        logs = all_logs(client, **kw)
        if predicate(logs):
            return logs
        if time.monotonic() > deadline:
            raise AssertionError(f"logs never matched: {[(x.message_id, x.state) for x in logs]}")
        time.sleep(0.3)


def all_logs(client: QStash, **kw: Any) -> list[Log]:
    out: list[Log] = []
    cursor: str | None = None
    for _ in range(100):
        page = client.log.list(cursor=cursor, **kw)
        out += page.logs
        cursor = page.cursor
        if cursor is None:
            return out
    raise AssertionError("the cursor never ended")


def wait_gone(client: QStash, message_id: str, timeout: float = 20) -> None:
    """A delivered message leaves the messages view once its tombstone is read back."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.message.get(message_id)
        except QStashError:
            return
        assert time.monotonic() < deadline, f"{message_id} is still pending"
        time.sleep(0.2)


def states(logs: list[Log], mid: str) -> set[LogState]:
    return {x.state for x in logs if x.message_id == mid}


def topic_values(bootstrap: str, topic: str) -> list[bytes]:
    """Every record value now in ``topic`` (read from the beginning to the current end)."""

    async def read() -> list[bytes]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in parts]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            out: list[bytes] = []
            for tp in tps:
                while await consumer.position(tp) < end[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    out += [r.value for r in batch.get(tp, []) if r.value is not None]
            return out
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_events_filters_paging_and_redaction(
    client: QStash, stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    ok, fail = route("ok"), route("fail").replace("/fail/", "/fail/1/")
    js = JsSdk(stack.base_url, stack.token)
    red_id = client.message.publish(
        url=sink.url(ok + "-red"),
        body=f"body {SECRET}",
        headers={"Authorization": f"Bearer {SECRET}", "X-Plain": "visible"},
        label="red",
        redact={"body": True, "header": ["Authorization"]},
    ).message_id  # type: ignore[union-attr]
    js_red_id = js.run(
        "publish",
        url=sink.url(ok + "-jsred"),
        body=f"js body {SECRET}",
        headers={"Authorization": f"Bearer {SECRET}"},
        label="red",
        redact={"body": True, "header": ["Authorization"]},
    )["messageId"]
    # The docs' spelling (headers[...], spaces), as a curl user would send it.
    delayed = httpx.post(
        f"{stack.base_url}/v2/publish/{sink.url(ok + '-later')}",
        content=f"later {SECRET}",
        headers={
            "Authorization": f"Bearer {stack.token}",
            "Upstash-Redact-Fields": "body, headers[Authorization]",
            "Upstash-Forward-Authorization": f"Bearer {SECRET}",
            "Upstash-Delay": "60s",
        },
    ).json()["messageId"]
    retried = client.message.publish(
        url=sink.url(fail), body="r", retries=2, retry_delay="100", label="flaky"
    ).message_id
    plain = [
        client.message.publish(url=sink.url(ok + f"-p{i}"), body=f"p{i}", label="bulk").message_id
        for i in range(5)
    ]

    # The destination gets the originals, signed.
    [got] = sink.wait_count(ok + "-red", 1, timeout=WAIT)
    assert got.body == f"body {SECRET}".encode()
    assert got.headers["Authorization"] == f"Bearer {SECRET}"
    assert got.headers["X-Plain"] == "visible"
    assert got.signature_ok, got.signature_error
    [got_js] = sink.wait_count(ok + "-jsred", 1, timeout=WAIT)
    assert got_js.body == f"js body {SECRET}".encode()
    assert got_js.headers["Authorization"] == f"Bearer {SECRET}"
    assert got_js.signature_ok, got_js.signature_error
    flaky = sink.wait_count(fail, 2, timeout=WAIT)
    assert [r.answered for r in flaky] == [500, 200]
    assert all(r.signature_ok for r in flaky)

    logs = wait_logs(
        client,
        lambda got: all(
            LogState.DELIVERED in states(got, m) for m in (red_id, js_red_id, retried, *plain)
        ),
    )
    assert states(logs, retried) >= {
        LogState.CREATED,
        LogState.ACTIVE,
        LogState.ERROR,
        LogState.RETRY,
        LogState.DELIVERED,
    }
    assert states(logs, delayed) == {LogState.CREATED}
    assert all(x.url.startswith(sink.url("/")) for x in logs)

    # Filters: label, state (IN_PROGRESS = ACTIVE|RETRY|ERROR), message ids, url, dates.
    by_label = all_logs(client, filter={"label": "bulk"})
    assert {x.message_id for x in by_label} == set(plain)
    assert all(x.label == "bulk" for x in by_label)
    errors = all_logs(client, filter={"state": LogState.IN_PROGRESS, "message_id": retried})
    assert {x.state for x in errors} == {LogState.ACTIVE, LogState.ERROR, LogState.RETRY}
    assert any(x.response_status == 500 for x in errors)
    two = all_logs(client, filter={"message_ids": plain[:2], "state": LogState.DELIVERED})
    assert sorted(x.message_id for x in two) == sorted(plain[:2])
    by_url = all_logs(client, filter={"url": sink.url(ok + "-p3")})
    assert {x.message_id for x in by_url} == {plain[3]}
    created = next(x for x in logs if x.message_id == plain[0] and x.state == LogState.CREATED)
    window = all_logs(
        client, filter={"from_time": created.time, "to_time": created.time, "label": "bulk"}
    )
    assert plain[0] in {x.message_id for x in window}
    assert all(x.time == created.time for x in window)

    # Paging: 2 per page, latest first, walks every event exactly once and ends (cursor None).
    paged = all_logs(client, count=2, filter={"label": "bulk"})
    assert [(x.message_id, x.state, x.time) for x in paged] == [
        (x.message_id, x.state, x.time) for x in by_label
    ]
    assert [x.time for x in paged] == sorted((x.time for x in paged), reverse=True)
    js_seen: list[tuple[str, str]] = []
    cursor: str | None = None
    for _ in range(20):
        more = {"cursor": cursor} if cursor else {}  # JSON null would reach the SDK as null
        page = js.run("logs", count=2, filter={"label": "bulk", "state": "DELIVERED"}, **more)
        assert len(page["logs"]) <= 2
        js_seen += [(e["messageId"], e["state"]) for e in page["logs"]]
        cursor = page.get("cursor")
        if not cursor:
            break
    assert sorted(js_seen) == sorted((m, "DELIVERED") for m in plain)
    by_ids = js.run("events", messageIds=[plain[4]], count=10)["events"]
    assert {e["messageId"] for e in by_ids} == {plain[4]}
    assert {e["state"] for e in by_ids} >= {"CREATED", "ACTIVE", "DELIVERED"}
    too_many = httpx.get(
        f"{stack.base_url}/v2/events?count=1001", headers={"Authorization": f"Bearer {stack.token}"}
    )
    assert too_many.status_code == 400
    assert "error" in too_many.json()
    logs_path = httpx.get(
        f"{stack.base_url}/v2/logs?messageId={red_id}&order=earliestFirst",
        headers={"Authorization": f"Bearer {stack.token}"},
    ).json()
    assert [e["state"] for e in logs_path["logs"]][:1] == ["CREATED"]
    assert "cursor" not in logs_path

    # Redaction: nothing readable holds the secret; the body is shown as REDACTED:<sha256>.
    red_logs = [x for x in logs if x.message_id == red_id and x.state == LogState.CREATED]
    assert red_logs
    assert red_logs[0].body_base64 is not None
    assert base64.b64decode(red_logs[0].body_base64).startswith(b"REDACTED:")
    assert red_logs[0].headers is not None
    assert red_logs[0].headers["X-Plain"] == ["visible"]
    msg = client.message.get(delayed)
    assert msg.body is not None
    assert msg.body.startswith("REDACTED:")
    js_red_logs = js.run("logs", filter={"label": "red"})["logs"]
    assert {e["messageId"] for e in js_red_logs} == {red_id, js_red_id}
    assert all(
        e["header"]["Authorization"][0].startswith("REDACTED:")
        for e in js_red_logs
        if e["state"] == "CREATED"
    )
    auth = httpx.Headers({"Authorization": f"Bearer {stack.token}"})
    readable = [
        httpx.get(f"{stack.base_url}/v2/events?label=red", headers=auth).text,
        json.dumps(js_red_logs),
        httpx.get(f"{stack.base_url}/v2/events?messageId={delayed}", headers=auth).text,
        httpx.get(f"{stack.base_url}/v2/messages/{delayed}", headers=auth).text,
    ]
    assert all(SECRET not in text for text in readable)
    events_topic = topic_values(stack.bootstrap, f"{stack.prefix}.events")
    messages_topic = topic_values(stack.bootstrap, f"{stack.prefix}.messages")
    for raw in events_topic + messages_topic:
        if any(m.encode() in raw for m in (red_id, js_red_id, delayed)):
            assert SECRET.encode() not in raw
    assert any(delayed.encode() in raw for raw in messages_topic)
    client.message.cancel(delayed)


def test_bulk_cancel_in_both_dialects(
    client: QStash, stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    base = route("ok")
    js = JsSdk(stack.base_url, stack.token)

    def later(name: str, label: str) -> str:
        return client.message.publish(
            url=sink.url(f"{base}-{name}"), body=name, delay="8s", label=label
        ).message_id

    t0 = time.time()
    d1, d2, d3, d4 = (later(f"d{i}", lab) for i, lab in enumerate(("a", "a", "drop", "z"), 1))
    keep = client.message.publish(
        url=sink.url(f"{base}-keep"), body="keep", delay="2s", label="keep"
    ).message_id

    assert client.message.cancel_many([d1]) == 1  # Python: JSON body
    assert client.message.cancel_many([d1]) == 0  # already gone
    assert client.message.cancel_many([]) == 0  # an empty list cancels nothing
    by_ids, by_filter = js.seq(
        [
            step("messages.cancel", messageIds=[d2, "msg_unknown"]),  # JS: ?messageIds=
            step("messages.cancel", filter={"label": "drop"}),  # JS: ?label=drop&count=100
        ]
    )
    assert by_ids == {"cancelled": 1}
    assert by_filter == {"cancelled": 1}

    [kept] = sink.wait_count(f"{base}-keep", 1, timeout=WAIT)
    assert kept.message_id == keep
    assert kept.signature_ok, kept.signature_error
    wait_gone(client, keep)
    assert client.message.cancel_all() == 1  # Python: no query, no body → d4 only
    assert js.run("messages.cancel", all=True) == {"cancelled": 0}  # JS: ?count=100

    for mid in (d1, d2, d3, d4):
        with pytest.raises(QStashError, match="404"):
            client.message.get(mid)
    logs = wait_logs(
        client,
        lambda got: {x.message_id for x in got} >= {d1, d2, d3, d4},
        filter={"state": LogState.CANCELED},
    )
    assert keep not in {x.message_id for x in logs}
    time.sleep(max(0.0, t0 + 10 - time.time()))  # past the cancelled messages' due time
    assert [r.path for r in sink.received(base)] == [f"{base}-keep"]


def test_keys_rotate_and_users_are_isolated(
    client: QStash, stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    from kafstash.schemas.users import DEV_USERS  # noqa: PLC0415

    other_user = DEV_USERS[1]
    other = QStash(other_user.token, base_url=stack.base_url)
    js_a = JsSdk(stack.base_url, stack.token)
    js_b = JsSdk(stack.base_url, other_user.token)
    base = route("ok")
    try:
        mine = client.message.publish(url=sink.url(base + "-a"), body="a", delay="30s").message_id
        theirs = other.message.publish(url=sink.url(base + "-b"), body="b").message_id
        [got_b] = sink.wait_count(base + "-b", 1, timeout=WAIT)
        # Signed with user B's own keys (the sink holds user A's).
        Receiver(
            current_signing_key=other_user.current_signing_key,
            next_signing_key=other_user.next_signing_key,
        ).verify(signature=got_b.headers["Upstash-Signature"], body="b", url=sink.url(base + "-b"))
        assert not got_b.signature_ok

        # B cannot see or touch A's message, its events, or A's keys.
        with pytest.raises(QStashError, match="404"):
            other.message.get(mine)
        with pytest.raises(QStashError, match="404"):
            other.message.cancel(mine)
        assert other.message.cancel_many([mine]) == 0
        assert all_logs(other, filter={"message_id": mine}) == []
        wait_logs(other, lambda got: LogState.DELIVERED in states(got, theirs))
        wait_gone(other, theirs)
        assert other.message.cancel_all() == 0  # B has nothing pending; A's message stays
        assert {x.message_id for x in all_logs(other)} == {theirs}
        b_get, b_cancel, b_events = js_b.seq_envelopes(
            [
                step("messages.get", messageId=mine),
                step("messages.cancel", messageIds=[mine]),
                step("logs", filter={"messageId": mine}),
            ]
        )
        assert b_get.get("status") == 404, b_get
        assert b_cancel == {"ok": True, "result": {"cancelled": 0}}
        assert b_events["ok"], b_events
        assert b_events["result"]["logs"] == []
        assert client.message.get(mine).message_id == mine  # still pending for A
        assert {x.message_id for x in all_logs(client)} == {mine}

        # Keys: rotation is per user; next becomes current; JS reads the same.
        before = client.signing_key.get()
        assert (before.current, before.next) == (
            stack.user.current_signing_key,
            stack.user.next_signing_key,
        )
        rotated = client.signing_key.rotate()
        assert rotated.current == before.next
        assert rotated.next.startswith("sig_")
        assert len(rotated.next) == 32
        assert rotated.next not in (before.current, before.next)
        after = client.signing_key.get()
        assert (after.current, after.next) == (rotated.current, rotated.next)
        assert js_a.run("keys.get") == {"current": rotated.current, "next": rotated.next}
        b_keys = other.signing_key.get()
        assert (b_keys.current, b_keys.next) == (
            other_user.current_signing_key,
            other_user.next_signing_key,
        )
        # A's next deliveries are signed with the new current key.
        time.sleep(1)  # the senders follow the keys topic
        client.message.publish(url=sink.url(base + "-rot"), body="rot")
        [got] = sink.wait_count(base + "-rot", 1, timeout=WAIT)
        assert got.signature_ok  # the receiver's pre-rotation next key is the new current
        new_only = Receiver(current_signing_key=rotated.current, next_signing_key=rotated.current)
        new_only.verify(
            signature=got.headers["Upstash-Signature"], body="rot", url=sink.url(base + "-rot")
        )
        client.message.cancel(mine)
    finally:
        other.http._client.close()
