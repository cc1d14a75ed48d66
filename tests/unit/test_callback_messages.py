"""What the sender appends after an attempt for callbacks and the DLQ (qstash-api.md §6, §8.2):
the callback body, the callback message, the DLQ entry, and their idempotence under replay."""

import base64
import json

from kafstash.schemas import codec, defaults
from kafstash.schemas.commands import DeliveryDue, PublishRequest
from kafstash.schemas.dlq import DlqEntry, dlq_id
from kafstash.schemas.message import CallbackOptions, Message
from kafstash.sinks.http.callbacks import callback_body, callback_request
from kafstash.sinks.http.outcome import DeadLetter, Delivered, Outcome, RetryAt
from kafstash.sinks.http.report import RESPONSE_BODY_LIMIT, Record, after_attempt, header_lists

NOW = 1_700_000_000_000


def _msg(**kw: object) -> Message:
    base: dict[str, object] = {
        "message_id": "msg_src",
        "user_id": "u1",
        "url": "https://dest.example/hook",
        "created_at": NOW - 5000,
        "not_before": NOW - 4000,
        "header": {"Content-Type": ["application/json"], "Authorization": ["Bearer s"]},
        "body": b'{"a":1}',
        "max_retries": 2,
        "callback": "https://cb.example/hook",
        "failure_callback": "https://fcb.example/hook",
        "topic_name": "grp",
        "endpoint_name": "ea",
        "caller_ip": "203.0.113.7",
    }
    base.update(kw)
    return Message(**base)  # type: ignore[arg-type]


def _after(
    due: DeliveryDue, outcome: Outcome, *, now_ms: int = NOW, status: int | None = 500
) -> list[Record]:
    return after_attempt(
        due,
        outcome,
        status=status,
        response_body=b"\xffbinary" if status else None,
        error=None if status else "timeout after 1s",
        duration_ms=3,
        started_ms=now_ms - 3,
        now_ms=now_ms,
        response_headers={"X-Resp": ["1", "2"]},
    )


def _of(records: list[Record], role: str) -> list[object]:
    return [r for t, _, r in records if t == role]


def test_callback_body_has_every_field_with_standard_base64() -> None:
    due = DeliveryDue(message=_msg(), retried=1, due=NOW)
    body = json.loads(
        callback_body(
            due,
            status=500,
            response_headers={"X-Resp": ["1"]},
            response_body=b"\xfb\xff?",  # standard base64 has + and /, urlsafe would not
            error=None,
            dlq_id="1-2",
        )
    )
    assert body == {
        "status": 500,
        "header": {"X-Resp": ["1"]},
        "body": base64.b64encode(b"\xfb\xff?").decode(),
        "retried": 1,
        "maxRetries": 2,
        "dlqId": "1-2",
        "sourceMessageId": "msg_src",
        "topicName": "grp",
        "endpointName": "ea",
        "url": "https://dest.example/hook",
        "method": "POST",
        "sourceHeader": {"Content-Type": ["application/json"], "Authorization": ["Bearer s"]},
        "sourceBody": base64.b64encode(b'{"a":1}').decode(),
        "notBefore": NOW - 4000,
        "createdAt": NOW - 5000,
        "callerIP": "203.0.113.7",
    }
    assert "/" in body["body"]


def test_callback_body_of_an_unanswered_attempt_and_of_a_redacted_source() -> None:
    m = _msg(redact=["body", "header[authorization]"], topic_name=None, endpoint_name=None)
    body = json.loads(
        callback_body(
            DeliveryDue(message=m, retried=0, due=NOW),
            status=None,
            response_headers={},
            response_body=None,
            error="timeout after 1s",
        )
    )
    assert (body["status"], body["body"], body["error"]) == (0, "", "timeout after 1s")
    assert "topicName" not in body
    assert "dlqId" not in body
    assert base64.b64decode(body["sourceBody"]).startswith(b"REDACTED:")
    assert body["sourceHeader"]["Authorization"][0].startswith("REDACTED:")


def test_callback_message_options_defaults_and_no_callback_of_its_own() -> None:
    src = _msg(max_retries=4)
    req = callback_request(
        src,
        kind="callback",
        retried=2,
        url="https://cb.example/hook",
        options=None,
        body=b"{}",
        now_ms=NOW,
    )
    m = req.message
    assert (m.url, m.user_id, m.method, m.max_retries) == (
        "https://cb.example/hook",
        "u1",
        "POST",
        4,
    )
    assert m.header == {"Content-Type": ["application/json"]}
    assert (m.callback, m.failure_callback, m.not_before) == (None, None, NOW)
    assert not req.reply
    opts = CallbackOptions(
        method="PUT",
        header={"X": ["1"]},
        retries=0,
        retry_delay_expression="10",
        timeout_ms=5000,
        delay_ms=2000,
    )
    m2 = callback_request(
        src, kind="callback", retried=2, url="https://cb/", options=opts, body=b"{}", now_ms=NOW
    ).message
    assert (m2.method, m2.max_retries, m2.retry_delay_expression) == ("PUT", 0, "10")
    assert (m2.timeout_ms, m2.not_before) == (5000, NOW + 2000)
    assert m2.header == {"Content-Type": ["application/json"], "X": ["1"]}


def test_every_attempt_gets_a_callback_and_only_the_last_a_dlq_entry() -> None:
    m = _msg()
    retry = _after(DeliveryDue(message=m, retried=0, due=NOW), RetryAt(at_ms=NOW + 100, reason="x"))
    [cb] = _of(retry, "requests")
    assert isinstance(cb, PublishRequest)
    assert cb.message.url == "https://cb.example/hook"
    assert _of(retry, "dlq") == []

    ok = _after(DeliveryDue(message=m, retried=1, due=NOW), Delivered(), status=200)
    [cb_ok] = _of(ok, "requests")
    assert isinstance(cb_ok, PublishRequest)
    assert json.loads(cb_ok.message.body)["status"] == 200
    assert cb_ok.message.message_id != cb.message.message_id

    final = _after(DeliveryDue(message=m, retried=2, due=NOW), DeadLetter(reason="exhausted"))
    cb_last, failure = _of(final, "requests")
    [entry] = _of(final, "dlq")
    assert isinstance(entry, DlqEntry)
    assert isinstance(failure, PublishRequest)
    assert isinstance(cb_last, PublishRequest)
    assert failure.message.url == "https://fcb.example/hook"
    assert json.loads(failure.message.body)["dlqId"] == entry.dlq_id
    assert "dlqId" not in json.loads(cb_last.message.body)
    assert entry.message == m  # the original, unredacted: a retry delivers it
    assert (entry.response_status, entry.response_body) == (500, b"\xffbinary")
    assert entry.response_header == {"X-Resp": ["1", "2"]}
    assert entry.dlq_id == dlq_id(message=m, retried=2)
    assert entry.dlq_id.startswith(f"{m.created_at}-")
    # The DLQ entry is keyed <user>/<dlq id> and round-trips through the codec.
    [key] = [k for t, k, _ in final if t == "dlq"]
    assert key == f"u1/{entry.dlq_id}"
    assert codec.decode(codec.encode(entry), DlqEntry) == entry


def test_a_replayed_attempt_makes_the_same_ids_and_keys() -> None:
    # A sender that crashed before committing repeats the attempt later (another clock).
    due = DeliveryDue(message=_msg(), retried=2, due=NOW)
    first = _after(due, DeadLetter(reason="x"), now_ms=NOW)
    again = _after(due, DeadLetter(reason="x"), now_ms=NOW + 60_000)

    def ids(records: list[Record]) -> list[tuple[str, str, str | None]]:
        out = []
        for role, key, rec in records:
            if role == "requests":
                assert isinstance(rec, PublishRequest)
                out.append((key, rec.message.message_id, rec.dedup_key))
            elif role == "dlq":
                out.append((key, "", None))
        return out

    assert ids(first) == ids(again)
    assert len(ids(first)) == 3  # callback, DLQ entry, failure callback
    # Dedup keys carry the user and are the requests' Kafka keys (they meet on one partition).
    for key, _, dedup in ids(first):
        assert dedup is None or (dedup == key and dedup.startswith("u1:"))
    # A different attempt of the same message is a different callback.
    other = _after(DeliveryDue(message=_msg(), retried=1, due=NOW), RetryAt(at_ms=1, reason="x"))
    assert ids(other)[0][1] != ids(first)[0][1]


def test_messages_without_callbacks_get_no_follow_ups_but_still_a_dlq_entry() -> None:
    m = _msg(callback=None, failure_callback=None)
    assert (
        _of(_after(DeliveryDue(message=m, retried=0, due=NOW), Delivered(), status=200), "requests")
        == []
    )
    final = _after(DeliveryDue(message=m, retried=0, due=NOW), DeadLetter(reason="x"), status=None)
    assert _of(final, "requests") == []
    [entry] = _of(final, "dlq")
    assert isinstance(entry, DlqEntry)
    assert (entry.response_status, entry.error) == (None, "timeout after 1s")


def test_header_lists_are_canonical_and_keep_repeats() -> None:
    got = header_lists([("content-type", "a"), ("set-cookie", "1"), ("Set-Cookie", "2")])
    assert got == {"Content-Type": ["a"], "Set-Cookie": ["1", "2"]}


def test_a_large_source_body_is_truncated_so_the_callback_record_fits_in_kafka() -> None:
    big = _msg(body=b"x" * defaults.MAX_BODY_BYTES)
    req = callback_request(
        big,
        kind="callback",
        retried=0,
        url="https://cb.example/hook",
        options=None,
        body=callback_body(
            DeliveryDue(message=big, retried=0, due=NOW),
            status=500,
            response_headers={},
            response_body=b"y" * RESPONSE_BODY_LIMIT,
            error=None,
        ),
        now_ms=NOW,
    )
    sent = json.loads(req.message.body)["sourceBody"]
    assert len(base64.b64decode(sent)) == defaults.CALLBACK_SOURCE_BODY_LIMIT
    assert len(codec.encode(req)) < defaults.MAX_TOPIC_MESSAGE_BYTES
