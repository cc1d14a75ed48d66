"""A refused destination is one failed attempt straight to the DLQ; redirects are not followed.

These drive ``Sender._deliver`` (one attempt, no Kafka I/O) against a real HTTP server on
127.0.0.1, so the guard is exercised exactly as in production: through aiohttp's connector.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from kafstash.schemas.addresses import Allowlist
from kafstash.schemas.commands import DeliveryDue, Schedule
from kafstash.schemas.events import MessageEvent
from kafstash.schemas.message import Message
from kafstash.schemas.topics import Topics
from kafstash.schemas.users import DEV_USERS
from kafstash.sinks.http.guard import GuardedResolver
from kafstash.sinks.http.sender import Sender, SenderConfig


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, list[str]]]:
    hits: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        hits.append(request.path)
        if request.path.startswith("/redirect"):
            raise web.HTTPFound("/ok/target")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: int = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield port, hits
    await runner.cleanup()


async def _attempt(url: str, *, allow_private: bool, allowlist: Allowlist) -> list[object]:
    cfg = SenderConfig(
        bootstrap="127.0.0.1:1",
        topics=Topics("unit"),
        group_id="unit",
        users=DEV_USERS,
        allow_private_destinations=allow_private,
        destination_allowlist=allowlist,
    )
    sender = Sender(cfg, clock=lambda: 1_700_000_000.0)
    resolver = GuardedResolver(allow_private=allow_private, allowlist=allowlist)
    sender._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver))
    message = Message(
        message_id="msg_1",
        user_id=DEV_USERS[0].user_id,
        url=url,
        created_at=0,
        not_before=0,
        body=b"hello",
        max_retries=3,
    )
    try:
        records = await sender._deliver(DeliveryDue(message=message, retried=0, due=0))
    finally:
        await sender._http.close()
        await sender._consumer.stop()  # created, never started: only closes its resources
        await sender._producer.stop()
    return [record for _role, _key, record in records]


def _events(records: list[object]) -> list[MessageEvent]:
    return [r for r in records if isinstance(r, MessageEvent)]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_refused_destination_goes_to_the_dlq_without_a_request(
    server: tuple[int, list[str]], host: str
) -> None:
    port, hits = server

    records = await _attempt(
        f"http://{host}:{port}/ok/x", allow_private=False, allowlist=Allowlist()
    )

    events = _events(records)
    assert [e.state for e in events] == ["ACTIVE", "ERROR", "FAILED"]
    assert events[-1].error is not None
    assert events[-1].error.startswith("destination refused: ")
    assert "loopback address" in events[-1].error
    assert not any(isinstance(r, Schedule) for r in records)  # non-retryable
    assert hits == []  # nothing reached the server


async def test_an_allowlisted_destination_is_delivered(server: tuple[int, list[str]]) -> None:
    port, hits = server

    records = await _attempt(
        f"http://127.0.0.1:{port}/ok/x", allow_private=False, allowlist=Allowlist.parse("127.0.0.1")
    )

    assert [e.state for e in _events(records)] == ["ACTIVE", "DELIVERED"]
    assert hits == ["/ok/x"]


async def test_a_redirect_is_a_failed_attempt_and_not_followed(
    server: tuple[int, list[str]],
) -> None:
    port, hits = server

    records = await _attempt(
        f"http://127.0.0.1:{port}/redirect/x", allow_private=True, allowlist=Allowlist()
    )

    events = _events(records)
    assert [e.state for e in events] == ["ACTIVE", "ERROR", "RETRY"]
    assert events[1].response_status == 302
    assert events[1].error == "HTTP 302"
    assert any(isinstance(r, Schedule) for r in records)
    assert hits == ["/redirect/x"]  # /ok/target was never requested
