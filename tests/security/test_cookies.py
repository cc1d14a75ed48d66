"""A destination's cookies stay with the attempt that received them (real broker, real sender).

The sender shares one HTTP client across every user's deliveries. A client that kept a cookie
jar would send one user's session cookie (set by a destination) with the next delivery to the
same host, whoever published it: QStash forwards exactly the headers the publisher set.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from kafstash.schemas.users import DEV_USERS
from tests.sink import SESSION_COOKIE, Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker


def _publish(stack: Stack, token: str, url: str, headers: dict[str, str] | None = None) -> None:
    resp = httpx.post(
        f"{stack.base_url}/v2/publish/{url}",
        headers={"Authorization": f"Bearer {token}", **(headers or {})},
        content=b"payload",
        timeout=30,
    )
    assert resp.status_code == 201, resp.text


def test_a_destinations_cookie_is_never_sent_with_a_later_delivery(
    stack: Stack, sink: Sink, route: Callable[[str], str]
) -> None:
    # A host name, not 127.0.0.1: clients keep no cookies for IP-literal hosts.
    base = f"http://localhost:{sink.port}"
    setter, mine, theirs, forwarded = (
        route("set-cookie"),
        route("ok") + "-mine",
        route("ok") + "-theirs",
        route("ok") + "-forwarded",
    )
    _publish(stack, stack.token, base + setter)
    [first] = sink.wait_count(setter, 1)
    assert first.answered == 200

    _publish(stack, stack.token, base + mine)
    _publish(stack, DEV_USERS[1].token, base + theirs)
    _publish(stack, stack.token, base + forwarded, {"Upstash-Forward-Cookie": "chosen=1"})
    later = [sink.wait_count(path, 1)[0] for path in (mine, theirs, forwarded)]

    assert [r.headers.get("Cookie") for r in later] == [None, None, "chosen=1"]
    assert all(SESSION_COOKIE not in r.headers.get("Cookie", "") for r in later)
