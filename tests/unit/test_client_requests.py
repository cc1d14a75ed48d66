"""The client's request building (producers/client/_requests.py), without any I/O.

The expected requests are the official Python SDK's (qstash-api.md §3, §4 and
/work/shared/sdk-wire/py_requests.jsonl), except that int durations are milliseconds.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kafstash.producers.client import InvalidArgument
from kafstash.producers.client import _requests as req
from kafstash.producers.durations import parse_duration_ms

URL = "https://example.com/api/hook?x=1&y=2"


# -- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "header"),
    [
        ("5m", "5m"),
        ("1d2h", "1d2h"),
        ("10s", "10s"),
        (" 30s ", "30s"),
        ("500ms", "500ms"),
        ("1d10h30m", "1d10h30m"),
        (0, "0s"),
        (1000, "1s"),
        (300_000, "300s"),
        (1500, "1500ms"),
        (1, "1ms"),
    ],
)
def test_duration_header_values(value: str | int, header: str) -> None:
    assert req.duration(value, option="delay") == header


@pytest.mark.parametrize("ms", [0, 1, 999, 1000, 1500, 60_000, 93_784_005])
def test_int_durations_are_milliseconds_the_server_reads_back(ms: int) -> None:
    assert parse_duration_ms(req.duration(ms, option="delay")) == ms


@pytest.mark.parametrize("bad", ["soon", "5x", "", "1m1m", -1, True, 1.5])
def test_bad_durations_are_refused_before_sending(bad: Any) -> None:
    with pytest.raises(InvalidArgument, match="delay"):
        req.duration(bad, option="delay")


def test_invalid_argument_is_also_a_value_error() -> None:
    with pytest.raises(ValueError, match="timeout"):
        req.publish(URL, b"", {"timeout": "forever"})


# -- publish ---------------------------------------------------------------------------------


def test_publish_path_is_the_raw_destination_and_body_is_bytes() -> None:
    call = req.publish(URL, "héllo", {})
    assert call.method == "POST"
    assert call.path == "/v2/publish/https://example.com/api/hook?x=1&y=2"
    assert call.headers == ()
    assert call.content == "héllo".encode()


def test_publish_headers_every_option() -> None:
    call = req.publish(
        URL,
        b"{}",
        {
            "content_type": "application/json",
            "method": "PUT",
            "headers": {"my-header": "v", "Content-Type": "text/x", "Upstash-Forward-K": "k"},
            "retries": 2,
            "retry_delay": "1000*retried",
            "callback": "https://cb.example.com",
            "failure_callback": "https://fcb.example.com",
            "delay": "10s",
            "not_before": 1_700_000_000,
            "deduplication_id": "d1",
            "content_based_deduplication": True,
            "timeout": 30_000,
            "label": "L",
        },
    )
    assert list(call.headers) == [
        ("Content-Type", "application/json"),
        ("Upstash-Method", "PUT"),
        ("Upstash-Forward-my-header", "v"),
        ("Upstash-Forward-Content-Type", "text/x"),
        ("Upstash-Forward-K", "k"),
        ("Upstash-Retries", "2"),
        ("Upstash-Retry-Delay", "1000*retried"),
        ("Upstash-Callback", "https://cb.example.com"),
        ("Upstash-Failure-Callback", "https://fcb.example.com"),
        ("Upstash-Delay", "10s"),
        ("Upstash-Timeout", "30s"),
        ("Upstash-Label", "L"),
        ("Upstash-Not-Before", "1700000000"),
        ("Upstash-Deduplication-Id", "d1"),
        ("Upstash-Content-Based-Deduplication", "True"),
    ]


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("x-a", "Upstash-Forward-x-a"),
        ("Authorization", "Upstash-Forward-Authorization"),
        ("upstash-forward-b", "upstash-forward-b"),  # already prefixed: kept as given
        ("UPSTASH-FORWARD-C", "UPSTASH-FORWARD-C"),
        ("Upstash-Retries", "Upstash-Forward-Upstash-Retries"),  # as the SDK: every header
    ],
)
def test_forward_header_prefixing(given: str, sent: str) -> None:
    assert req.publish(URL, b"", {"headers": {given: "v"}}).headers == ((sent, "v"),)


def test_labels_join_with_commas_and_retry_delay_may_be_an_int() -> None:
    call = req.publish(URL, b"", {"label": ["a", "b"], "retry_delay": 250})
    assert dict(call.headers) == {"Upstash-Label": "a,b", "Upstash-Retry-Delay": "250"}


def test_content_based_deduplication_false_is_sent() -> None:
    call = req.publish(URL, b"", {"content_based_deduplication": False})
    assert call.headers == (("Upstash-Content-Based-Deduplication", "False"),)


def test_publish_json_dumps_and_sets_content_type() -> None:
    call = req.publish_json(URL, {"a": 1}, {"headers": {"x": "1"}, "content_type": "text/x"})
    assert call.content == b'{"a": 1}'
    assert call.headers[0] == ("Content-Type", "application/json")
    assert ("Upstash-Forward-x", "1") in call.headers


def test_unknown_option_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="dela"):
        req.publish(URL, b"", {"dela": "5s"})  # type: ignore[typeddict-unknown-key]


def test_enqueue_path() -> None:
    call = req.enqueue("q1", "https://example.com", "x", {"retries": 1})
    assert call.path == "/v2/enqueue/q1/https://example.com"
    assert call.headers == (("Upstash-Retries", "1"),)
    assert call.content == b"x"


# -- batch -----------------------------------------------------------------------------------


def test_batch_body_is_the_sdks_json_array() -> None:
    call = req.batch(
        [
            {"url": "https://example.com/a", "body": "b1", "headers": {"X": "1"}},
            {"url": "https://example.com/b", "queue": "q1", "delay": 2000, "retries": 0},
            {"url": "https://example.com/c", "body": "ü".encode()},
        ]
    )
    assert (call.method, call.path) == ("POST", "/v2/batch")
    assert call.headers == (("Content-Type", "application/json"),)
    assert call.content is not None
    assert json.loads(call.content) == [
        {
            "destination": "https://example.com/a",
            "headers": {"Upstash-Forward-X": "1"},
            "body": "b1",
            "queue": None,
        },
        {
            "destination": "https://example.com/b",
            "headers": {"Upstash-Retries": "0", "Upstash-Delay": "2s"},
            "body": None,
            "queue": "q1",
        },
        {"destination": "https://example.com/c", "headers": {}, "body": "ü", "queue": None},
    ]


def test_batch_refuses_empty_non_utf8_and_unknown_keys() -> None:
    with pytest.raises(InvalidArgument):
        req.batch([])
    with pytest.raises(InvalidArgument, match="UTF-8"):
        req.batch([{"url": "https://example.com", "body": b"\xff"}])
    with pytest.raises(InvalidArgument, match="destination"):
        req.batch([{"url": "https://example.com", "destination": "x"}])  # type: ignore[typeddict-unknown-key]


# -- messages and schedules ------------------------------------------------------------------


def test_message_paths() -> None:
    assert (req.get_message("msg_1").method, req.get_message("msg_1").path) == (
        "GET",
        "/v2/messages/msg_1",
    )
    cancel = req.cancel_message("msg_1")
    assert (cancel.method, cancel.path, cancel.content) == ("DELETE", "/v2/messages/msg_1", None)
    assert req.get_message("a/b").path == "/v2/messages/a%2Fb"


def test_create_schedule_headers() -> None:
    call = req.create_schedule(
        destination="https://example.com",
        cron="*/5 * * * *",
        body="s",
        schedule_id="sid",
        queue="q1",
        options={"delay": 60_000, "timeout": "5s"},
    )
    assert (call.method, call.path, call.content) == (
        "POST",
        "/v2/schedules/https://example.com",
        b"s",
    )
    # The order of sdk-wire/py_requests.jsonl.
    assert list(call.headers) == [
        ("Upstash-Cron", "*/5 * * * *"),
        ("Upstash-Delay", "60s"),
        ("Upstash-Timeout", "5s"),
        ("Upstash-Schedule-Id", "sid"),
        ("Upstash-Queue-Name", "q1"),
    ]


def test_schedules_refuse_single_message_options() -> None:
    with pytest.raises(InvalidArgument, match="deduplication_id"):
        req.create_schedule(
            destination="https://example.com",
            cron="* * * * *",
            body=b"",
            schedule_id=None,
            queue=None,
            options={"deduplication_id": "x"},  # type: ignore[typeddict-unknown-key]
        )


@pytest.mark.parametrize(
    ("call", "method", "path"),
    [
        (req.get_schedule("scd_1"), "GET", "/v2/schedules/scd_1"),
        (req.list_schedules(), "GET", "/v2/schedules"),
        (req.delete_schedule("scd_1"), "DELETE", "/v2/schedules/scd_1"),
        (req.pause_schedule("scd_1"), "PATCH", "/v2/schedules/scd_1/pause"),
        (req.resume_schedule("scd_1"), "PATCH", "/v2/schedules/scd_1/resume"),
    ],
)
def test_schedule_paths(call: req.Call[Any], method: str, path: str) -> None:
    assert (call.method, call.path, call.content) == (method, path, None)


def test_to_httpx_keeps_the_raw_destination_and_sends_the_token_first() -> None:
    request = req.to_httpx(
        req.publish(URL, b"x", {"retries": 1}), base_url="http://127.0.0.1:8080", token="tok"
    )
    assert request.url.raw_path == b"/v2/publish/https://example.com/api/hook?x=1&y=2"
    assert list(request.headers.items())[:2] == [
        ("host", "127.0.0.1:8080"),
        ("authorization", "Bearer tok"),
    ]
    assert request.headers["Upstash-Retries"] == "1"
