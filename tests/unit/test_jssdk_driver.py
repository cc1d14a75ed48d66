"""The JS SDK driver (tests/jssdk.py + tests/js/driver.mjs) against a tiny recording server."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest

from tests.jssdk import JsSdk, JsSdkError

pytestmark = pytest.mark.js

TOKEN = "tok_js"
CURRENT_KEY = "sig_a"
NEXT_KEY = "sig_b"
# Real keys are "sig_" + 28 characters: 32 bytes, which pyjwt wants for HS256.
SIGNING_KEY = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
NEXT_SIGNING_KEY = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"


@dataclass
class Recorded:
    request_line: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeQStash:
    base_url: str
    requests: list[Recorded] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _record(self) -> Recorded:
        length = int(self.headers.get("Content-Length") or 0)
        recorded = Recorded(
            request_line=self.requestline,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length),
        )
        self.server.fake.requests.append(recorded)
        return recorded

    def _reply(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        recorded = self._record()
        if recorded.path == "/v2/keys":
            self._reply(200, {"current": CURRENT_KEY, "next": NEXT_KEY})
        else:
            self._reply(404, {"error": "message not found"})

    def do_POST(self) -> None:
        recorded = self._record()
        if recorded.path.startswith("/v2/publish/"):
            self._reply(200, {"messageId": "msg_1"})
        else:
            self._reply(404, {"error": "not found"})

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeQStash


@pytest.fixture
def fake_qstash() -> Iterator[FakeQStash]:
    server = _Server(("127.0.0.1", 0), _Handler)
    host, port = server.server_address[:2]
    server.fake = FakeQStash(base_url=f"http://{host!s}:{port}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_publish_sends_the_destination_raw_in_the_path(fake_qstash: FakeQStash) -> None:
    sdk = JsSdk(fake_qstash.base_url, TOKEN)

    result = sdk.run("publish", url="https://example.com/x?y=1", body="hi")

    assert result["messageId"] == "msg_1"
    [request] = fake_qstash.requests
    assert request.path == "/v2/publish/https://example.com/x?y=1"
    assert request.request_line == "POST /v2/publish/https://example.com/x?y=1 HTTP/1.1"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.body == b"hi"
    assert not any(name.startswith("upstash-telemetry") for name in request.headers)


def test_keys_get_and_http_errors_in_one_node_process(fake_qstash: FakeQStash) -> None:
    sdk = JsSdk(fake_qstash.base_url, TOKEN)

    keys, missing = sdk.seq_envelopes(
        [
            {"op": "keys.get"},
            {"op": "messages.get", "args": {"messageId": "msg_nope"}},
        ]
    )

    assert keys == {"ok": True, "result": {"current": CURRENT_KEY, "next": NEXT_KEY}}
    assert missing["ok"] is False
    assert missing["status"] == 404
    assert [r.request_line for r in fake_qstash.requests] == [
        "GET /v2/keys HTTP/1.1",
        "GET /v2/messages/msg_nope HTTP/1.1",
    ]
    with pytest.raises(JsSdkError) as caught:
        sdk.run("messages.get", messageId="msg_nope")
    assert caught.value.status == 404
    assert "message not found" in caught.value.message


def _sign(body: bytes, url: str, key: str) -> str:
    now = int(time.time())
    body_hash = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode()
    claims = {
        "iss": "Upstash",
        "sub": url,
        "iat": now,
        "exp": now + 300,
        "nbf": 0,
        "jti": "jwt_x",
        "body": body_hash,
    }
    return jwt.encode(claims, key.encode(), algorithm="HS256")


def test_js_receiver_accepts_a_valid_signature_and_rejects_a_changed_body() -> None:
    url = "https://example.com/hook?x=1"
    body = '{"hello":"wörld"}'.encode()
    signature = _sign(body, url, SIGNING_KEY)
    by_next_key = _sign(body, url, NEXT_SIGNING_KEY)
    sdk = JsSdk("http://127.0.0.1:9", TOKEN)  # verify never talks to the server

    results = sdk.verify(
        SIGNING_KEY,
        NEXT_SIGNING_KEY,
        [
            {"signature": signature, "body": body, "url": url},
            {"signature": signature, "body": body + b" ", "url": url},
            {"signature": signature, "body": body, "url": "https://example.com/other"},
            {"signature": by_next_key, "body": body, "url": url},
        ],
    )

    assert results[0] == {"valid": True}
    assert results[1]["valid"] is False
    assert "body hash does not match" in results[1]["error"]
    assert results[2]["valid"] is False
    assert "invalid subject" in results[2]["error"]
    assert results[3] == {"valid": True}
