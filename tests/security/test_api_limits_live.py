"""Limits against the real API process (uvicorn + httptools, as deployed) and the official SDK.

httptools has no header limit of its own: a 1 MiB header reaches the app, which answers 431.
With ``KAFSTASH_RATE_LIMIT`` set, the official Python SDK raises its RateLimitExceededError.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from qstash import QStash
from qstash.errors import RateLimitExceededError

from kafstash.schemas.users import DEV_USERS
from tests.stack import Stack

pytestmark = pytest.mark.broker


@pytest.fixture
def limited(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    with Stack(
        kafka_bootstrap, tmp_path, env={"KAFSTASH_RATE_LIMIT": "0.2", "KAFSTASH_RATE_BURST": "3"}
    ) as s:
        yield s


def _raw(stack: Stack, head: bytes) -> bytes:
    """Send one raw HTTP/1.1 request head and return the whole answer."""
    with socket.create_connection(("127.0.0.1", stack.api_port), timeout=30) as conn:
        conn.sendall(head)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "extra",
    [
        b"".join(b"Upstash-Forward-H%d: v\r\n" % i for i in range(101)),
        b"X-Big: " + b"a" * (17 * 1024) + b"\r\n",
        b"X-Big: " + b"a" * (1024 * 1024) + b"\r\n",
        b"".join(b"X-H%d: %s\r\n" % (i, b"a" * 100) for i in range(2000)),
    ],
    ids=["101-forwarded", "17KiB-header", "1MiB-header", "2000-headers"],
)
def test_oversized_headers_are_431_json_never_5xx(limited: Stack, extra: bytes) -> None:
    head = (
        b"POST /v2/publish/https://example.com/ HTTP/1.1\r\nHost: api\r\n"
        b"Authorization: Bearer " + limited.token.encode() + b"\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n" + extra + b"\r\n"
    )

    answer = _raw(limited, head)

    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 431"), answer[:300]
    assert b"application/json" in rest.lower()
    assert b'{"error":' in rest


def test_the_official_sdk_raises_rate_limit_exceeded(limited: Stack) -> None:
    client = QStash(limited.token, base_url=limited.base_url)
    try:
        for _ in range(3):  # the burst
            client.signing_key.get()
        with pytest.raises(RateLimitExceededError) as info:
            client.signing_key.get()
    finally:
        client.http._client.close()  # the SDK has no public close()

    assert info.value.limit == "3"
    assert info.value.remaining == "0"
    assert info.value.reset is not None
    assert int(info.value.reset) > 1_600_000_000  # a Unix time


def test_every_endpoint_is_limited_per_token(limited: Stack) -> None:
    other = DEV_USERS[1].token
    with httpx.Client(base_url=limited.base_url, timeout=30) as http:
        mine = {"Authorization": f"Bearer {limited.token}"}
        answers = [
            http.get("/v2/messages/msg_none", headers=mine).status_code,
            http.delete("/v2/messages/msg_none", headers=mine).status_code,
            http.post("/v2/batch", headers=mine, json=[]).status_code,
            http.post("/v2/publish/https://example.com/", headers=mine).status_code,
        ]
        theirs = http.get("/v2/keys", headers={"Authorization": f"Bearer {other}"})
        health = http.get("/healthz")

    assert answers == [404, 404, 400, 429]
    assert theirs.status_code == 200  # another token has its own bucket
    assert health.status_code == 200  # no token, no bucket
