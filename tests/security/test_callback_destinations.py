"""Callback URLs and URL-group endpoints get the destinations' SSRF rules (guard on).

A callback is a message the server itself will send later, so a private callback URL must be
refused at publish time, with nothing stored, exactly like a private destination.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker

GUARDED = {
    "KAFSTASH_ALLOW_PRIVATE_DESTINATIONS": "false",
    "KAFSTASH_DESTINATION_ALLOWLIST": "127.0.0.1/32",
}


@pytest.fixture
def guarded(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    with Stack(kafka_bootstrap, tmp_path, env=GUARDED) as s:
        yield s


def test_private_callbacks_and_endpoints_are_refused(guarded: Stack) -> None:
    with (
        Sink(
            current_key=guarded.user.current_signing_key, next_key=guarded.user.next_signing_key
        ) as sink,
        httpx.Client(
            base_url=guarded.base_url,
            headers={"Authorization": f"Bearer {guarded.token}"},
            timeout=30,
        ) as http,
    ):
        dest = sink.url("/ok/guarded")
        for header in ("Upstash-Callback", "Upstash-Failure-Callback"):
            for url in ("http://169.254.169.254/latest/", "http://10.0.0.1/", "http://127.0.0.2/"):
                r = http.post(f"/v2/publish/{dest}", headers={header: url}, content=b"x")
                assert r.status_code == 400, (header, url, r.text)
                assert "private" in r.json()["error"]
        r = http.post(
            "/v2/batch",
            json=[{"destination": dest, "headers": {"Upstash-Callback": "http://10.0.0.1/"}}],
        )
        assert r.status_code == 400
        r = http.post("/v2/topics/g/endpoints", json={"endpoints": [{"url": "http://10.0.0.1/"}]})
        assert r.status_code == 400
        assert http.get("/v2/topics").json() == []
        # The allowlisted sink is fine as a callback, and nothing refused was ever sent.
        r = http.post(
            f"/v2/publish/{dest}", headers={"Upstash-Callback": sink.url("/ok/cb")}, content=b"y"
        )
        assert r.status_code == 201
        [cb] = sink.wait_count("/ok/cb", 1)
        assert cb.signature_ok, cb.signature_error
        time.sleep(1)
        assert [r.body for r in sink.received("/ok/guarded")] == [b"y"]
