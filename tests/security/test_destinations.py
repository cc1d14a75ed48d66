"""SSRF and delivery headers on the real broker, with the guard on (no private destinations).

The stack runs as in production (``KAFSTASH_ALLOW_PRIVATE_DESTINATIONS=false``) with only the
sink's address on the allowlist. The guard is checked at every attempt, not only at publish: a
message accepted while its destination was allowed is refused by the sender once it no longer is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.security.helpers import RecordingSink, events, wait_until
from tests.stack import Stack

pytestmark = pytest.mark.broker

GUARDED = {
    "KAFSTASH_ALLOW_PRIVATE_DESTINATIONS": "false",
    "KAFSTASH_DESTINATION_ALLOWLIST": "127.0.0.1/32",
}


@pytest.fixture(scope="module")
def guarded(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # One guarded stack for the module: every test uses its own destinations and routes.
    with Stack(kafka_bootstrap, tmp_path_factory.mktemp("guarded"), env=GUARDED) as s:
        yield s


@pytest.fixture
def rsink(guarded: Stack) -> Iterator[RecordingSink]:
    s = RecordingSink(
        current_key=guarded.user.current_signing_key, next_key=guarded.user.next_signing_key
    )
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _publish(stack: Stack, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}/v2/publish/{url}",
        headers={"Authorization": f"Bearer {stack.token}", **(headers or {})},
        content=b"payload",
        timeout=30,
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.2]/",
        "http://100.64.0.1/",
        "http://127.0.0.2/",  # loopback, but outside the allowlisted 127.0.0.1/32
    ],
)
def test_publish_refuses_private_destinations(guarded: Stack, url: str) -> None:
    resp = _publish(guarded, url)

    assert resp.status_code == 400
    assert "private or loopback" in resp.json()["error"]


BAD_HOSTS = [
    "http://exa%20mple.com/x",
    "http://a..example.com/",
    "http://1.2.3/",
    "http://-x.example/",
]


@pytest.mark.parametrize("url", BAD_HOSTS)
def test_publish_refuses_a_host_that_is_not_one(guarded: Stack, url: str) -> None:
    # Accepted, it would fail every attempt with a DNS error and end in the DLQ ("1.2.3" would
    # even resolve, as inet_aton's 1.2.0.3).
    resp = _publish(guarded, url)

    assert resp.status_code == 400
    assert resp.json()["error"].startswith("invalid destination url: "), resp.text
    assert "not a valid" in resp.json()["error"], resp.text


def test_a_host_that_is_not_one_is_refused_with_private_destinations_allowed(
    stack: Stack,
) -> None:
    # The dev-mode stack skips the SSRF check and its DNS lookup: only the host rules stand
    # between these URLs and a 201 (the issue's `kafstash dev` case).
    for url in BAD_HOSTS:
        resp = _publish(stack, url)

        assert resp.status_code == 400, (url, resp.text)
        assert "not a valid" in resp.json()["error"], resp.text


def test_one_slash_after_the_scheme_is_delivered_as_two(
    guarded: Stack, rsink: RecordingSink, route: Callable[[str], str]
) -> None:
    # QStash-compatible (qstash-api.md §1): a proxy that collapsed "//" does not lose the message.
    path = route("ok")
    url = rsink.url(path)
    assert url.startswith("http://")
    resp = _publish(guarded, "http:/" + url.removeprefix("http://"))
    assert resp.status_code == 201, resp.text

    [got] = rsink.wait_count(path, 1, timeout=90)

    assert got.message_id == resp.json()["messageId"]
    assert got.signature_ok, got.signature_error


def test_users_cannot_override_kafstash_delivery_headers(
    guarded: Stack, rsink: RecordingSink, route: Callable[[str], str]
) -> None:
    path = route("ok")
    forged = {
        "Upstash-Forward-Upstash-Message-Id": "msg_forged",
        "Upstash-Forward-Upstash-Signature": "forged.jwt.value",
        "Upstash-Forward-Upstash-Retried": "99",
        "Upstash-Forward-User-Agent": "forged-agent",
        "Upstash-Forward-Upstash-Caller-Ip": "6.6.6.6",
        "Upstash-Forward-upstash-message-id": "msg_forged_lower",
        "Upstash-Forward-My-Header": "mine",
    }
    resp = _publish(guarded, rsink.url(path), forged)
    assert resp.status_code == 201, resp.text
    message_id = resp.json()["messageId"]

    [got] = rsink.wait_count(path, 1, timeout=90)

    assert got.signature_ok, got.signature_error
    raw = rsink.raw_headers[path]

    def values(name: str) -> list[str]:
        return [v for k, v in raw if k.lower() == name.lower()]

    assert values("Upstash-Message-Id") == [message_id]
    assert values("Upstash-Retried") == ["0"]
    assert values("User-Agent") == ["Upstash-QStash"]
    assert len(values("Upstash-Signature")) == 1
    assert "forged" not in values("Upstash-Signature")[0]
    assert values("Upstash-Caller-Ip") != ["6.6.6.6"]
    assert values("My-Header") == ["mine"]  # ordinary forwarding still works


def test_a_redirect_is_a_failed_attempt_and_is_not_followed(
    guarded: Stack, rsink: RecordingSink, route: Callable[[str], str]
) -> None:
    path = "/redirect" + route("r")
    resp = _publish(guarded, rsink.url(path), {"Upstash-Retries": "0"})
    assert resp.status_code == 201, resp.text
    message_id = resp.json()["messageId"]

    rsink.wait_count(path, 1, timeout=90)
    failed = wait_until(
        "the FAILED event",
        lambda: [
            e
            for e in events(guarded.bootstrap, guarded.prefix)
            if e.message_id == message_id and e.state == "FAILED"
        ],
    )

    assert isinstance(failed, list)
    assert "HTTP 302" in (failed[0].error or "")
    assert len(rsink.received(path)) == 1
    assert rsink.received("/ok/redirect-target") == []  # never followed


def test_the_guard_runs_at_every_attempt_not_only_at_publish(
    guarded: Stack, rsink: RecordingSink, route: Callable[[str], str]
) -> None:
    path = route("ok")
    # Accepted while 127.0.0.1 is allowlisted; due after the sender lost the allowlist.
    resp = _publish(guarded, rsink.url(path), {"Upstash-Delay": "15s"})
    assert resp.status_code == 201, resp.text
    message_id = resp.json()["messageId"]

    guarded.env["KAFSTASH_DESTINATION_ALLOWLIST"] = ""
    guarded.restart("sender")

    failed = wait_until(
        "the FAILED event",
        lambda: [
            e
            for e in events(guarded.bootstrap, guarded.prefix)
            if e.message_id == message_id and e.state == "FAILED"
        ],
        timeout=150,
    )

    assert isinstance(failed, list)
    assert failed[0].error == "destination refused: loopback address 127.0.0.1"
    assert failed[0].retried == 0  # non-retryable: no further attempts
    states = [
        e.state for e in events(guarded.bootstrap, guarded.prefix) if e.message_id == message_id
    ]
    assert "RETRY" not in states
    assert rsink.received(path) == []  # nothing ever reached the destination
