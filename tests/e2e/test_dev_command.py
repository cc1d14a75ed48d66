"""The README's first command: `kafstash dev` brings up its own broker, the API and the workers;
the JS SDK's QSTASH_DEV mode finds it, deliveries are signed, and SIGTERM stops everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kafstash.schemas.users import DEV_USERS
from tests.jssdk import JsSdk
from tests.sink import Sink
from tests.stack import free_port

pytestmark = [pytest.mark.broker, pytest.mark.js]


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "KAFSTASH_"))}
    log = tmp_path / "dev.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kafstash", "dev", "--home", str(tmp_path / "home"),
             "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
    try:
        yield proc, port, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _wait_ready(proc: subprocess.Popen[str], port: int, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        text = log.read_text()
        if "streams ready" in text and "sender ready" in text:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
        time.sleep(0.2)
    raise AssertionError(f"kafstash dev not ready:\n{log.read_text()}")


def test_kafstash_dev_serves_the_sdks_and_stops_cleanly(
    dev: tuple[subprocess.Popen[str], int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    proc, port, log = dev
    _wait_ready(proc, port, log)
    text = log.read_text()
    user = DEV_USERS[0]
    assert f'QSTASH_URL="http://127.0.0.1:{port}"' in text
    assert f'QSTASH_TOKEN="{user.token}"' in text
    assert f'QSTASH_CURRENT_SIGNING_KEY="{user.current_signing_key}"' in text
    for component in ("kafka broker ready", "topics ready", "api ready", "streams ready"):
        assert component in text

    sink = Sink(user.current_signing_key, user.next_signing_key)
    sink.start()
    try:
        # QSTASH_DEV mode ignores baseUrl and token: it finds the server by GET /v2/keys on
        # 127.0.0.1:QSTASH_DEV_PORT and must see exactly the dev keys.
        monkeypatch.setenv("QSTASH_DEV_PORT", str(port))
        js = JsSdk("http://ignored.invalid", "ignored", client_options={"devMode": True})
        res = js.run("publish", url=sink.url("/ok/dev-mode"), body="from js dev mode")
        [got] = sink.wait_count("/ok/dev-mode", 1, timeout=60)
        assert got.message_id == res["messageId"]
        assert got.body == b"from js dev mode"
        assert got.signature_ok, got.signature_error
    finally:
        sink.stop()

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    broker_pid = int(text.split("(pid ")[1].split(")")[0])
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.kill(broker_pid, 0)
