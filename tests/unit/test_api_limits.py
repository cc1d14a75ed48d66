"""Header limits (431), batch header injection (400) and the rate limit (429) at the API.

The app is driven in-process through httpx's ASGI transport: these answers come before any
Kafka I/O, so no broker is needed (the lifespan that connects to Kafka is not run).
"""

from __future__ import annotations

import httpx
import pytest

from kafstash.producers.api.app import create_app
from kafstash.producers.api.context import ApiConfig
from kafstash.producers.api.limits import header_pairs_problem, headers_problem
from kafstash.producers.api.publish import PublishLimits
from kafstash.schemas.topics import Topics
from kafstash.schemas.users import DEV_USERS

USER = DEV_USERS[0]
AUTH = {"Authorization": f"Bearer {USER.token}"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _client(clock: Clock | None = None, *, rate: float = 0.0, burst: int = 1) -> httpx.AsyncClient:
    config = ApiConfig(
        bootstrap="127.0.0.1:1",
        topics=Topics("unit"),
        users=DEV_USERS,
        limits=PublishLimits(),
        allow_private_destinations=True,
        rate_limit=rate,
        rate_burst=burst,
    )
    app = create_app(config, clock or Clock())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


# -- pure checks -----------------------------------------------------------------------------


def test_headers_within_limits_pass() -> None:
    headers = [(f"upstash-forward-h{i}".encode(), b"v") for i in range(100)]

    assert headers_problem(headers) is None


def test_more_than_100_forwarded_headers_is_a_problem() -> None:
    headers = [(f"Upstash-Forward-H{i}".encode(), b"v") for i in range(101)]

    assert "too many Upstash-Forward-* headers: 101" in (headers_problem(headers) or "")


def test_header_bytes_count_whole_lines() -> None:
    line = len(b"x-big") + 4
    fits = [(b"x-big", b"a" * (16 * 1024 - line))]
    over = [(b"x-big", b"a" * (16 * 1024 - line + 1))]

    assert headers_problem(fits) is None
    assert "request headers too large" in (headers_problem(over) or "")


@pytest.mark.parametrize(
    "pairs",
    [
        [("Upstash-Forward-X", "a\r\nInjected: 1")],
        [("Upstash-Forward-X", "a\nb")],
        [("Upstash-Forward-X", "a\rb")],
        [("Upstash-Forward-X", "a\x00b")],
        [("Upstash-Forward-X\r\nInjected", "1")],
        [("Upstash Forward X", "1")],
        [("Upstash-Forward-X:", "1")],
        [("", "1")],
        [("Upstash-Delay", "1s\r\nX: y")],
    ],
)
def test_json_headers_with_injection_are_problems(pairs: list[tuple[str, str]]) -> None:
    assert header_pairs_problem(pairs) is not None


def test_ordinary_json_headers_pass() -> None:
    pairs = [("Upstash-Forward-Authorization", "Bearer x"), ("Content-Type", "application/json")]

    assert header_pairs_problem(pairs) is None


# -- through the app -------------------------------------------------------------------------


async def test_a_header_flood_is_431_json() -> None:
    headers = {**AUTH, **{f"Upstash-Forward-H{i}": "v" for i in range(101)}}
    async with _client() as client:
        resp = await client.get("/v2/keys", headers=headers)

    assert resp.status_code == 431
    assert resp.json()["error"].startswith("too many Upstash-Forward-* headers")


@pytest.mark.parametrize("size", [17 * 1024, 1024 * 1024])
async def test_one_giant_header_is_431_json(size: int) -> None:
    async with _client() as client:
        resp = await client.get("/v2/keys", headers={**AUTH, "X-Big": "a" * size})

    assert resp.status_code == 431
    assert resp.json()["error"].startswith("request headers too large")


async def test_batch_headers_with_cr_lf_are_400() -> None:
    batch = [
        {"destination": "http://example.com/ok", "headers": {"Upstash-Forward-A": "ok"}},
        {
            "destination": "http://example.com/x",
            "headers": {"Upstash-Forward-Evil": "1\r\nUpstash-Signature: forged"},
        },
    ]
    async with _client() as client:
        resp = await client.post("/v2/batch", headers=AUTH, json=batch)

    assert resp.status_code == 400
    assert resp.json()["error"].startswith("batch item 1: invalid value of header")


async def test_batch_with_too_many_forwarded_headers_is_400() -> None:
    headers = {f"Upstash-Forward-H{i}": "v" for i in range(101)}
    async with _client() as client:
        resp = await client.post(
            "/v2/batch", headers=AUTH, json=[{"destination": "http://e.com/", "headers": headers}]
        )

    assert resp.status_code == 400
    assert "too many Upstash-Forward-* headers" in resp.json()["error"]


async def test_rate_limit_answers_429_with_qstash_headers() -> None:
    clock = Clock()
    async with _client(clock, rate=1.0, burst=2) as client:
        first = await client.get("/v2/keys", headers=AUTH)
        second = await client.get("/v2/keys", headers=AUTH)
        limited = await client.get("/v2/keys", headers=AUTH)
        other_user = await client.get(
            "/v2/keys", headers={"Authorization": f"Bearer {DEV_USERS[1].token}"}
        )
        clock.now += 1.0
        later = await client.get("/v2/keys", headers=AUTH)

    assert [first.status_code, second.status_code] == [200, 200]
    assert limited.status_code == 429
    assert limited.json() == {"error": "too many requests: rate limit exceeded, retry later"}
    assert limited.headers["Burst-RateLimit-Limit"] == "2"
    assert limited.headers["Burst-RateLimit-Remaining"] == "0"
    assert limited.headers["Burst-RateLimit-Reset"] == str(int(clock.now))
    assert limited.headers["Retry-After"] == "1"
    assert "RateLimit-Limit" not in limited.headers  # that one means the daily quota to SDKs
    assert other_user.status_code == 200
    assert later.status_code == 200


async def test_unauthenticated_requests_are_401_not_rate_limited() -> None:
    async with _client(rate=1.0, burst=1) as client:
        answers = [(await client.get("/v2/keys")).status_code for _ in range(3)]

    assert answers == [401, 401, 401]


async def test_no_limit_when_off() -> None:
    async with _client(rate=0.0) as client:
        answers = {(await client.get("/v2/keys", headers=AUTH)).status_code for _ in range(50)}

    assert answers == {200}
