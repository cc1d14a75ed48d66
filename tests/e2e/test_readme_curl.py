"""The README's curl examples, run as written against a real stack.

The block is read from README.md (the ``bash`` block that starts ``export QSTASH_URL=``), so an
edit to the README is an edit to this test. Only two things are swapped: ``QSTASH_URL`` points at
the test's stack, and ``127.0.0.1:3000`` (the reader's own server) at the test's sink.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from kafstash.schemas.users import DEV_USERS
from tests.sink import Receipt, Sink
from tests.stack import Stack

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]

README = Path(__file__).resolve().parents[2] / "README.md"
YOUR_SERVER = "127.0.0.1:3000"


def readme_curl_block() -> tuple[dict[str, str], list[str]]:
    """The block's exported variables and its commands (continuation lines joined)."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL)
    [block] = [b for b in blocks if b.startswith("export QSTASH_URL=")]
    exports: dict[str, str] = {}
    commands: list[str] = []
    pending = ""
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.startswith("export "):
            exports.update(item.split("=", 1) for item in shlex.split(line)[1:])  # type: ignore[arg-type]
            continue
        pending += line.removesuffix("\\").strip() + " "
        if not line.endswith("\\"):
            commands.append(pending.strip())
            pending = ""
    assert not pending, "a continued line at the end of the block"
    return exports, commands


def test_the_block_uses_the_dev_credentials() -> None:
    exports, commands = readme_curl_block()

    assert exports == {"QSTASH_URL": "http://127.0.0.1:8080", "QSTASH_TOKEN": DEV_USERS[0].token}
    assert [re.findall(r"\$QSTASH_URL/v2/(\w+)", c) for c in commands] == [
        ["publish"],
        ["schedules"],
        ["publish"],
        ["dlq"],
    ]


def _run(command: str, env: dict[str, str]) -> Any:
    done = subprocess.run(
        ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, (command, done.stderr)
    return json.loads(done.stdout)


def test_the_readme_curl_examples_work_as_written(stack: Stack) -> None:
    _, commands = readme_curl_block()
    env = {**os.environ, "QSTASH_URL": stack.base_url, "QSTASH_TOKEN": stack.token}
    publish, schedule, publish_down, dlq = commands
    user = stack.user
    with Sink(user.current_signing_key, user.next_signing_key) as sink:
        here = f"127.0.0.1:{sink.port}"
        sent_at = time.monotonic()
        published = _run(publish.replace(YOUR_SERVER, here), env)
        assert published == {"messageId": published["messageId"], "url": sink.url("/hook")}

        scheduled = _run(schedule.replace(YOUR_SERVER, here), env)
        assert set(scheduled) == {"scheduleId"}, scheduled
        auth = {"Authorization": f"Bearer {stack.token}"}
        got = httpx.get(f"{stack.base_url}/v2/schedules/{scheduled['scheduleId']}", headers=auth)
        assert got.json()["cron"] == "* * * * *"
        assert got.json()["destination"] == sink.url("/hook")

        lost = _run(publish_down, env)
        assert lost["url"] == "http://127.0.0.1:1/down", lost

        # The schedule may tick into /hook too: pick the publish's delivery by its body.
        def the_publish(got: list[Receipt]) -> bool:
            return any(r.body == b'{"hi": 1}' for r in got)

        [hook] = [r for r in sink.wait_for("/hook", the_publish, 60) if r.body == b'{"hi": 1}']
        assert hook.message_id == published["messageId"]
        assert hook.signature_ok, hook.signature_error
        assert hook.headers.get("Content-Type") == "application/json"
        assert time.monotonic() - sent_at >= 9.5  # Upstash-Delay: 10s

        deadline = time.monotonic() + 60
        while True:
            entries = _run(dlq, env)["messages"]
            if any(e["messageId"] == lost["messageId"] for e in entries):
                break
            assert time.monotonic() < deadline, entries
            time.sleep(0.5)
        httpx.delete(f"{stack.base_url}/v2/schedules/{scheduled['scheduleId']}", headers=auth)
