"""The one field check of every filtering endpoint (producers/api/filter_fields.py, issue 14):
a typo is 400 before anything changes, and nothing the official SDKs send is refused."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from starlette.datastructures import QueryParams

from kafstash.producers.api import filter_fields as ff
from kafstash.producers.api.cancel import parse_selection
from kafstash.producers.api.dlq_query import parse_query as dlq_query
from kafstash.producers.api.errors import ApiError
from kafstash.producers.api.events import parse_query as events_query


def _pairs(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)


def _refused(spec: ff.FieldSpec, query: str) -> str:
    with pytest.raises(ApiError) as err:
        ff.checked(spec, _pairs(query))
    assert err.value.status == 400
    return str(err.value)


# What the SDKs put on the wire (sdk-wire/{py,js}_requests.jsonl, qstash-api.md §3), endpoint by
# endpoint, plus the other fields their filter types can send.
SDK_QUERIES: list[tuple[ff.FieldSpec, str]] = [
    # DELETE /v2/messages: JS cancel([ids]) / cancel({filter}) / cancel({all}); Python: no query
    (ff.CANCEL_MESSAGES, "messageIds=m1&messageIds=m2"),
    (ff.CANCEL_MESSAGES, "count=100"),
    (ff.CANCEL_MESSAGES, "label=L&fromDate=1000&topicName=g1&topicName=g2&count=100"),
    (
        ff.CANCEL_MESSAGES,
        "url=https%3A%2F%2Fa&host=a.com&path=%2Fp&queueName=q&scheduleId=s&callerIp=1.2.3.4"
        "&flowControlKey=k&toDate=2000&count=1",
    ),
    (ff.CANCEL_MESSAGES, ""),
    # GET /v2/dlq: Python list, JS listMessages (filter or dlqIds)
    (ff.DLQ, "cursor=c1&count=10&topicName=grp&fromDate=1&responseStatus=500&label=L"),
    (ff.DLQ, "count=10&responseStatus=500&fromDate=1&label=L&topicName=grp&cursor=c1"),
    (ff.DLQ, "dlqIds=d1&dlqIds=d2"),
    (
        ff.DLQ,
        "messageId=m&url=u&queueName=q&scheduleId=s&toDate=2&callerIp=1.2.3.4&flowControlKey=k"
        "&order=latestFirst",
    ),
    # DELETE /v2/dlq and POST /v2/dlq/retry: JS bulk actions
    (ff.DLQ, "dlqIds=d1&dlqIds=d2"),
    (ff.DLQ, "count=100"),
    (ff.DLQ, "url=https%3A%2F%2Fa&count=5&cursor=cc"),
    # GET /v2/events: Python log.list, JS logs
    (ff.EVENTS, "cursor=c&count=5&messageIds=m1&messageIds=m2&state=DELIVERED&topicName=g"),
    (ff.EVENTS, "count=5&state=DELIVERED&host=example.com&topicName=g&cursor=c"),
    (ff.EVENTS, "messageIds=m1&messageIds=m2"),
    (
        ff.EVENTS,
        "messageId=m&url=u&queueName=q&scheduleId=s&fromDate=1&toDate=2&label=a&label=b"
        "&path=%2Fp&callerIp=1.2.3.4&flowControlKey=k&order=earliestFirst",
    ),
    # flow control: Python and JS pin / unpin
    (ff.FLOW_CONTROL_PIN, "parallelism=3&period=120"),
    (ff.FLOW_CONTROL_UNPIN, "rate=true"),
    (ff.FLOW_CONTROL_UNPIN, "parallelism=true&rate=true"),
]


@pytest.mark.parametrize(("spec", "query"), SDK_QUERIES)
def test_every_query_the_sdks_send_passes(spec: ff.FieldSpec, query: str) -> None:
    ff.checked(spec, _pairs(query))
    ff.checked(spec, _pairs(query + "&qstash_token=t" if query else "qstash_token=t"))


@pytest.mark.parametrize(
    ("spec", "query", "field"),
    [
        (ff.CANCEL_MESSAGES, "labeel=some-value&count=100", "labeel"),
        (ff.CANCEL_MESSAGES, "messageId=m1", "messageId"),  # bulk cancel takes messageIds only
        (ff.CANCEL_MESSAGES, "state=DELIVERED", "state"),
        (ff.CANCEL_MESSAGES, "cursor=c", "cursor"),  # a cancel does not page
        (ff.DLQ, "labeel=some-value&count=100", "labeel"),
        (ff.DLQ, "host=a.com", "host"),  # QStash's DLQ refuses host/path
        (ff.DLQ, "urlGroup=g", "urlGroup"),  # the SDK-side name; the wire name is topicName
        (ff.EVENTS, "stat=DELIVERED", "stat"),
        (ff.FLOW_CONTROL_PIN, "paralelism=3", "paralelism"),
        (ff.FLOW_CONTROL_UNPIN, "period=true", "period"),
        (ff.FLOW_CONTROL_PLAIN, "x=1", "x"),
    ],
)
def test_an_unknown_field_is_named_in_a_400(spec: ff.FieldSpec, query: str, field: str) -> None:
    assert _refused(spec, query) == f"unknown filter field {field!r}"


@pytest.mark.parametrize("query", ["label=", "label=&label=", "label=,", "url=%20&count=1"])
def test_a_filter_given_only_blank_values_is_400_not_no_filter(query: str) -> None:
    assert "empty filter field" in _refused(ff.CANCEL_MESSAGES, query)
    assert "empty filter field" in _refused(ff.DLQ, query)


def test_a_blank_cursor_is_the_first_page_not_an_error() -> None:
    assert ff.checked(ff.DLQ, _pairs("cursor=")) == ff.DLQ_MAX


@pytest.mark.parametrize("raw", ["abc", "-1", "0", "1.5", "1e3", "", "٣"])
def test_count_must_be_a_positive_integer(raw: str) -> None:
    for spec in (ff.CANCEL_MESSAGES, ff.DLQ, ff.EVENTS):
        _refused(spec, f"count={raw}")


def test_count_default_and_maximum_per_endpoint() -> None:
    # cancel: no count = every match; 1..500 (QStash's document), more is refused
    assert ff.checked(ff.CANCEL_MESSAGES, []) is None
    assert ff.checked(ff.CANCEL_MESSAGES, _pairs("count=500")) == 500
    assert "between 1 and 500" in _refused(ff.CANCEL_MESSAGES, "count=501")
    # DLQ: default and maximum 100; a larger count is read as 100 (the rest has a cursor)
    assert ff.checked(ff.DLQ, []) == 100
    assert ff.checked(ff.DLQ, _pairs("count=7")) == 7
    assert ff.checked(ff.DLQ, _pairs("count=1000")) == 100
    # events: default 100, at most 1000
    assert ff.checked(ff.EVENTS, []) == 100
    assert ff.checked(ff.EVENTS, _pairs("count=1000")) == 1000
    _refused(ff.EVENTS, "count=1001")


def test_the_first_count_is_the_one_read() -> None:
    assert ff.checked(ff.DLQ, _pairs("count=3&count=50")) == 3


# -- JSON bodies (the Python SDK's dialect) ----------------------------------------------------


def test_an_ids_body_is_exactly_its_one_key() -> None:
    assert ff.decode_ids_body(ff.CANCEL_MESSAGES, b"") is None
    assert ff.decode_ids_body(ff.CANCEL_MESSAGES, b"  \n") is None
    assert ff.decode_ids_body(ff.CANCEL_MESSAGES, b'{"messageIds": ["a", "b", "a"]}') == ("a", "b")
    assert ff.decode_ids_body(ff.DLQ, b'{"dlqIds": []}') == ()


@pytest.mark.parametrize(
    ("spec", "body", "message"),
    [
        (ff.CANCEL_MESSAGES, b'{"messageIds": ["a"], "labeel": "x"}', "unknown filter field"),
        (ff.CANCEL_MESSAGES, b'{"messageIdz": ["a"]}', "unknown filter field 'messageIdz'"),
        (ff.CANCEL_MESSAGES, b'{"dlqIds": ["a"]}', "unknown filter field 'dlqIds'"),
        (ff.DLQ, b'{"ids": ["a"]}', "unknown filter field 'ids'"),
        (ff.DLQ, b"{}", "invalid request body"),
        (ff.DLQ, b'{"dlqIds": "a"}', "invalid request body"),
        (ff.DLQ, b'{"dlqIds": [1]}', "invalid request body"),
        (ff.DLQ, b'["a"]', "invalid request body"),
        (ff.DLQ, b"not json", "invalid request body"),
        (ff.EVENTS, b'{"x": 1}', "takes no body"),
    ],
)
def test_any_other_body_is_400(spec: ff.FieldSpec, body: bytes, message: str) -> None:
    with pytest.raises(ApiError) as err:
        ff.decode_ids_body(spec, body)
    assert err.value.status == 400
    assert message in str(err.value)


# -- each endpoint's parser goes through the check ---------------------------------------------


@pytest.mark.parametrize(
    "parse",
    [
        lambda q: parse_selection(QueryParams(q), b""),
        lambda q: dlq_query(QueryParams(q).multi_items()),
        lambda q: events_query(QueryParams(q)),
    ],
    ids=["cancel", "dlq", "events"],
)
@pytest.mark.parametrize(
    "query", ["labeel=x", "label=", "count=x", "count=-1", "fromDate=yesterday", "toDate=1.5"]
)
def test_every_endpoint_parser_refuses_typos_and_bad_values(parse: object, query: str) -> None:
    assert callable(parse)
    with pytest.raises(ApiError) as err:
        parse(query)
    assert err.value.status == 400


def test_malformed_dates_are_400_even_next_to_message_ids() -> None:
    with pytest.raises(ApiError):
        parse_selection(QueryParams("messageIds=m1&fromDate=yesterday"), b"")
    with pytest.raises(ApiError):
        parse_selection(QueryParams("fromDate=yesterday"), b'{"messageIds": ["m1"]}')


@pytest.mark.parametrize("status", ["abc", "5xx", "-1"])
def test_dlq_response_status_must_be_a_number(status: str) -> None:
    with pytest.raises(ApiError):
        dlq_query([("responseStatus", status)])


def test_unknown_state_and_order_are_400() -> None:
    with pytest.raises(ApiError):
        events_query(QueryParams("state=DONE"))
    with pytest.raises(ApiError):
        events_query(QueryParams("order=newest"))
    with pytest.raises(ApiError):
        dlq_query([("order", "newest")])
