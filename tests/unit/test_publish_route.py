"""The raw-ASGI publish route answers as the Starlette route does, and passes on what it skips.

Both routes run in-process over the same ApiContext, whose Kafka pieces are stand-ins that
record what would be appended (the real broker path is the SDK suites'). Each case sends one
request through ``PublishRoute`` and, with ``?qstash_token=`` (which the raw route leaves to
the router), the same request through the Starlette route, and compares the answers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from kafstash.producers.api.app import Api
from kafstash.producers.api.context import ApiConfig, ClientGone, receive_body
from kafstash.producers.api.errors import ApiError, handle_api_error
from kafstash.producers.api.publish import PublishLimits
from kafstash.producers.api.publish_route import PublishRoute
from kafstash.schemas import codec
from kafstash.schemas.commands import Accepted, PublishRequest
from kafstash.schemas.groups import Endpoint, UrlGroup, group_key
from kafstash.schemas.message import Message
from kafstash.schemas.topics import Topics
from kafstash.schemas.users import DEV_USERS

USER = DEV_USERS[0]
TOKEN = USER.token
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SINK = "http://127.0.0.1:9/hook"


class Log:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes | None]] = []

    async def append_many(self, records: list[tuple[str, bytes, bytes | None]]) -> None:
        self.records.extend(records)


class Waiter:
    """Answers every dedup decision: a duplicate of ``msg_first``."""

    def expect(self, request_id: str) -> asyncio.Future[Accepted]:
        fut: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        fut.set_result(Accepted(request_id=request_id, message_id="msg_first", deduplicated=True))
        return fut


class View:
    def __init__(self) -> None:
        self.remembered: list[Message] = []

    def remember(self, message: Message) -> None:
        self.remembered.append(message)


class Rows(dict[str, Any]):
    def __bool__(self) -> bool:
        return True  # a view is there even while it holds no row

    def put(self, key: str, value: Any) -> None:
        self[key] = value


def _api(max_body: int = 1024) -> tuple[Api, Log]:
    api = Api(
        ApiConfig(
            bootstrap="127.0.0.1:1",
            topics=Topics("unit"),
            users=DEV_USERS,
            limits=PublishLimits(max_body_bytes=max_body),
            allow_private_destinations=True,
        ),
        clock=lambda: 1_700_000_000.0,
    )
    log = Log()
    api.log, api.waiter, api.view = log, Waiter(), View()  # type: ignore[assignment]
    api.gate_state = Rows()  # type: ignore[assignment]
    group = UrlGroup(
        user_id=USER.user_id,
        name="team",
        endpoints=[Endpoint(url="http://127.0.0.1:9/a", name="a"), Endpoint(url=SINK)],
        created_at=1,
        updated_at=1,
    )
    api.groups = Rows({group_key(USER.user_id, "team"): group})  # type: ignore[assignment]
    return api, log


def _client(api: Api) -> httpx.AsyncClient:
    route = Route("/v2/publish/{destination:path}", api.publish, methods=["POST"])
    router = Starlette(routes=[route], exception_handlers={ApiError: handle_api_error})
    app = PublishRoute(router, api=api, route=route)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


def _requests(log: Log) -> list[PublishRequest]:
    return [codec.decode(value or b"", PublishRequest) for _, _, value in log.records]


async def _both(
    path: str, *, headers: dict[str, str] | None = None, body: bytes = b"hi", max_body: int = 1024
) -> tuple[httpx.Response, httpx.Response, list[PublishRequest], list[PublishRequest]]:
    """The answer of the raw route, of the Starlette route, and what each appended."""
    fast_api, fast_log = _api(max_body)
    slow_api, slow_log = _api(max_body)
    sep = "&" if "?" in path else "?"
    async with _client(fast_api) as fast, _client(slow_api) as slow:
        a = await fast.post(path, headers={**AUTH, **(headers or {})}, content=body)
        b = await slow.post(f"{path}{sep}qstash_token={TOKEN}", headers=headers or {}, content=body)
    return a, b, _requests(fast_log), _requests(slow_log)


def _shape(body: Any) -> Any:
    """An answer with its generated ids replaced (they differ between the two routes)."""
    if isinstance(body, list):
        return [_shape(item) for item in body]
    if isinstance(body, dict) and "messageId" in body and body["messageId"] != "msg_first":
        return {**body, "messageId": "<id>"}
    return body


async def test_a_publish_is_answered_and_appended_as_by_the_starlette_route() -> None:
    fast, slow, fast_reqs, slow_reqs = await _both(
        f"/v2/publish/{SINK}?x=1",
        headers={"Upstash-Delay": "10s", "Upstash-Forward-Trace": "t", "Content-Type": "text/x"},
    )

    assert (fast.status_code, slow.status_code) == (201, 201)
    assert fast.headers["content-type"] == "application/json"
    assert _shape(fast.json()) == _shape(slow.json()) == {"messageId": "<id>", "url": f"{SINK}?x=1"}
    [a], [b] = fast_reqs, slow_reqs
    assert a.message.message_id == fast.json()["messageId"]
    assert a.message.url == b.message.url == f"{SINK}?x=1"
    assert a.message.not_before == b.message.not_before == 1_700_000_010_000
    assert a.message.header == b.message.header == {"Content-Type": ["text/x"], "Trace": ["t"]}
    assert a.message.body == b.message.body == b"hi"
    assert a.message.caller_ip == b.message.caller_ip


async def test_a_url_group_gets_one_request_per_endpoint_and_an_array() -> None:
    fast, slow, fast_reqs, slow_reqs = await _both("/v2/publish/team")

    assert (fast.status_code, slow.status_code) == (201, 201)
    assert _shape(fast.json()) == _shape(slow.json())
    assert [r["url"] for r in fast.json()] == ["http://127.0.0.1:9/a", SINK]
    assert [r.message.endpoint_name for r in fast_reqs] == ["a", None]
    assert len(slow_reqs) == 2


async def test_a_deduplicated_publish_answers_202_with_the_first_message_id() -> None:
    fast, slow, _, _ = await _both(f"/v2/publish/{SINK}", headers={"Upstash-Deduplication-Id": "d"})

    assert (fast.status_code, slow.status_code) == (202, 202)
    first = {"messageId": "msg_first", "url": SINK, "deduplicated": True}
    assert fast.json() == slow.json() == first


@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "error"),
    [
        (f"/v2/publish/{SINK}", {"Upstash-Delay": "soon"}, b"", 400, "invalid Upstash-Delay"),
        (f"/v2/publish/{SINK}", {}, b"x" * 2000, 413, "message body is larger than 1024 bytes"),
        ("/v2/publish/ftp://h/x", {}, b"", 400, "invalid scheme"),
        ("/v2/publish/nogroup", {}, b"", 404, "url group 'nogroup' not found"),
    ],
)
async def test_refusals_are_the_same(
    path: str, headers: dict[str, str], body: bytes, status: int, error: str
) -> None:
    fast, slow, fast_reqs, slow_reqs = await _both(path, headers=headers, body=body)

    assert fast.status_code == slow.status_code == status
    assert fast.json() == slow.json()
    assert error in fast.json()["error"]
    assert fast_reqs == slow_reqs == []


async def test_no_token_is_401_and_appends_nothing() -> None:
    api, log = _api()
    async with _client(api) as client:
        resp = await client.post(f"/v2/publish/{SINK}", content=b"hi")

    assert resp.status_code == 401
    assert "missing bearer token" in resp.json()["error"]
    assert log.records == []


async def test_other_methods_and_paths_go_on_to_the_router() -> None:
    api, log = _api()
    async with _client(api) as client:
        get = await client.get(f"/v2/publish/{SINK}", headers=AUTH)
        other = await client.post("/v2/other", headers=AUTH)

    assert get.status_code == 405  # the router's answer: the route takes POST only
    assert other.status_code == 404
    assert log.records == []


async def test_a_body_in_chunks_is_joined_and_refused_once_it_passes_the_limit() -> None:
    messages = [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": False},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    assert await receive_body(receive, None, 4) == b"abcd"

    messages[:] = [
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.request", "body": b"de", "more_body": False},
    ]
    with pytest.raises(ApiError, match="larger than 4 bytes"):
        await receive_body(receive, None, 4)
    with pytest.raises(ApiError, match="larger than 4 bytes"):
        await receive_body(receive, "5", 4)  # refused on the declared length, nothing read


async def test_a_caller_gone_before_its_body_is_not_answered() -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    with pytest.raises(ClientGone):
        await receive_body(receive, None, 4)
