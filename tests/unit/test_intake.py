"""route(): which requests the intake accepts itself, and which need the tables' agent."""

import pytest

from kafstash.schemas import codec
from kafstash.schemas.commands import ExpireDedup, PublishRequest
from kafstash.schemas.message import Message
from kafstash.schemas.waiters import NotifyEvent
from kafstash.schemas.workflow_tag import WorkflowTag
from kafstash.streams.dedup import accept
from kafstash.streams.effects import Step
from kafstash.streams.intake import FORWARD, Unreadable, route

NOW = 1_700_000_000_000
WINDOW = 600_000


def _message(**fields: object) -> Message:
    base: dict[str, object] = {
        "message_id": "msg_1",
        "user_id": "defaultUser",
        "url": "https://example.com/hook",
        "created_at": NOW - 5,
        "not_before": NOW,
        "body": b"hi",
        "header": {},
        "max_retries": 3,
    }
    return Message(**{**base, **fields})  # type: ignore[arg-type]


def _routed(cmd: object) -> object:
    return route(codec.encode(cmd), now_ms=NOW, window_ms=WINDOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "reply", "topics"),
    [
        ({}, False, ["events", "messages", "deliveries"]),
        ({}, True, ["events", "messages", "deliveries", "decisions"]),
        ({"not_before": NOW + 60_000}, False, ["events", "messages", "timers"]),
        ({"queue_name": "q1"}, False, ["events", "messages", "gates"]),
    ],
    ids=["due-now", "reply", "delayed", "queued"],
)
def test_a_publish_without_dedup_id_or_run_is_accepted_as_the_tables_agent_would(
    fields: dict[str, object], reply: bool, topics: list[str]
) -> None:
    req = PublishRequest(request_id="req_1", message=_message(**fields), reply=reply)
    got = _routed(req)
    assert isinstance(got, Step)
    # The very decision the tables' agent takes for a request with no row to read.
    assert got == accept(req, None, now_ms=NOW, window_ms=WINDOW)
    assert [e.topic for e in got.emits] == topics
    assert got.put is None
    assert not got.put_after_acks
    assert not got.then


@pytest.mark.parametrize(
    "cmd",
    [
        PublishRequest(request_id="r", message=_message(), dedup_key="defaultUser:id:k"),
        PublishRequest(
            request_id="r",
            message=_message(workflow=WorkflowTag(run_id="wfr_1", call_type="step")),
        ),
        ExpireDedup(key="defaultUser:id:k", expires_at=NOW),
        NotifyEvent(request_id="r", user_id="u", event_id="e", data=b"", at=NOW),
    ],
    ids=["dedup-id", "workflow-run", "expire-dedup", "notify"],
)
def test_requests_that_read_a_table_are_forwarded(cmd: object) -> None:
    assert _routed(cmd) is FORWARD


def test_an_unreadable_record_is_reported_not_raised() -> None:
    got = route(b'{"type":"publish.v1","requestId":1}', now_ms=NOW, window_ms=WINDOW)
    assert isinstance(got, Unreadable)
    assert "requestId" in got.reason or "str" in got.reason
    assert isinstance(route(b"\xff", now_ms=NOW, window_ms=WINDOW), Unreadable)
