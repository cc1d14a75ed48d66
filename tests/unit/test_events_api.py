"""GET /v2/events and /v2/logs without a broker: filters, paging, count limits, the entry JSON."""

from __future__ import annotations

import base64

import pytest
from qstash.log import LogState, parse_logs_response
from starlette.datastructures import QueryParams

from kafstash.producers.api.errors import ApiError
from kafstash.producers.api.events import event_json, list_events, parse_query
from kafstash.producers.api.filters import parse_filter
from kafstash.producers.events_view import EventStore
from kafstash.schemas.events import MessageEvent, State
from kafstash.schemas.message import CallbackOptions, FlowControl, Message
from kafstash.schemas.redact import redacted, redacted_value

T0 = 1_700_000_000_000
USER = "u1"


def _msg(mid: str = "msg_1", **kw: object) -> Message:
    base: dict[str, object] = {
        "message_id": mid,
        "user_id": USER,
        "url": "https://a.example/hook?x=1",
        "created_at": T0,
        "not_before": T0,
    }
    base.update(kw)
    return Message(**base)  # type: ignore[arg-type]


def _ev(
    mid: str,
    state: State,
    t: int,
    *,
    message: Message | None = None,
    user: str = USER,
    **kw: object,
) -> MessageEvent:
    return MessageEvent(
        time=t,
        message_id=mid,
        user_id=user,
        state=state,
        url=message.url if message else "https://a.example/hook?x=1",
        message=message,
        **kw,  # type: ignore[arg-type]
    )


def _q(raw: str) -> QueryParams:
    return QueryParams(raw)


def _store(*events: MessageEvent) -> EventStore:
    store = EventStore(retention_ms=3_600_000)
    for e in events:
        store.add(e)
    return store


def _ids(body: dict[str, object], key: str = "events") -> list[tuple[str, str]]:
    entries = body[key]
    assert isinstance(entries, list)
    return [(e["messageId"], e["state"]) for e in entries]


# -- filters -------------------------------------------------------------------------------


def test_repeated_and_comma_values_are_or_and_keys_are_and() -> None:
    a = _msg("msg_a", labels=["red"], topic_name="g1")
    b = _msg("msg_b", labels=["blue"], topic_name="g1")
    c = _msg("msg_c", labels=["blue"], topic_name="g2")
    store = _store(
        *(_ev(m.message_id, "CREATED", T0 + i, message=m) for i, m in enumerate((a, b, c)))
    )
    for query in ("label=red&label=blue&topicName=g1", "label=red,blue&topicName=g1"):
        got = list_events(store, USER, _q(query), "events")
        assert sorted(_ids(got)) == [("msg_a", "CREATED"), ("msg_b", "CREATED")]


def test_state_filter_in_progress_and_both_cancel_spellings() -> None:
    states: list[State] = ["CREATED", "ACTIVE", "ERROR", "RETRY", "DELIVERED", "CANCELED"]
    store = _store(*(_ev("msg_1", s, T0 + i) for i, s in enumerate(states)))
    got = list_events(store, USER, _q("state=IN_PROGRESS"), "events")
    assert {s for _, s in _ids(got)} == {"ACTIVE", "ERROR", "RETRY"}
    for spelling in ("CANCELLED", "CANCELED", "canceled"):
        got = list_events(store, USER, _q(f"state={spelling}"), "events")
        assert _ids(got) == [("msg_1", "CANCELED")]
    got = list_events(store, USER, _q("state=DELIVERED,CREATED"), "events")
    assert {s for _, s in _ids(got)} == {"DELIVERED", "CREATED"}


def test_message_ids_url_host_path_caller_ip_flow_control_and_dates() -> None:
    a = _msg("msg_a", caller_ip="10.0.0.1", flow_control=FlowControl(key="fk", rate=2))
    b = _msg("msg_b", url="https://b.example/other", schedule_id="scd_1", queue_name="q1")
    store = _store(
        _ev("msg_a", "CREATED", T0, message=a), _ev("msg_b", "CREATED", T0 + 10, message=b)
    )

    def ids(query: str) -> list[str]:
        return sorted(m for m, _ in _ids(list_events(store, USER, _q(query), "events")))

    assert ids("messageIds=msg_a&messageIds=msg_b") == ["msg_a", "msg_b"]
    assert ids("messageId=msg_b") == ["msg_b"]
    assert ids("url=https://a.example/hook?x=1,https://b.example/other") == ["msg_a", "msg_b"]
    assert ids("url=https%3A%2F%2Fb.example%2Fother") == ["msg_b"]
    assert ids("host=a.example") == ["msg_a"]
    assert ids("path=/other") == ["msg_b"]
    assert ids("callerIp=10.0.0.1") == ["msg_a"]
    assert ids("callerIP=10.0.0.1") == ["msg_a"]
    assert ids("flowControlKey=fk") == ["msg_a"]
    assert ids("scheduleId=scd_1&queueName=q1") == ["msg_b"]
    assert ids(f"fromDate={T0 + 10}") == ["msg_b"]
    assert ids(f"toDate={T0}") == ["msg_a"]  # inclusive
    assert ids(f"fromDate={T0}&toDate={T0 + 10}") == ["msg_a", "msg_b"]
    assert ids("host=a.example&path=/other") == []


@pytest.mark.parametrize(
    "query",
    [
        "state=SENT",
        "fromDate=yesterday",
        "toDate=1.5",
        "count=1001",
        "count=0",
        "count=x",
        "order=newest",
        "cursor=abc",
    ],
)
def test_bad_queries_are_400(query: str) -> None:
    with pytest.raises(ApiError) as err:
        list_events(EventStore(), USER, _q(query), "events")
    assert err.value.status == 400


def test_count_default_is_100_and_1000_is_allowed() -> None:
    assert parse_query(_q("")).count == 100
    assert parse_query(_q("count=1000")).count == 1000
    assert parse_query(_q("")).latest_first is True
    assert parse_filter(_q("")).is_empty


# -- paging --------------------------------------------------------------------------------


def _many(n: int) -> EventStore:
    return _store(*(_ev(f"msg_{i:03d}", "CREATED", T0 + i) for i in range(n)))


@pytest.mark.parametrize("order", ["latestFirst", "earliestFirst"])
def test_cursor_pages_through_everything_once_and_ends_without_cursor(order: str) -> None:
    store = _many(25)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = f"count=10&order={order}" + (f"&cursor={cursor}" if cursor else "")
        body = list_events(store, USER, _q(query), "events")
        seen += [m for m, _ in _ids(body)]
        pages += 1
        if "cursor" not in body:
            break
        cursor = body["cursor"]  # type: ignore[assignment]
        assert isinstance(cursor, str)
        assert cursor
    assert pages == 3
    expected = [f"msg_{i:03d}" for i in range(25)]
    assert seen == (expected[::-1] if order == "latestFirst" else expected)


def test_exactly_full_last_page_has_no_cursor() -> None:
    body = list_events(_many(10), USER, _q("count=10"), "events")
    assert len(body["events"]) == 10  # type: ignore[arg-type]
    assert "cursor" not in body


def test_logs_key_for_the_logs_endpoint() -> None:
    body = list_events(_many(2), USER, _q(""), "logs")
    assert set(body) == {"logs"}


def test_users_see_only_their_own_events() -> None:
    store = _store(_ev("msg_mine", "CREATED", T0), _ev("msg_theirs", "CREATED", T0, user="u2"))
    assert _ids(list_events(store, USER, _q(""), "events")) == [("msg_mine", "CREATED")]
    assert _ids(list_events(store, "u2", _q(""), "events")) == [("msg_theirs", "CREATED")]
    assert list_events(store, "nobody", _q("messageId=msg_mine"), "events") == {"events": []}


def test_replayed_events_are_kept_once_and_latest_state_follows() -> None:
    m = _msg()
    store = _store(
        _ev("msg_1", "CREATED", T0, message=m),
        _ev("msg_1", "CREATED", T0, message=m),  # an at-least-once replay
        _ev("msg_1", "ACTIVE", T0 + 5),
        _ev("msg_1", "DELIVERED", T0 + 9),
    )
    assert len(store) == 3
    assert store.latest_state("msg_1") == "DELIVERED"
    assert store.latest_state("msg_unknown") is None


def test_prune_forgets_what_is_older_than_the_retention() -> None:
    store = _store(_ev("msg_old", "CREATED", T0), _ev("msg_new", "CREATED", T0 + 3_600_000))
    assert store.prune(T0 + 3_600_000 + 1) == 1
    assert _ids(list_events(store, USER, _q(""), "events")) == [("msg_new", "CREATED")]
    assert store.latest_state("msg_old") is None


# -- the entry JSON ------------------------------------------------------------------------


def test_entry_json_has_every_key_the_sdks_read_and_parses_in_qstash_py() -> None:
    m = _msg(
        method="PUT",
        header={"Authorization": ["Bearer s3cret"], "X-Keep": ["k"]},
        body=b"top secret",
        max_retries=2,
        retry_delay_expression="1000 * retried",
        timeout_ms=2500,
        callback="https://cb.example/",
        failure_callback="https://fcb.example/",
        callback_options=CallbackOptions(header={"Cb": ["1"]}),
        failure_callback_options=CallbackOptions(header={"Fcb": ["2"]}),
        labels=["l1", "l2"],
        topic_name="grp",
        endpoint_name="ep",
        queue_name="q",
        schedule_id="scd_1",
        flow_control=FlowControl(key="fk", parallelism=3),
        redact=["body", "header[authorization]"],
    )
    shown = redacted(m)
    created = _ev("msg_1", "CREATED", T0, message=shown)
    error = _ev(
        "msg_1",
        "ERROR",
        T0 + 1,
        response_status=500,
        response_body=b"boom",
        response_headers={"X-Answer": ["a"]},
        error="HTTP 500",
        next_delivery_time=T0 + 1000,
    )
    cancel = _ev("msg_1", "CANCELED", T0 + 2)
    store = _store(created, error, cancel)
    body = list_events(store, USER, _q("order=earliestFirst"), "events")
    entries = body["events"]
    assert isinstance(entries, list)
    first, second, third = entries
    assert first["time"] == T0
    assert first["messageId"] == "msg_1"
    assert first["state"] == "CREATED"
    assert first["url"] == m.url
    assert first["method"] == "PUT"
    assert base64.b64decode(first["body"]) == redacted_value(b"top secret").encode()
    assert first["header"]["Authorization"] == [redacted_value("Bearer s3cret")]
    assert first["header"]["X-Keep"] == ["k"]
    assert first["retryDelayExpr"] == first["retryDelayExpression"] == "1000 * retried"
    assert first["timeout"] == 2500  # milliseconds
    assert first["callbackHeaders"] == {"Cb": ["1"]}
    assert first["failureCallbackHeaders"] == {"Fcb": ["2"]}
    assert (first["label"], first["labels"]) == ("l1", ["l1", "l2"])
    assert (first["flowControlKey"], first["parallelism"], first["period"]) == ("fk", 3, 1)
    assert "rate" not in first
    assert second["responseHeader"] == second["responseHeaders"] == {"X-Answer": ["a"]}
    assert base64.b64decode(second["responseBody"]) == b"boom"
    assert second["responseStatus"] == 500
    assert second["nextDeliveryTime"] == T0 + 1000
    assert third["state"] == "CANCELED"
    assert "top secret" not in str(body)
    assert "s3cret" not in str(body)

    logs = parse_logs_response(entries)
    assert [log.state for log in logs] == [LogState.CREATED, LogState.ERROR, LogState.CANCELED]
    assert logs[0].retry_delay_expression == "1000 * retried"
    assert logs[0].label == "l1"
    assert logs[0].url_group == "grp"
    assert logs[0].queue == "q"
    assert logs[0].endpoint == "ep"
    assert logs[0].flow_control is not None
    assert logs[0].flow_control.key == "fk"
    assert logs[1].response_headers == {"X-Answer": ["a"]}
    assert logs[1].response_status == 500


def test_entry_without_known_message_still_has_required_keys() -> None:
    e = _ev("msg_x", "DELIVERED", T0, max_retries=3)
    out = event_json(e, None)
    for key in ("time", "messageId", "state", "url"):
        assert key in out
    assert out["maxRetries"] == 3


def test_events_retention_setting() -> None:
    from kafstash.config import ConfigError, Settings  # noqa: PLC0415

    assert Settings.from_env({"KAFSTASH_DEV": "1"}).events_retention_ms == 24 * 3600 * 1000
    env = {"KAFSTASH_DEV": "1", "KAFSTASH_EVENTS_RETENTION": "90"}
    assert Settings.from_env(env).events_retention_ms == 90_000
    with pytest.raises(ConfigError, match="KAFSTASH_EVENTS_RETENTION"):
        Settings.from_env({"KAFSTASH_DEV": "1", "KAFSTASH_EVENTS_RETENTION": "0"})


def test_listing_by_message_id_pages_and_respects_the_caps() -> None:
    store = EventStore(retention_ms=3_600_000, max_kept=6)
    states: list[State] = ["CREATED", "ACTIVE", "ERROR", "RETRY", "ACTIVE", "DELIVERED"]
    for i, s in enumerate(states):
        store.add(_ev("msg_1", s, T0 + 10 * i, retried=i // 3))
        store.add(_ev("msg_2", "CREATED", T0 + 10 * i + 1))  # noise, and it pushes out old ones
    first = list_events(store, USER, _q("messageId=msg_1&count=2"), "events")
    assert [s for _, s in _ids(first)] == ["DELIVERED", "ACTIVE"]
    second = list_events(
        store, USER, _q(f"messageId=msg_1&count=2&cursor={first['cursor']}"), "events"
    )
    assert [s for _, s in _ids(second)] == ["RETRY"]  # older ones went with max_kept=6
    assert "cursor" not in second
    assert len(store) == 6
    assert list_events(store, "u2", _q("messageId=msg_1"), "events") == {"events": []}
