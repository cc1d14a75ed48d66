"""Bulk cancel input dialects, redaction of everything stored for reading, signing-key rotation."""

from __future__ import annotations

import pytest
from starlette.datastructures import QueryParams

from kafstash.producers.api.cancel import parse_selection, select
from kafstash.producers.api.errors import ApiError
from kafstash.producers.api.publish import HeaderView, PublishLimits, build_request
from kafstash.schemas import codec
from kafstash.schemas.commands import DeliveryDue, PublishRequest
from kafstash.schemas.events import MessageEvent
from kafstash.schemas.keys import SigningKeys, configured, rotate
from kafstash.schemas.message import FlowControl, Message
from kafstash.schemas.users import DEV_USERS
from kafstash.sinks.http.keys import SigningKeyBook, keys_view
from kafstash.sinks.iceberg.rows import to_row
from kafstash.streams.dedup import accept

NOW = 1_700_000_000_000
USER = DEV_USERS[0]
SECRET = "planted-s3cret-value"


def _msg(mid: str, **kw: object) -> Message:
    base: dict[str, object] = {
        "message_id": mid,
        "user_id": USER.user_id,
        "url": "https://a.example/hook",
        "created_at": NOW,
        "not_before": NOW,
    }
    base.update(kw)
    return Message(**base)  # type: ignore[arg-type]


PENDING = [
    _msg("msg_a", labels=["red"], queue_name="q1"),
    _msg("msg_b", labels=["blue"], url="https://b.example/x", created_at=NOW + 10),
    _msg("msg_c", flow_control=FlowControl(key="fk"), caller_ip="198.51.100.1"),
]


def _chosen(query: str, body: bytes = b"") -> list[str]:
    return [m.message_id for m in select(parse_selection(QueryParams(query), body), PENDING)]


# -- bulk cancel -----------------------------------------------------------------------------


def test_js_message_ids_in_the_query_win_over_filters() -> None:
    # oldest first (created_at, then id), whatever order the ids came in
    assert _chosen("messageIds=msg_c&messageIds=msg_a&label=blue") == ["msg_a", "msg_c"]
    assert _chosen("messageIds=msg_a,msg_unknown") == ["msg_a"]


def test_python_json_body_names_the_ids_and_an_empty_list_cancels_nothing() -> None:
    assert _chosen("", b'{"messageIds": ["msg_b"]}') == ["msg_b"]
    assert _chosen("", b'{"messageIds": []}') == []


@pytest.mark.parametrize("body", [b"[1,2]", b'{"ids": ["x"]}', b"not json", b'{"messageIds": 3}'])
def test_a_body_that_is_not_message_ids_is_400_not_cancel_all(body: bytes) -> None:
    with pytest.raises(ApiError) as err:
        parse_selection(QueryParams(""), body)
    assert err.value.status == 400


def test_no_query_and_no_body_is_everything_and_count_bounds_it_oldest_first() -> None:
    everything = ["msg_a", "msg_c", "msg_b"]  # msg_b is 10 ms younger
    assert _chosen("") == everything  # Python cancel_all
    assert _chosen("count=100") == everything  # JS cancel({all: true})
    assert _chosen("count=1") == ["msg_a"]  # JS cancel({all: true, count: 1})
    assert _chosen("count=2") == ["msg_a", "msg_c"]
    assert _chosen("label=red,blue&count=1") == ["msg_a"]
    assert _chosen("messageIds=msg_b,msg_c&count=1") == ["msg_c"]
    assert _chosen("count=1", b'{"messageIds": ["msg_b", "msg_a"]}') == ["msg_a"]


def test_query_filters_or_within_and_across() -> None:
    assert _chosen("label=red,blue&count=100") == ["msg_a", "msg_b"]
    assert _chosen("label=red&label=blue&host=b.example") == ["msg_b"]
    assert _chosen("queueName=q1") == ["msg_a"]
    assert _chosen("flowControlKey=fk") == ["msg_c"]
    assert _chosen("callerIP=198.51.100.1") == ["msg_c"]
    assert _chosen("callerIp=198.51.100.1") == ["msg_c"]
    assert _chosen("path=/x") == ["msg_b"]
    assert _chosen("url=https://a.example/hook") == ["msg_a", "msg_c"]
    assert _chosen(f"fromDate={NOW + 1}") == ["msg_b"]
    assert _chosen(f"toDate={NOW}") == ["msg_a", "msg_c"]
    assert _chosen("topicName=nope") == []
    assert _chosen("scheduleId=scd_x") == []


# -- redaction -------------------------------------------------------------------------------


def _redacted_publish() -> PublishRequest:
    return build_request(
        user=USER,
        url="https://a.example/hook",
        view=HeaderView(
            [
                ("Upstash-Redact-Fields", "body, header[Authorization]"),
                ("Upstash-Forward-Authorization", f"Bearer {SECRET}"),
                ("Upstash-Forward-X-Plain", "visible"),
            ]
        ),
        body=f"body with {SECRET}".encode(),
        now_ms=NOW,
        limits=PublishLimits(),
    )


def test_redact_header_is_parsed_and_a_bad_value_is_400() -> None:
    assert _redacted_publish().message.redact == ["body", "header[authorization]"]
    with pytest.raises(ApiError) as err:
        build_request(
            user=USER,
            url="https://a.example/",
            view=HeaderView([("Upstash-Redact-Fields", "url")]),
            body=b"",
            now_ms=NOW,
            limits=PublishLimits(),
        )
    assert err.value.status == 400


def test_only_the_delivery_carries_the_originals() -> None:
    step = accept(_redacted_publish(), None, now_ms=NOW, window_ms=60_000)
    by_topic = {e.topic: e.value for e in step.emits}
    created, stored, due = by_topic["events"], by_topic["messages"], by_topic["deliveries"]
    assert isinstance(created, MessageEvent)
    assert isinstance(stored, Message)
    assert isinstance(due, DeliveryDue)
    for readable in (created, stored):
        assert SECRET.encode() not in codec.encode(readable)  # type: ignore[arg-type]
    assert stored.header["X-Plain"] == ["visible"]
    assert due.message.body == f"body with {SECRET}".encode()
    assert due.message.header["Authorization"] == [f"Bearer {SECRET}"]
    row = to_row(created, topic="t.events", partition=0, offset=0)
    assert SECRET not in repr(row)


# -- signing keys ----------------------------------------------------------------------------


def test_rotation_makes_next_current_and_a_fresh_next() -> None:
    before = configured(USER)
    after = rotate(before, now_ms=NOW)
    assert after.current == USER.next_signing_key
    assert after.next not in (USER.current_signing_key, USER.next_signing_key)
    assert after.next.startswith("sig_")
    assert len(after.next) == 32
    assert after.rotated_at == NOW
    assert rotate(after, now_ms=NOW + 1).current == after.next


def test_sender_key_book_follows_the_topic_per_user() -> None:
    other = DEV_USERS[1]
    view = keys_view("127.0.0.1:1", "t.keys")  # never started: records fed directly
    book = SigningKeyBook(DEV_USERS, view)
    assert book.current(USER.user_id) == USER.current_signing_key
    rotated = SigningKeys(user_id=USER.user_id, current="sig_new", next="sig_newer")
    view.apply(USER.user_id.encode(), codec.encode(rotated))
    assert book.current(USER.user_id) == "sig_new"
    assert book.current(other.user_id) == other.current_signing_key
    view.apply(USER.user_id.encode(), None)  # a tombstone: back to the configured keys
    assert book.current(USER.user_id) == USER.current_signing_key
    assert book.current("stranger") is None
