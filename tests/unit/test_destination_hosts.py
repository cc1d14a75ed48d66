"""A URL whose host is not a host is a 400 wherever kafstash accepts a URL it will call.

The host rules are :func:`kafstash.schemas.addresses.wire_host`; every route reaches them through
``destination.validate_url``. The app runs in-process through httpx's ASGI transport: the check
answers before any Kafka I/O, so no broker is needed (the lifespan is not run).
"""

from __future__ import annotations

import json

import httpx
import pytest

from kafstash.producers.api.app import ApiConfig, create_app
from kafstash.producers.api.destination import rebuild, validate_url
from kafstash.producers.api.errors import ApiError
from kafstash.producers.api.publish import PublishLimits
from kafstash.schemas.addresses import wire_host
from kafstash.schemas.topics import Topics
from kafstash.schemas.users import DEV_USERS

AUTH = {"Authorization": f"Bearer {DEV_USERS[0].token}"}

BAD_HOSTS = {
    "exa%20mple.com": "percent-encoded bytes",
    "exa%2emple.com": "percent-encoded bytes",
    "fe80::1%25eth0": "percent-encoded bytes",  # an IPv6 zone id
    "a..example.com": "empty label",
    ".example.com": "empty label",
    "x" * 64 + ".com": "longer than 63",
    ("a" * 62 + ".") * 4 + "com": "longer than 253",
    "ex$ample.com": "only letters, digits",
    "ex*ample.com": "only letters, digits",
    "-example.com": "begins or ends with '-'",
    "example-.com": "begins or ends with '-'",
    "1.2.3": "must be an IPv4 address",  # inet_aton would read 1.2.0.3
    "0x7f.1": "must be an IPv4 address",  # ... and this one as 127.0.0.1
    "256.1.1.1": "must be an IPv4 address",
    "01.2.3.4": "must be an IPv4 address",  # leading zeros: octal to some parsers
    "::g": "not a valid IPv6 address",
    "\u2603.net": "not a valid internationalised host name",  # a snowman: no IDNA 2008 letter
}

GOOD_HOSTS = {
    "example.com": "example.com",
    "EXAMPLE.com.": "example.com.",  # one trailing dot: a fully qualified name
    "my_service": "my_service",  # compose / k8s service names
    "a-b.c-d.example": "a-b.c-d.example",
    "123.example": "123.example",
    "1.2.3.4": "1.2.3.4",
    "::1": "::1",
    "2606:4700:4700::1111": "2606:4700:4700::1111",
    "b\u00fccher.de": "xn--bcher-kva.de",  # an IDN goes on the wire as punycode
    "xn--bcher-kva.de": "xn--bcher-kva.de",
    "a" * 63 + ".com": "a" * 63 + ".com",
}


@pytest.mark.parametrize(("host", "why"), BAD_HOSTS.items())
def test_wire_host_refuses_what_is_not_a_host(host: str, why: str) -> None:
    with pytest.raises(ValueError, match=r"not a valid|longer than|empty") as info:
        wire_host(host.lower())

    assert why in str(info.value)


@pytest.mark.parametrize(("host", "wire"), GOOD_HOSTS.items())
def test_wire_host_accepts_ip_literals_and_host_names(host: str, wire: str) -> None:
    assert wire_host(host.lower()) == wire


def test_an_idn_destination_is_kept_as_sent_and_checked_as_punycode() -> None:
    # The stored URL is what the caller wrote; aiohttp encodes the host the same way to connect.
    url = "https://b\u00fccher.de/hook"

    assert validate_url(url, allow_private=True) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://exa%20mple.com/x",
        "http://a..b/x",
        "https://-bad.example/",
        "http://1.2.3/",
        "http://[fe80::1%25eth0]:80/",
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
def test_validate_url_refuses_a_bad_host_before_any_dns(url: str, allow_private: bool) -> None:
    with pytest.raises(ApiError) as info:
        validate_url(url, allow_private=allow_private)

    assert info.value.status == 400
    assert str(info.value).startswith("invalid destination url: ")


def test_one_slash_after_the_scheme_is_qstash_compatible_and_means_two() -> None:
    # qstash-api.md §1: proxies and Go's ServeMux collapse "//"; the server repairs the scheme.
    dest = rebuild(b"/v2/publish/http:/127.0.0.1:9911/x", "/v2/publish/", b"")

    assert dest == "http://127.0.0.1:9911/x"
    assert validate_url(dest, allow_private=True) == "http://127.0.0.1:9911/x"


# -- every route that takes a URL ------------------------------------------------------------

BAD = "http://exa%20mple.com/x"


def _client() -> httpx.AsyncClient:
    config = ApiConfig(
        bootstrap="127.0.0.1:1",
        topics=Topics("unit"),
        users=DEV_USERS,
        limits=PublishLimits(),
        allow_private_destinations=True,  # the host check holds without the SSRF check
    )
    app = create_app(config, lambda: 1_700_000_000.0)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


ROUTES: dict[str, tuple[str, dict[str, str], bytes]] = {
    "publish": (f"/v2/publish/{BAD}", {}, b"hi"),
    "enqueue": (f"/v2/enqueue/q1/{BAD}", {}, b"hi"),
    "schedule": (f"/v2/schedules/{BAD}", {"Upstash-Cron": "* * * * *"}, b"hi"),
    "batch": ("/v2/batch", {}, json.dumps([{"destination": BAD, "body": "hi"}]).encode()),
    "url group endpoint": (
        "/v2/topics/g1/endpoints",
        {"Content-Type": "application/json"},
        json.dumps({"endpoints": [{"url": BAD}]}).encode(),
    ),
    "publish callback": ("/v2/publish/https://example.com/", {"Upstash-Callback": BAD}, b"hi"),
    "publish failure callback": (
        "/v2/publish/https://example.com/",
        {"Upstash-Failure-Callback": BAD},
        b"hi",
    ),
    "schedule callback": (
        "/v2/schedules/https://example.com/",
        {"Upstash-Cron": "* * * * *", "Upstash-Callback": BAD},
        b"hi",
    ),
    "enqueue callback": ("/v2/enqueue/q1/https://example.com/", {"Upstash-Callback": BAD}, b"hi"),
}


@pytest.mark.parametrize(("path", "headers", "body"), ROUTES.values(), ids=ROUTES.keys())
async def test_every_route_refuses_a_bad_host_with_qstash_error_json(
    path: str, headers: dict[str, str], body: bytes
) -> None:
    async with _client() as client:
        resp = await client.post(path, headers={**AUTH, **headers}, content=body)

    assert resp.status_code == 400, resp.text
    assert list(resp.json()) == ["error"]
    assert resp.json()["error"].endswith(  # a batch item's error starts with "batch item 0: "
        "invalid destination url: 'exa%20mple.com' is not a valid host: "
        "percent-encoded bytes are not allowed"
    )
