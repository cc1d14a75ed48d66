"""Schedules through both official SDKs (Python ``qstash`` and the JS driver) on a real broker.

Crons use kafstash's seconds extension (``*/2 * * * * *``: every two seconds) so ticks are seen
in seconds; every firing is delivered to the sink and its signature verified there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from qstash import QStash
from qstash.errors import QStashError

from kafstash.schemas.schedules import tick_message_id
from kafstash.schemas.users import DEV_USERS
from tests.jssdk import JsSdk
from tests.sink import Receipt, Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker

EVERY_2S = "*/2 * * * * *"
WAIT = 60


@pytest.fixture
def client(stack: Stack) -> Iterator[QStash]:
    c = QStash(stack.token, base_url=stack.base_url)
    yield c
    c.http._client.close()  # the SDK has no public close()


def step(op: str, **args: object) -> dict[str, object]:
    return {"op": op, "args": args}


def distinct_ids(receipts: list[Receipt]) -> set[str]:
    return {r.message_id for r in receipts}


def assert_fired_by(receipts: list[Receipt], schedule_id: str, method: str, body: bytes) -> None:
    assert receipts
    for r in receipts:
        assert r.headers["Upstash-Schedule-Id"] == schedule_id
        assert r.method == method
        assert r.body == body
        assert r.signature_ok, r.signature_error
    # One message per tick: every delivery is a different message (the sink answers 200).
    assert len(distinct_ids(receipts)) == len(receipts)


def test_python_sdk_schedule_lifecycle(
    client: QStash, stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    path = route("ok")
    sid = client.schedule.create(
        destination=sink.url(path),
        cron=EVERY_2S,
        body="tick",
        method="PUT",
        headers={"X-Sched": "1"},
        retries=2,
        label="nightly",
    )
    assert sid.startswith("scd_")
    got = client.schedule.get(sid)
    assert (got.schedule_id, got.destination, got.cron) == (sid, sink.url(path), EVERY_2S)
    assert (got.method, got.retries, got.body, got.paused) == ("PUT", 2, "tick", False)
    assert got.headers == {"X-Sched": ["1"]}
    assert got.label == "nightly"
    assert got.next_schedule_time is not None
    assert got.next_schedule_time % 2000 == 0
    assert got.caller_ip == "127.0.0.1"

    first = sink.wait_count(path, 2, timeout=WAIT)
    assert_fired_by(first, sid, "PUT", b"tick")
    assert first[0].headers["X-Sched"] == "1"
    # Message ids are derived from the tick: the first two deliveries are two consecutive ticks.
    ticks = range(got.next_schedule_time, got.next_schedule_time + 120_000, 2000)
    tick_of = {tick_message_id(stack.user.user_id, sid, t, 0, sink.url(path)): t for t in ticks}
    first_ticks = sorted(tick_of[r.message_id] for r in first[:2])
    assert first_ticks[1] - first_ticks[0] == 2000
    fired = client.schedule.get(sid)
    assert fired.last_schedule_time is not None
    # The last firing published one message (one target); it is (or will be) at the sink.
    assert fired.last_schedule_states is not None
    [(last_id, last_state)] = fired.last_schedule_states.items()
    assert last_state.value in ("IN_PROGRESS", "SUCCESS")
    sink.wait_for(path, lambda got: last_id in distinct_ids(got), timeout=WAIT)

    # Pause: firings stop (one already published may still arrive), and pausing twice is fine.
    client.schedule.pause(sid)
    client.schedule.pause(sid)
    assert client.schedule.get(sid).paused is True
    time.sleep(3)  # a firing published just before the pause may still be on its way
    paused_at = len(sink.received(path))
    time.sleep(5)
    assert len(sink.received(path)) == paused_at
    client.schedule.resume(sid)
    client.schedule.resume(sid)
    assert client.schedule.get(sid).paused is False
    sink.wait_count(path, paused_at + 2, timeout=WAIT)

    # A custom id; posting it again overwrites every setting (body absent, new destination).
    other = "/ok/other-" + path.removeprefix("/ok/")  # not under ``path`` (prefix match)
    assert (
        client.schedule.create(
            destination=sink.url(path), cron="0 4 * * *", body="x", schedule_id="my-sched.1"
        )
        == "my-sched.1"
    )
    client.schedule.create(destination=sink.url(other), cron=EVERY_2S, schedule_id="my-sched.1")
    listed = {s.schedule_id: s for s in client.schedule.list()}
    assert set(listed) == {sid, "my-sched.1"}
    assert listed["my-sched.1"].destination == sink.url(other)
    assert listed["my-sched.1"].body is None
    assert listed["my-sched.1"].cron == EVERY_2S
    assert_fired_by(sink.wait_count(other, 1, timeout=WAIT), "my-sched.1", "POST", b"")

    # Delete: gone from get/list, and no more firings after what was already published.
    client.schedule.delete(sid)
    client.schedule.delete("my-sched.1")
    with pytest.raises(QStashError, match="schedule not found"):
        client.schedule.get(sid)
    assert client.schedule.list() == []
    time.sleep(3)
    after_delete = len(sink.received(path)), len(sink.received(other))
    time.sleep(4)
    assert (len(sink.received(path)), len(sink.received(other))) == after_delete
    assert_fired_by(sink.received(path), sid, "PUT", b"tick")


def test_bad_schedule_input_is_rejected(stack: Stack, sink: Sink) -> None:
    auth = {"Authorization": f"Bearer {stack.token}"}
    base = f"{stack.base_url}/v2/schedules"
    dest = sink.url("/ok/never")

    def post(cron: str | None, **extra: str) -> httpx.Response:
        headers = {**auth, **extra}
        if cron is not None:
            headers["Upstash-Cron"] = cron
        return httpx.post(f"{base}/{dest}", headers=headers, content=b"b")

    for bad in ("61 * * * *", "* * *", "@daily", "CRON_TZ=Mars/Base 0 4 * * *", ""):
        r = post(bad)
        assert r.status_code == 400, (bad, r.text)
        assert "cron" in r.json()["error"]
    assert post(None).status_code == 400
    r = post(EVERY_2S, **{"Upstash-Schedule-Id": "bad id!"})
    assert r.status_code == 400
    assert "schedule id" in r.json()["error"]
    r = post(EVERY_2S, **{"Upstash-Queue-Name": "bad/queue"})
    assert r.status_code == 400
    no_url = httpx.post(f"{base}/not-a-url", headers={**auth, "Upstash-Cron": EVERY_2S})
    assert no_url.status_code == 404  # an unknown URL group
    r = httpx.post(f"{base}/{dest}", headers={"Upstash-Cron": EVERY_2S})
    assert r.status_code == 401

    # A CRON_TZ schedule is accepted and its next time is in that zone.
    r = post("CRON_TZ=America/New_York 0 4 * * *", **{"Upstash-Schedule-Id": "ny"})
    assert r.status_code in (200, 201)
    assert r.json() == {"scheduleId": "ny"}
    got = httpx.get(f"{base}/ny", headers=auth).json()
    assert got["cron"] == "CRON_TZ=America/New_York 0 4 * * *"
    hour_utc = time.gmtime(got["nextScheduleTime"] / 1000).tm_hour
    assert hour_utc in (8, 9)  # 04:00 in New York is 08:00 or 09:00 UTC

    for method, suffix in (
        ("GET", "/nope"),
        ("DELETE", "/nope"),
        ("PATCH", "/nope/pause"),
        ("POST", "/nope/resume"),
    ):
        r = httpx.request(method, f"{base}{suffix}", headers=auth)
        assert r.status_code == 404
        assert r.json() == {"error": "schedule not found"}

    # Another user sees nothing of it and cannot touch it.
    other = {"Authorization": f"Bearer {DEV_USERS[1].token}"}
    assert httpx.get(base, headers=other).json() == []
    for method, suffix in (("GET", "/ny"), ("DELETE", "/ny"), ("PATCH", "/ny/pause")):
        assert httpx.request(method, f"{base}{suffix}", headers=other).status_code == 404
    # POST pause/resume (OAS) work like PATCH (SDKs).
    assert httpx.post(f"{base}/ny/pause", headers=auth).status_code == 200
    assert httpx.get(f"{base}/ny", headers=auth).json()["isPaused"] is True
    assert [s["scheduleId"] for s in httpx.get(base, headers=auth).json()] == ["ny"]


@pytest.mark.js
def test_js_sdk_schedule_lifecycle(stack: Stack, sink: Sink, route: Callable[[str], str]) -> None:
    js = JsSdk(stack.base_url, stack.token)
    path = route("ok")
    # Node starts once per driver call: related calls go in one ``seq``.
    created, got = js.seq(
        [
            step(
                "schedules.create",
                destination=sink.url(path),
                cron=EVERY_2S,
                body='{"n":1}',
                method="PATCH",
                scheduleId="js-sched",
                headers={"X-Js": "yes"},
                delay=1,
            ),
            step("schedules.get", argv=["js-sched"]),
        ]
    )
    assert created == {"scheduleId": "js-sched"}
    assert got["scheduleId"] == "js-sched"
    assert got["cron"] == EVERY_2S
    assert got["method"] == "PATCH"
    assert got["delay"] == 1
    assert got["isPaused"] is False
    # JS adds Content-Type: application/json when none was given; it is stored and forwarded.
    assert got["header"]["Content-Type"] == ["application/json"]
    assert got["callerIp"] == got["callerIP"] == "127.0.0.1"
    receipts = sink.wait_count(path, 2, timeout=WAIT)
    assert_fired_by(receipts, "js-sched", "PATCH", b'{"n":1}')
    assert receipts[0].headers["X-Js"] == "yes"

    listed, _, paused = js.seq(
        [
            step("schedules.list"),
            step("schedules.pause", schedule="js-sched"),
            step("schedules.get", argv=["js-sched"]),
        ]
    )
    assert [s["scheduleId"] for s in listed] == ["js-sched"]
    assert listed[0]["lastScheduleTime"] <= listed[0]["nextScheduleTime"]
    assert set(listed[0]["lastScheduleStates"].values()) <= {"IN_PROGRESS", "SUCCESS"}
    assert paused["isPaused"] is True
    time.sleep(3.5)  # one tick published before the pause (delay 1 s) may still arrive
    paused_at = len(sink.received(path))
    time.sleep(4)
    assert len(sink.received(path)) == paused_at
    _, resumed = js.seq(
        [step("schedules.resume", schedule="js-sched"), step("schedules.get", argv=["js-sched"])]
    )
    assert resumed["isPaused"] is False
    sink.wait_count(path, paused_at + 1, timeout=WAIT)

    deleted, gone, bad, empty = js.seq_envelopes(
        [
            step("schedules.delete", argv=["js-sched"]),
            step("schedules.get", argv=["js-sched"]),
            step("schedules.create", destination=sink.url(path), cron="not a cron"),
            step("schedules.list"),
        ]
    )
    assert deleted["ok"]
    assert (gone["ok"], gone.get("status")) == (False, 404)
    assert (bad["ok"], bad.get("status")) == (False, 400)
    assert empty == {"ok": True, "result": []}
