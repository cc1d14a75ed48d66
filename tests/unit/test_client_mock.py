"""Client and AsyncClient against httpx.MockTransport: the exact request of every method (the
official Python SDK's, sdk-wire/py_requests.jsonl), typed results, and the error mapping.

Every test runs twice, once per client: both send the same ``Call`` values, so both must send
byte-identical requests and raise the same errors.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from kafstash.producers.client import (
    ApiError,
    AsyncClient,
    Client,
    KafstashError,
    Message,
    NetworkError,
    NotFound,
    ProtocolError,
    PublishResult,
    RateLimitError,
    Schedule,
    Unauthorized,
)

TOKEN = "tok_py"
BASE = "http://127.0.0.1:18089"
_HTTPX_DEFAULTS = {"host", "accept", "accept-encoding", "connection", "user-agent"}

Handler = Callable[[httpx.Request], httpx.Response]


class Driver:
    """Calls ``client.<dotted name>(...)`` on a Client or an AsyncClient, recording requests."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.requests: list[httpx.Request] = []
        self.reply: Handler = lambda _r: httpx.Response(200, json={})

        def handle(request: httpx.Request) -> httpx.Response:
            request.read()
            self.requests.append(request)
            return self.reply(request)

        transport = httpx.MockTransport(handle)
        self.client: Client | AsyncClient
        if kind == "sync":
            self.client = Client(TOKEN, base_url=BASE + "/", transport=transport)
        else:
            self.client = AsyncClient(TOKEN, base_url=BASE, transport=transport)

    def __call__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        target: Any = self.client
        for part in name.split("."):
            target = getattr(target, part)
        result = target(*args, **kwargs)
        if self.kind == "async":
            result = asyncio.run(result)
        return result

    def close(self) -> None:
        if isinstance(self.client, AsyncClient):
            asyncio.run(self.client.aclose())
        else:
            self.client.close()

    def answer(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        def reply(_r: httpx.Request) -> httpx.Response:
            if isinstance(body, bytes | str):
                return httpx.Response(status, content=body, headers=headers)
            return httpx.Response(status, json=body, headers=headers)

        self.reply = reply

    @property
    def last(self) -> httpx.Request:
        assert len(self.requests) == 1, self.requests
        return self.requests[0]


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> Iterator[Driver]:
    d = Driver(request.param)
    yield d
    d.close()


def sent(request: httpx.Request) -> tuple[str, bytes, list[tuple[str, str]], bytes]:
    """Method, raw path, headers as sent (case kept, httpx's defaults dropped) and body."""
    headers = [
        (k.decode(), v.decode())
        for k, v in request.headers.raw
        if k.decode().lower() not in _HTTPX_DEFAULTS
    ]
    return request.method, request.url.raw_path, headers, request.content


AUTH = ("Authorization", f"Bearer {TOKEN}")


# -- messages --------------------------------------------------------------------------------


def test_publish(api: Driver) -> None:
    api.answer(201, {"messageId": "msg_1", "url": "https://example.com/api/hook?x=1&y=2"})
    result = api(
        "publish",
        url="https://example.com/api/hook?x=1&y=2",
        body='{"a": 1}',
        content_type="application/json",
        method="PUT",
        headers={"my-header": "v", "Content-Type": "text/x"},
        retries=2,
        retry_delay="1000*retried",
        callback="https://cb.example.com",
        failure_callback="https://fcb.example.com",
        delay="10s",
        deduplication_id="d1",
        content_based_deduplication=True,
        timeout=30_000,
        label="L",
    )
    assert result == PublishResult(
        message_id="msg_1", url="https://example.com/api/hook?x=1&y=2", deduplicated=False
    )
    assert sent(api.last) == (
        "POST",
        b"/v2/publish/https://example.com/api/hook?x=1&y=2",
        [
            AUTH,
            ("Content-Type", "application/json"),
            ("Upstash-Method", "PUT"),
            ("Upstash-Forward-my-header", "v"),
            ("Upstash-Forward-Content-Type", "text/x"),
            ("Upstash-Retries", "2"),
            ("Upstash-Retry-Delay", "1000*retried"),
            ("Upstash-Callback", "https://cb.example.com"),
            ("Upstash-Failure-Callback", "https://fcb.example.com"),
            ("Upstash-Delay", "10s"),
            ("Upstash-Timeout", "30s"),
            ("Upstash-Label", "L"),
            ("Upstash-Deduplication-Id", "d1"),
            ("Upstash-Content-Based-Deduplication", "True"),
            ("Content-Length", "8"),
        ],
        b'{"a": 1}',
    )


def test_publish_binary_body_and_deduplicated_answer(api: Driver) -> None:
    api.answer(202, {"messageId": "msg_first", "deduplicated": True})
    result = api("publish", url="https://example.com/", body=b"\x00\x01raw", delay=1500)
    # The server may omit url (QStash does): it is the destination we asked for.
    assert result == PublishResult(
        message_id="msg_first", url="https://example.com/", deduplicated=True
    )
    assert sent(api.last) == (
        "POST",
        b"/v2/publish/https://example.com/",
        [AUTH, ("Upstash-Delay", "1500ms"), ("Content-Length", "5")],
        b"\x00\x01raw",
    )


def test_publish_json(api: Driver) -> None:
    api.answer(201, {"messageId": "msg_1"})
    api("publish_json", url="https://example.com/h", body={"hi": [1, 2]}, not_before=1_700_000_000)
    method, path, headers, body = sent(api.last)
    assert (method, path, body) == ("POST", b"/v2/publish/https://example.com/h", b'{"hi": [1, 2]}')
    assert headers[:3] == [
        AUTH,
        ("Content-Type", "application/json"),
        ("Upstash-Not-Before", "1700000000"),
    ]


def test_enqueue(api: Driver) -> None:
    api.answer(201, {"messageId": "msg_q"})
    result = api("enqueue", queue="q1", url="https://example.com", body="x")
    assert result.message_id == "msg_q"
    assert sent(api.last) == (
        "POST",
        b"/v2/enqueue/q1/https://example.com",
        [AUTH, ("Content-Length", "1")],
        b"x",
    )


def test_batch(api: Driver) -> None:
    api.answer(201, [{"messageId": "m1", "url": "https://example.com/a"}, {"messageId": "m2"}])
    results = api(
        "batch",
        [
            {"url": "https://example.com/a", "headers": {"X": "1"}, "body": "b1"},
            {"url": "https://example.com/b", "queue": "q1", "deduplication_id": "d"},
        ],
    )
    assert results == [
        PublishResult(message_id="m1", url="https://example.com/a"),
        PublishResult(message_id="m2", url="https://example.com/b"),
    ]
    method, path, headers, body = sent(api.last)
    assert (method, path) == ("POST", b"/v2/batch")
    assert headers[:2] == [AUTH, ("Content-Type", "application/json")]
    assert json.loads(body) == [
        {
            "destination": "https://example.com/a",
            "headers": {"Upstash-Forward-X": "1"},
            "body": "b1",
            "queue": None,
        },
        {
            "destination": "https://example.com/b",
            "headers": {"Upstash-Deduplication-Id": "d"},
            "body": None,
            "queue": "q1",
        },
    ]


def test_batch_answer_of_the_wrong_length_is_a_protocol_error(api: Driver) -> None:
    api.answer(201, [{"messageId": "m1"}])
    with pytest.raises(ProtocolError, match="batch of 2"):
        api("batch", [{"url": "https://a.example"}, {"url": "https://b.example"}])


def test_get_message(api: Driver) -> None:
    api.answer(
        200,
        {
            "messageId": "msg_1",
            "url": "https://example.com/h?x=1",
            "method": "PUT",
            "header": {"Content-Type": ["text/plain"], "X-A": ["1", "2"]},
            "maxRetries": 1,
            "notBefore": 1_700_000_004_000,
            "createdAt": 1_700_000_000_000,
            "body": "héllo",
            "callerIP": "10.0.0.1",
            "callerIp": "10.0.0.1",
            "label": "a",
            "labels": ["a", "b"],
            "timeout": 30,
            "someFutureField": {"ignored": True},
        },
    )
    msg = api("get_message", "msg_1")
    assert isinstance(msg, Message)
    assert (msg.message_id, msg.url, msg.method, msg.max_retries) == (
        "msg_1",
        "https://example.com/h?x=1",
        "PUT",
        1,
    )
    assert msg.not_before - msg.created_at == 4000
    assert msg.header["X-A"] == ["1", "2"]
    assert msg.content == "héllo".encode()
    assert (msg.caller_ip, msg.labels, msg.timeout) == ("10.0.0.1", ["a", "b"], 30)
    assert msg.callback is None
    assert sent(api.last) == ("GET", b"/v2/messages/msg_1", [AUTH], b"")


def test_get_message_with_a_binary_body(api: Driver) -> None:
    api.answer(
        200,
        {
            "messageId": "m",
            "url": "https://e.example",
            "method": "POST",
            "maxRetries": 3,
            "notBefore": 0,
            "createdAt": 1,
            "bodyBase64": "AAH/",
        },
    )
    msg = api("get_message", "m")
    assert (msg.body, msg.content, msg.header) == (None, b"\x00\x01\xff", {})


def test_cancel_message_ignores_the_body(api: Driver) -> None:
    api.answer(200, b"OK")  # an old server's plain-text answer must not break cancel
    assert api("cancel_message", "msg_1") is None
    assert sent(api.last) == ("DELETE", b"/v2/messages/msg_1", [AUTH], b"")


def test_a_message_missing_a_required_key_is_a_protocol_error(api: Driver) -> None:
    api.answer(200, {"messageId": "m", "url": "https://e.example"})
    with pytest.raises(ProtocolError, match="method"):
        api("get_message", "m")


# -- schedules -------------------------------------------------------------------------------

SCHEDULE = {
    "scheduleId": "scd_1",
    "destination": "https://example.com",
    "cron": "*/5 * * * *",
    "createdAt": 1_700_000_000_000,
    "method": "POST",
    "retries": 3,
    "isPaused": True,
    "header": {"Content-Type": ["application/json"]},
    "body": "s",
    "delay": 60,
    "queueName": "q1",
    "lastScheduleTime": 1_700_000_300_000,
    "nextScheduleTime": 1_700_000_600_000,
    "lastScheduleStates": {"msg_a": "SUCCESS"},
    "callerIP": "1.2.3.4",
}


def test_schedules_create(api: Driver) -> None:
    api.answer(200, {"scheduleId": "sid"})
    sid = api(
        "schedules.create",
        destination="https://example.com",
        cron="*/5 * * * *",
        body="s",
        delay=60_000,
        timeout="5s",
        schedule_id="sid",
        queue="q1",
    )
    assert sid == "sid"
    assert sent(api.last) == (
        "POST",
        b"/v2/schedules/https://example.com",
        [
            AUTH,
            ("Upstash-Cron", "*/5 * * * *"),
            ("Upstash-Delay", "60s"),
            ("Upstash-Timeout", "5s"),
            ("Upstash-Schedule-Id", "sid"),
            ("Upstash-Queue-Name", "q1"),
            ("Content-Length", "1"),
        ],
        b"s",
    )


def test_schedules_create_with_every_message_option(api: Driver) -> None:
    api.answer(201, {"scheduleId": "scd_new"})
    api(
        "schedules.create",
        destination="https://example.com/p?q=1",
        cron="CRON_TZ=America/New_York 0 4 * * *",
        method="PUT",
        headers={"X": "1"},
        retries=0,
        retry_delay="100",
        callback="https://cb.example.com",
        failure_callback="https://f.example.com",
        label="nightly",
        content_type="text/plain",
    )
    method, path, headers, body = sent(api.last)
    assert (method, path, body) == ("POST", b"/v2/schedules/https://example.com/p?q=1", b"")
    assert headers == [
        ("Content-Length", "0"),  # httpx puts it first for an empty body, as in the SDK wire
        AUTH,
        ("Upstash-Cron", "CRON_TZ=America/New_York 0 4 * * *"),
        ("Content-Type", "text/plain"),
        ("Upstash-Method", "PUT"),
        ("Upstash-Forward-X", "1"),
        ("Upstash-Retries", "0"),
        ("Upstash-Retry-Delay", "100"),
        ("Upstash-Callback", "https://cb.example.com"),
        ("Upstash-Failure-Callback", "https://f.example.com"),
        ("Upstash-Label", "nightly"),
    ]


def test_schedules_get(api: Driver) -> None:
    api.answer(200, SCHEDULE)
    schedule = api("schedules.get", "scd_1")
    assert isinstance(schedule, Schedule)
    assert (schedule.schedule_id, schedule.cron, schedule.paused, schedule.delay) == (
        "scd_1",
        "*/5 * * * *",
        True,
        60,
    )
    assert schedule.last_schedule_states == {"msg_a": "SUCCESS"}
    assert (schedule.queue_name, schedule.caller_ip, schedule.content) == ("q1", "1.2.3.4", b"s")
    assert sent(api.last) == ("GET", b"/v2/schedules/scd_1", [AUTH], b"")


def test_schedules_list(api: Driver) -> None:
    minimal = {k: SCHEDULE[k] for k in ("destination", "cron", "createdAt", "method", "retries")}
    api.answer(200, [SCHEDULE, {**minimal, "scheduleId": "scd_2"}])
    schedules = api("schedules.list")
    assert [s.schedule_id for s in schedules] == ["scd_1", "scd_2"]
    assert schedules[1].paused is False
    assert sent(api.last) == ("GET", b"/v2/schedules", [AUTH], b"")


@pytest.mark.parametrize(
    ("name", "method", "path"),
    [
        ("schedules.delete", "DELETE", b"/v2/schedules/scd_1"),
        ("schedules.pause", "PATCH", b"/v2/schedules/scd_1/pause"),
        ("schedules.resume", "PATCH", b"/v2/schedules/scd_1/resume"),
    ],
)
def test_schedules_delete_pause_resume(api: Driver, name: str, method: str, path: bytes) -> None:
    api.answer(200, b"")
    assert api(name, "scd_1") is None
    got_method, got_path, headers, body = sent(api.last)
    assert (got_method, got_path, body) == (method, path, b"")
    assert AUTH in headers


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (400, ApiError, False),
        (401, Unauthorized, False),
        (404, NotFound, False),
        (413, ApiError, False),
        (500, ApiError, True),
        (503, ApiError, True),
    ],
)
def test_error_mapping(api: Driver, status: int, kind: type[ApiError], retryable: bool) -> None:
    api.answer(status, {"error": f"reason {status}"}, headers={"Retry-After": "2"})
    with pytest.raises(kind) as info:
        api("get_message", "msg_1")
    err = info.value
    assert type(err) is kind
    assert isinstance(err, KafstashError)
    assert (err.status, err.message, err.retryable, err.retry_after) == (
        status,
        f"reason {status}",
        retryable,
        2.0,
    )
    assert str(err) == f"{status}: reason {status}"


def test_401_and_404_on_every_kind_of_call(api: Driver) -> None:
    api.answer(401, {"error": "invalid token"})
    with pytest.raises(Unauthorized, match="invalid token"):
        api("publish", url="https://e.example", body="x")
    with pytest.raises(Unauthorized):
        api("schedules.list")
    api.answer(404, {"error": "schedule not found"})
    with pytest.raises(NotFound, match="schedule not found"):
        api("schedules.pause", "scd_x")
    with pytest.raises(NotFound):
        api("cancel_message", "msg_x")


def test_429_burst(api: Driver) -> None:
    api.answer(
        429,
        {"error": "slow down"},
        headers={
            "Burst-RateLimit-Limit": "100",
            "Burst-RateLimit-Remaining": "0",
            "Burst-RateLimit-Reset": "1700000001",
        },
    )
    with pytest.raises(RateLimitError) as info:
        api("publish", url="https://e.example")
    err = info.value
    assert (err.status, err.retryable, err.limit, err.remaining, err.reset) == (
        429,
        True,
        "100",
        "0",
        "1700000001",
    )
    assert err.retry_after is None


def test_429_daily(api: Driver) -> None:
    api.answer(
        429,
        b"daily limit",
        headers={"RateLimit-Limit": "500", "RateLimit-Remaining": "0", "RateLimit-Reset": "9"},
    )
    with pytest.raises(RateLimitError, match="daily limit") as info:
        api("schedules.get", "scd_1")
    assert (info.value.limit, info.value.reset) == ("500", "9")


def test_an_error_without_json_keeps_the_text_or_the_status(api: Driver) -> None:
    api.answer(502, b"<html>bad gateway</html>")
    with pytest.raises(ApiError, match="bad gateway"):
        api("get_message", "m")
    api.answer(500, b"")
    with pytest.raises(ApiError, match="HTTP 500"):
        api("get_message", "m")


def test_network_failure_is_a_retryable_network_error(api: Driver) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    api.reply = refuse
    with pytest.raises(NetworkError, match="refused") as info:
        api("publish", url="https://e.example")
    assert info.value.retryable
    assert isinstance(info.value.__cause__, httpx.ConnectError)


def test_bad_arguments_fail_before_sending(api: Driver) -> None:
    with pytest.raises(KafstashError, match="delay"):
        api("publish", url="https://e.example", delay="whenever")
    assert api.requests == []


def test_clients_are_context_managers() -> None:
    transport = httpx.MockTransport(lambda _r: httpx.Response(200, json={"messageId": "m"}))
    with Client(TOKEN, base_url=BASE, transport=transport) as client:
        assert client.publish(url="https://e.example").message_id == "m"

    async def use_async() -> str:
        async with AsyncClient(token=TOKEN, base_url=BASE, transport=transport) as client:
            return (await client.publish(url="https://e.example")).message_id

    assert asyncio.run(use_async()) == "m"
