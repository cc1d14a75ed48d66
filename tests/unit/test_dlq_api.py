"""The DLQ read side (qstash-api.md §3.8, §8.2): filters, order, cursor paging, the JSON shape,
and what a retry republishes."""

import pytest

from kafstash.producers.api.dlq import dlq_json, republished
from kafstash.producers.api.dlq_query import DlqQuery, parse_query, select
from kafstash.producers.api.errors import ApiError
from kafstash.producers.api.publish import HeaderView, PublishLimits, build_request
from kafstash.schemas.dlq import DlqEntry
from kafstash.schemas.message import FlowControl, Message
from kafstash.schemas.users import DEV_USERS

NOW = 1_700_000_000_000


def _entry(i: int, **kw: object) -> DlqEntry:
    msg: dict[str, object] = {
        "message_id": f"msg_{i}",
        "user_id": "u",
        "url": f"https://h{i % 2}.example/p",
        "created_at": NOW,
        "not_before": NOW,
        "body": b"hello",
        "labels": ["even" if i % 2 == 0 else "odd"],
        "topic_name": "grp" if i < 2 else None,
        "caller_ip": "1.2.3.4",
    }
    msg.update(kw.pop("message", {}))  # type: ignore[call-overload]
    base: dict[str, object] = {
        "dlq_id": f"{NOW}-{i}",
        "message": Message(**msg),  # type: ignore[arg-type]
        "failed_at": NOW + i * 10,
        "retried": 3,
        "response_status": 500 if i != 3 else 404,
    }
    base.update(kw)
    return DlqEntry(**base)  # type: ignore[arg-type]


ENTRIES = [_entry(i) for i in range(6)]


def ids(q: DlqQuery, entries: list[DlqEntry] = ENTRIES) -> list[str]:
    return [e.message.message_id for e in select(entries, q)[0]]


def query(**params: str | list[str]) -> DlqQuery:
    pairs: list[tuple[str, str]] = []
    for k, v in params.items():
        pairs.extend((k, x) for x in ([v] if isinstance(v, str) else v))
    return parse_query(pairs)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, [0, 1, 2, 3, 4, 5]),
        ({"url": "https://h1.example/p"}, [1, 3, 5]),
        ({"topicName": "grp"}, [0, 1]),
        ({"label": "odd"}, [1, 3, 5]),
        ({"responseStatus": "404"}, [3]),
        ({"messageId": ["msg_1", "msg_4"]}, [1, 4]),  # repeated: OR
        ({"messageId": "msg_1,msg_4"}, [1, 4]),  # comma list: OR
        ({"label": "odd", "responseStatus": "500"}, [1, 5]),  # different filters: AND
        ({"fromDate": str(NOW + 20), "toDate": str(NOW + 40)}, [2, 3, 4]),  # inclusive
        ({"callerIp": "1.2.3.4", "queueName": "q"}, []),
        ({"callerIP": "1.2.3.4"}, [0, 1, 2, 3, 4, 5]),
        ({"dlqIds": [f"{NOW}-2", f"{NOW}-5"], "label": "even"}, [2, 5]),  # ids ignore filters
        ({"order": "latestFirst"}, [5, 4, 3, 2, 1, 0]),
    ],
)
def test_filters(params: dict[str, str | list[str]], expected: list[int]) -> None:
    assert ids(query(**params)) == [f"msg_{i}" for i in expected]


def test_flow_control_key_filter() -> None:
    keyed = _entry(9, message={"flow_control": FlowControl(key="k", parallelism=1)})
    assert ids(query(flowControlKey="k"), [*ENTRIES, keyed]) == ["msg_9"]


@pytest.mark.parametrize("order", ["earliestFirst", "latestFirst"])
def test_cursor_pages_cover_everything_once_and_the_last_page_has_no_cursor(order: str) -> None:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | list[str]] = {"count": "4", "order": order}
        if cursor:
            params["cursor"] = cursor
        page, cursor = select(ENTRIES, query(**params))
        seen += [e.dlq_id for e in page]
        pages += 1
        if cursor is None:
            break
    assert pages == 2
    assert sorted(seen) == sorted(e.dlq_id for e in ENTRIES)
    assert len(seen) == len(set(seen))


def test_count_defaults_to_and_is_capped_at_100() -> None:
    many = [_entry(i) for i in range(150)]
    page, cursor = select(many, query())
    assert (len(page), cursor is not None) == (100, True)
    assert len(select(many, query(count="500"))[0]) == 100


@pytest.mark.parametrize(
    "params",
    [
        {"count": "x"},
        {"count": "0"},
        {"order": "random"},
        {"cursor": "c1"},
        {"fromDate": "yesterday"},
    ],
)
def test_malformed_queries_are_400(params: dict[str, str]) -> None:
    with pytest.raises(ApiError) as info:
        query(**params)
    assert info.value.status == 400


def test_dlq_json_is_the_redacted_message_plus_the_answer() -> None:
    e = _entry(
        1,
        message={"redact": ["body"], "header": {"X": ["1"]}},
        response_header={"Content-Type": ["text/plain"]},
        response_body=b"404 Not Found",
    )
    out = dlq_json(e)
    assert out["dlqId"] == e.dlq_id
    assert out["messageId"] == "msg_1"
    assert out["body"].startswith("REDACTED:")
    assert out["responseStatus"] == 500
    assert out["responseHeader"] == {"Content-Type": ["text/plain"]}
    assert out["responseBody"] == "404 Not Found"
    assert out["topicName"] == "grp"
    for key in ("url", "method", "maxRetries", "notBefore", "createdAt"):
        assert key in out  # required by the Python SDK's parser

    binary = dlq_json(_entry(2, response_status=None, response_body=b"\xff\x00"))
    assert binary["responseStatus"] == 0
    assert binary["responseBodyBase64"] == "/wA="
    assert "responseBody" not in binary


def test_retry_republishes_a_new_message_with_the_original_values() -> None:
    original = _entry(1, message={"redact": ["body"], "dedup_id": "d", "max_retries": 5}).message
    fresh = republished(original, view=None, built=None, now_ms=NOW + 999)
    assert fresh.message_id != original.message_id
    assert (fresh.created_at, fresh.not_before, fresh.dedup_id) == (NOW + 999, NOW + 999, None)
    assert (fresh.body, fresh.max_retries, fresh.url) == (b"hello", 5, original.url)


def test_retry_headers_override_only_what_they_name() -> None:
    original = _entry(
        1,
        message={
            "header": {"A": ["1"], "B": ["2"], "Content-Type": ["application/json"]},
            "max_retries": 5,
            "method": "PUT",
        },
    ).message
    headers = [
        ("Upstash-Retries", "0"),
        ("Upstash-Forward-B", "new"),
        ("Upstash-Delay", "10s"),
        ("Content-Type", "application/x-www-form-urlencoded"),  # the retry request's own
    ]
    view = HeaderView(headers)
    built = build_request(
        user=DEV_USERS[0],
        url=original.url,
        view=view,
        body=original.body,
        now_ms=NOW,
        limits=PublishLimits(),
    ).message
    fresh = republished(original, view=view, built=built, now_ms=NOW)
    assert fresh.max_retries == 0
    assert fresh.method == "PUT"  # not overridden
    assert fresh.header == {"A": ["1"], "B": ["new"], "Content-Type": ["application/json"]}
    assert fresh.not_before == NOW + 10_000
