"""The API side of queues and flow control: names, record keys, cancel records, admin queries,
and the read-your-writes view that ignores records older than its own admin writes."""

from __future__ import annotations

import msgspec
import pytest
from starlette.requests import Request

from kafstash.producers.api.errors import ApiError
from kafstash.producers.api.flow_control import admin_command, expected_state, flow_control_json
from kafstash.producers.api.gates import (
    cancel_records,
    check_queue_name,
    open_gate_state_view,
    with_queue,
)
from kafstash.producers.api.queues import queue_json
from kafstash.schemas import codec
from kafstash.schemas.commands import Cancel, PublishRequest
from kafstash.schemas.gates import FlowControlAdmin, FlowControlState, QueueState, Withdraw
from kafstash.schemas.message import FlowControl, Message
from kafstash.schemas.routing import request_key
from kafstash.schemas.topics import Topics

T = Topics("t")


def message(**kw: object) -> Message:
    return Message(
        message_id="m1", user_id="u1", url="https://e.com/", created_at=0, not_before=0, **kw
    )  # type: ignore[arg-type]


def request(query: str) -> Request:
    return Request({"type": "http", "method": "POST", "query_string": query.encode()})


@pytest.mark.parametrize("name", ["q", "orders.v1", "A-b_c.9"])
def test_good_queue_names(name: str) -> None:
    assert check_queue_name(name) == name


@pytest.mark.parametrize("name", ["", "a b", "a/b", "bad!", "x" * 101])
def test_bad_queue_names(name: str) -> None:
    with pytest.raises(ApiError):
        check_queue_name(name)


def test_request_key_orders_a_queue_on_one_partition_unless_deduplicated() -> None:
    req = with_queue(PublishRequest(request_id="r", message=message()), "q")
    assert req.message.queue_name == "q"
    assert request_key(req) == "q/u1/q"
    assert request_key(PublishRequest(request_id="r", message=message(), dedup_key="d")) == "d"
    assert request_key(PublishRequest(request_id="r", message=message())) == "m1"


def test_cancel_records_withdraw_from_every_gate() -> None:
    m = message(queue_name="q", flow_control=FlowControl(key="k"))
    records = cancel_records(T, m, requested_at=5)
    assert [(t, k) for t, k, _ in records] == [
        ("t.timers", b"m1"),
        ("t.gates", b"q/u1/q"),
        ("t.gates", b"f/u1/k"),
    ]
    assert codec.decode(records[0][2], Cancel) == Cancel(
        message_id="m1", user_id="u1", requested_at=5
    )
    assert codec.decode(records[1][2], Withdraw) == Withdraw(message_id="m1")
    assert len(cancel_records(T, message(), requested_at=5)) == 1


def test_admin_queries() -> None:
    cmd = admin_command("pin", request("parallelism=3&period=120"), 7)
    assert (cmd.parallelism, cmd.rate, cmd.period, cmd.at) == (3, None, 120, 7)
    cmd = admin_command("unpin", request("rate=true"), 7)
    assert (cmd.unpin_parallelism, cmd.unpin_rate) == (False, True)
    for bad in ("parallelism=0", "rate=x", "period=9999999"):
        with pytest.raises(ApiError):
            admin_command("pin", request(bad), 7)
    with pytest.raises(ApiError):
        admin_command("unpin", request("rate=yes"), 7)


def test_expected_state_and_json_shapes() -> None:
    s = expected_state("k", None, FlowControlAdmin(action="pin", at=5000, parallelism=2))
    out = flow_control_json(s)
    assert out["flowControlKey"] == "k"
    assert (out["parallelismMax"], out["isPinnedParallelism"], out["isPinnedRate"]) == (
        2,
        True,
        False,
    )
    assert set(out) == {
        "flowControlKey",
        "waitListSize",
        "parallelismMax",
        "parallelismCount",
        "rateMax",
        "rateCount",
        "ratePeriod",
        "ratePeriodStart",
        "isPaused",
        "isPinnedParallelism",
        "isPinnedRate",
    }
    q = QueueState(name="q", parallelism=1, created_at=1, updated_at=2, lag=0, paused=False)
    assert set(queue_json(q)) == {"name", "parallelism", "createdAt", "updatedAt", "lag", "paused"}


def queue_state(*, paused: bool, admin_at: int) -> QueueState:
    return QueueState(
        name="q", parallelism=1, created_at=1, updated_at=1, lag=0, paused=paused, admin_at=admin_at
    )


def test_gate_state_view_ignores_records_older_than_our_admin_write() -> None:
    view = open_gate_state_view("127.0.0.1:1", "t.state")  # never started: records fed directly
    key = "queue/u1/q"

    def feed(state: QueueState) -> QueueState | FlowControlState | None:
        view.apply(key.encode(), msgspec.json.encode(state))
        return view.get(key)

    assert feed(queue_state(paused=False, admin_at=0)) == queue_state(paused=False, admin_at=0)
    ours = msgspec.structs.replace(queue_state(paused=True, admin_at=10), lag=7)
    view.put(key, ours)  # this instance paused the queue (and shows it already)
    assert feed(queue_state(paused=False, admin_at=0)) == ours  # in flight before our pause
    applied = queue_state(paused=True, admin_at=10)  # the worker applied our pause
    assert feed(applied) == applied
    later = queue_state(paused=False, admin_at=11)  # a later resume elsewhere
    assert feed(later) == later
    view.apply(b"schedule/u1/s", b"{}")  # other kinds on the topic
    assert view.get("schedule/u1/s") is None
