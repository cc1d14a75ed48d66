"""``?qstash_token=`` authenticates the publish; it never becomes part of the destination."""

from __future__ import annotations

import pytest

from kafstash.producers.api.destination import rebuild

PREFIX = "/v2/publish/"


@pytest.mark.parametrize(
    ("raw_path", "query", "expected"),
    [
        (b"/v2/publish/https://h/p", b"qstash_token=secret", "https://h/p"),
        (b"/v2/publish/https://h/p", b"x=1&qstash_token=secret&y=2", "https://h/p?x=1&y=2"),
        (b"/v2/publish/https://h/p", b"qstash%5Ftoken=secret&y=2", "https://h/p?y=2"),
        (b"/v2/publish/https://h/p", b"qstash_token=a&qstash_token=b", "https://h/p"),
        (b"/v2/publish/https%3A%2F%2Fh%2Fp%3Fq%3D1", b"qstash_token=s&z=1", "https://h/p?q=1&z=1"),
        (b"/v2/publish/https://h/p", b"x=1&&y", "https://h/p?x=1&&y"),  # otherwise unchanged
        (b"/v2/publish/https://h/p", b"my_qstash_token=kept", "https://h/p?my_qstash_token=kept"),
    ],
)
def test_the_token_parameter_is_removed(raw_path: bytes, query: bytes, expected: str) -> None:
    assert rebuild(raw_path, PREFIX, query) == expected
