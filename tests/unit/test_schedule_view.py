"""producers/api/schedule_view.py: the §8.4 JSON shape (parsed by the Python SDK) and the
read-your-writes rules of the schedule view (no broker: records are fed to it directly)."""

from __future__ import annotations

import asyncio
import base64

import msgspec
from qstash.schedule import ScheduleState as SdkState
from qstash.schedule import parse_schedule_response

from kafstash.producers.api.schedule_view import ScheduleView, schedule_json
from kafstash.schemas import codec
from kafstash.schemas.message import FlowControl, Message
from kafstash.schemas.schedules import ScheduleSpec, ScheduleState

T0 = 1_767_225_600_000


def state(**spec_kw: object) -> ScheduleState:
    template_kw: dict[str, object] = {
        "message_id": "msg_t",
        "user_id": "alice",
        "url": "https://example.com/hook",
        "created_at": T0,
        "not_before": T0,
        "method": "PUT",
        "header": {"X-A": ["1"]},
        "body": b"hello",
        "max_retries": 2,
        "timeout_ms": 1500,
        "labels": ["a", "b"],
    }
    template_kw.update(spec_kw.pop("template", {}))  # type: ignore[call-overload]
    fields: dict[str, object] = {
        "schedule_id": "s1",
        "user_id": "alice",
        "cron": "*/5 * * * *",
        "destination": "https://example.com/hook",
        "created_at": T0,
        "updated_at": T0,
        "template": Message(**template_kw),  # type: ignore[arg-type]
        "targets": ["https://example.com/hook"],
    }
    fields.update(spec_kw)
    return ScheduleState(
        spec=ScheduleSpec(**fields),  # type: ignore[arg-type]
        next_schedule_time=T0 + 300_000,
        last_schedule_time=T0,
        last_message_ids=["msg_a"],
    )


def test_json_has_every_field_the_sdks_read() -> None:
    s = state(delay_ms=60_000, queue_name="q1", caller_ip="10.0.0.1", paused=True)
    out = schedule_json(s, lambda mid: "SUCCESS" if mid == "msg_a" else "FAIL")
    assert out == {
        "scheduleId": "s1",
        "destination": "https://example.com/hook",
        "cron": "*/5 * * * *",
        "createdAt": T0,
        "method": "PUT",
        "retries": 2,
        "isPaused": True,
        "header": {"X-A": ["1"]},
        "body": "hello",
        "queueName": "q1",
        "lastScheduleTime": T0,
        "nextScheduleTime": T0 + 300_000,
        "delay": 60,
        "timeout": 2,
        "callerIP": "10.0.0.1",
        "callerIp": "10.0.0.1",
        "label": "a",
        "labels": ["a", "b"],
        "lastScheduleStates": {"msg_a": "SUCCESS"},
    }
    parsed = parse_schedule_response(out)
    assert parsed.paused is True
    assert parsed.delay == 60
    assert parsed.caller_ip == "10.0.0.1"
    assert parsed.last_schedule_states == {"msg_a": SdkState.SUCCESS}


def test_json_optional_fields() -> None:
    fc = FlowControl(key="k", parallelism=2, rate=10, period=60)
    s = state(template={"body": b"\xff\x00", "flow_control": fc, "labels": []})
    out = schedule_json(msgspec.structs.replace(s, last_message_ids=[]), lambda _m: "FAIL")
    assert out["bodyBase64"] == base64.b64encode(b"\xff\x00").decode()
    assert "body" not in out
    assert (out["flowControlKey"], out["parallelism"], out["rate"], out["period"]) == (
        "k",
        2,
        10,
        60,
    )
    for absent in ("delay", "label", "lastScheduleStates", "callerIP", "queueName", "error"):
        assert absent not in out
    assert parse_schedule_response(out).flow_control is not None
    empty = schedule_json(state(template={"body": b""}), lambda _m: "IN_PROGRESS")
    assert "body" not in empty
    assert "bodyBase64" not in empty


def test_redacted_fields_are_not_shown() -> None:
    s = state(template={"redact": ["body"]})
    out = schedule_json(s, lambda _m: "SUCCESS")
    assert out["body"].startswith("REDACTED:")
    assert "hello" not in out["body"]


def test_view_keeps_its_own_writes_over_older_states() -> None:
    async def run() -> None:
        view = ScheduleView("127.0.0.1:1", "t.state")  # never started: records fed directly
        feed = view.apply
        key = b"schedule/alice/s1"
        feed(key, codec.encode(state()))
        got = view.get("alice", "s1")
        assert got is not None
        assert not got.spec.paused
        # This API pauses (updated_at T0+10); the worker's state of the older spec then arrives.
        paused = state(paused=True, updated_at=T0 + 10)
        view.put(paused)
        feed(key, codec.encode(state(updated_at=T0)))
        assert view.get("alice", "s1") == paused
        # The worker's state of the paused spec (after a tick) replaces it.
        ticked = msgspec.structs.replace(paused, last_schedule_time=T0 + 5)
        feed(key, codec.encode(ticked))
        assert view.get("alice", "s1") == ticked
        # Deleted here: a state still on its way does not bring it back; a newer spec does.
        view.drop("alice", "s1", T0 + 20)
        feed(key, codec.encode(ticked))
        assert view.get("alice", "s1") is None
        assert view.list("alice") == []
        feed(key, codec.encode(state(updated_at=T0 + 30)))
        assert [s.spec.schedule_id for s in view.list("alice")] == ["s1"]
        # Other users and other kinds of state are not schedules of alice.
        feed(b"schedule/bob/s2", codec.encode(state(user_id="bob", schedule_id="s2")))
        feed(b"queue/alice/q1", b'{"not":"a schedule"}')
        assert [s.spec.schedule_id for s in view.list("alice")] == ["s1"]
        assert view.get("bob", "s1") is None
        # Deleted and created again here: the first delete's tombstone does not hide the new one.
        view.drop("alice", "s1", T0 + 40)
        again = state(updated_at=T0 + 50, cron="0 4 * * *")
        view.put(again)
        feed(key, None)
        assert view.get("alice", "s1") == again
        feed(key, codec.encode(again))
        # Once the topic caught up, it is the truth again: a later delete (by any API) applies.
        feed(key, None)
        assert view.get("alice", "s1") is None
        await view.__aexit__(None, None, None)  # closes the (never started) consumer

    asyncio.run(run())
