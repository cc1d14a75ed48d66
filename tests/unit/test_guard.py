"""The sender's SSRF guard: the resolver hands aiohttp only checked addresses."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from kafstash.schemas.addresses import Allowlist
from kafstash.sinks.http.guard import (
    DestinationRefused,
    GuardedResolver,
    refusal_for_url,
    refusal_of,
)

NONE = Allowlist()


class FakeResolver(AbstractResolver):
    """Answers from a table, like a DNS server that an attacker controls."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append(host)
        return [
            ResolveResult(
                hostname=host,
                host=ip,
                port=port,
                family=socket.AF_INET6 if ":" in ip else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for ip in self.table[host]
        ]

    async def close(self) -> None:
        pass


async def test_public_answers_pass_through_unchanged() -> None:
    inner = FakeResolver({"pub.example": ["93.184.216.34", "2606:4700:4700::1111"]})
    guard = GuardedResolver(allow_private=False, allowlist=NONE, inner=inner)

    got = await guard.resolve("pub.example", 443)

    assert [r["host"] for r in got] == ["93.184.216.34", "2606:4700:4700::1111"]
    assert all(r["port"] == 443 for r in got)


@pytest.mark.parametrize(
    "answer", [["127.0.0.1"], ["169.254.169.254"], ["93.184.216.34", "10.0.0.1"], ["::ffff:7f00:1"]]
)
async def test_any_refused_answer_refuses_the_destination(answer: list[str]) -> None:
    guard = GuardedResolver(
        allow_private=False, allowlist=NONE, inner=FakeResolver({"evil.example": answer})
    )

    with pytest.raises(DestinationRefused) as info:
        await guard.resolve("evil.example", 80)

    assert info.value.reason.startswith("evil.example resolves to ")


async def test_rebinding_is_checked_at_every_resolution() -> None:
    inner = FakeResolver({"rebind.example": ["93.184.216.34"]})
    guard = GuardedResolver(allow_private=False, allowlist=NONE, inner=inner)
    assert await guard.resolve("rebind.example", 80)

    inner.table["rebind.example"] = ["127.0.0.1"]  # the attacker's DNS flips after a check

    with pytest.raises(DestinationRefused):
        await guard.resolve("rebind.example", 80)


async def test_allow_private_and_allowlist() -> None:
    inner = FakeResolver({"svc.local": ["10.0.0.7"], "db.local": ["10.9.0.1"]})

    opened = GuardedResolver(allow_private=True, allowlist=NONE, inner=inner)
    assert await opened.resolve("db.local", 80)
    listed = GuardedResolver(
        allow_private=False, allowlist=Allowlist.parse("svc.local, 10.9.0.0/16"), inner=inner
    )
    assert await listed.resolve("svc.local", 80)
    assert await listed.resolve("db.local", 80)


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://127.0.0.1:9/x", True),
        ("http://[::1]/", True),
        ("http://[::ffff:169.254.169.254]/", True),
        ("http://169.254.169.254/latest/meta-data", True),
        ("http://93.184.216.34/", False),
        ("http://localhost/", False),  # a name: the resolver's job
        ("http://[not-an-ip/", False),  # aiohttp refuses the URL itself
    ],
)
def test_ip_literals_are_checked_before_the_request(url: str, refused: bool) -> None:
    reason = refusal_for_url(url, allow_private=False, allowlist=NONE)

    assert (reason is not None) is refused


def test_refusal_of_unwraps_aiohttp_errors() -> None:
    refused = DestinationRefused("loopback address 127.0.0.1")
    conn_key = object()
    wrapped = aiohttp.ClientConnectorDNSError(conn_key, refused)  # type: ignore[arg-type]

    assert refusal_of(refused) == "loopback address 127.0.0.1"
    assert refusal_of(wrapped) == "loopback address 127.0.0.1"
    assert refusal_of(aiohttp.ClientConnectionError("reset")) is None


@pytest.fixture
async def local_server() -> AsyncIterator[int]:
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="reached")

    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: int = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield port
    await runner.cleanup()


async def _get(url: str, *, allowlist: Allowlist) -> str:
    resolver = GuardedResolver(allow_private=False, allowlist=allowlist)
    connector = aiohttp.TCPConnector(resolver=resolver)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp,
    ):
        return await resp.text()


async def test_a_real_session_never_connects_to_a_refused_name(local_server: int) -> None:
    with pytest.raises(aiohttp.ClientConnectorError) as info:
        await _get(f"http://localhost:{local_server}/", allowlist=NONE)

    assert refusal_of(info.value) is not None
    assert "loopback" in (refusal_of(info.value) or "")


async def test_a_real_session_connects_to_an_allowlisted_name(local_server: int) -> None:
    allow = Allowlist.parse("localhost")

    assert await _get(f"http://localhost:{local_server}/", allowlist=allow) == "reached"
