"""``/v2/workflows/hooks/...`` (producers/api/hooks.py): the request description a webhook's
waiter receives, as the JS SDK's ``waitForWebhook`` rebuilds it."""

from __future__ import annotations

import base64
import json

from starlette.requests import Request

from kafstash.producers.api.hooks import describe


def request(
    method: str, raw_path: bytes, query: bytes, headers: list[tuple[bytes, bytes]]
) -> Request:
    return Request(
        {
            "type": "http",
            "method": method,
            "scheme": "http",
            "server": ("127.0.0.1", 8080),
            "path": raw_path.decode(),
            "raw_path": raw_path,
            "query_string": query,
            "headers": headers,
        }
    )


def test_the_description_is_what_the_sdk_rebuilds_a_request_from() -> None:
    path = b"/v2/workflows/hooks/u/wfr_1/evt_x%2Fy"
    got = json.loads(
        describe(
            request(
                "PUT",
                path,
                b"a=1&b=2",
                [
                    (b"host", b"127.0.0.1:8080"),
                    (b"content-type", b"application/json"),
                    (b"content-length", b"7"),
                    (b"x-sig", b"one"),
                    (b"x-sig", b"two"),
                ],
            ),
            b'{"k":1}',
        )
    )
    assert got["method"] == "PUT"
    # The SDK builds `${proto}://${host}${url}`: proto is the scheme, url the raw target.
    assert f"{got['proto']}://{got['host']}{got['url']}" == (
        "http://127.0.0.1:8080/v2/workflows/hooks/u/wfr_1/evt_x%2Fy?a=1&b=2"
    )
    assert got["header"] == {"Content-Type": ["application/json"], "X-Sig": ["one", "two"]}
    assert base64.b64decode(got["body"]) == b'{"k":1}'


def test_a_request_without_query_or_body() -> None:
    got = json.loads(describe(request("GET", b"/h", b"", [(b"host", b"x")]), b""))
    assert (got["url"], got["body"], got["header"]) == ("/h", "", {})
