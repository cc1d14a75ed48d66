"""``kafstash status`` against a running stack: groups, members, lag per stage, the delayed
messages waiting, the DLQ and the archive's last commit, from Kafka; exit status 1 once a stage
has no member."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.security.helpers import wait_until
from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker


def status(stack: Stack) -> subprocess.CompletedProcess[str]:
    env = {**stack.env, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "kafstash", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|[@-_])")


def read_until(terminal: int, text: str | None, timeout: float) -> str:
    """What a pty shows (escape sequences removed) until ``text`` appears, or until the process
    on its other end has exited (``text=None``)."""
    deadline = time.monotonic() + timeout
    raw = b""
    while time.monotonic() < deadline:
        shown = ANSI.sub("", raw.decode(errors="replace"))
        if text is not None and text in shown:
            return shown
        if select.select([terminal], [], [], 0.2)[0]:
            try:
                chunk = os.read(terminal, 65536)
            except OSError:  # EIO: the other end is closed
                chunk = b""
            if not chunk:
                return ANSI.sub("", raw.decode(errors="replace"))
            raw += chunk
    raise AssertionError(f"no {text!r} on the terminal after {timeout}s:\n{raw[-2000:]!r}")


def cells(out: str, topic: str) -> list[str]:
    line = next(line for line in out.splitlines() if f" {topic} " in line)
    return [c.strip() for c in line.split("│")][1:-1]


def test_status_shows_each_stage_and_fails_when_one_has_no_member(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with Stack(kafka_bootstrap, tmp_path, env={"KAFSTASH_ARCHIVE_INTERVAL": "1"}) as stack:
        stack.start_role("archiver")
        keys = (stack.user.current_signing_key, stack.user.next_signing_key)
        p = stack.prefix
        with Sink(*keys) as sink, httpx.Client(base_url=stack.base_url, timeout=30) as http:
            auth = {"Authorization": f"Bearer {stack.token}"}
            for path, retries in (("/ok/1", "3"), ("/status/500", "0")):
                r = http.post(
                    f"/v2/publish/{sink.url(path)}",
                    headers={**auth, "Upstash-Retries": retries},
                    content=b"x",
                )
                assert r.status_code == 201, r.text
            # Two delayed messages wait: the status names the oldest and the next due.
            for delay in ("600s", "300s"):
                r = http.post(
                    f"/v2/publish/{sink.url('/ok/delayed')}",
                    headers={**auth, "Upstash-Delay": delay},
                    content=b"x",
                )
                assert r.status_code == 201, r.text
                time.sleep(1.5)  # the first is the oldest by a second at least
            sink.wait_count("/ok/", 1)

            def healthy() -> subprocess.CompletedProcess[str] | None:
                done = status(stack)
                # Every stage has a member, has caught up, and the archive has committed.
                ok = (
                    done.returncode == 0
                    and "DLQ: 1 messages" in done.stdout
                    and "delayed: 2 messages waiting" in done.stdout
                    and "last commit" in done.stdout
                    and all(
                        cells(done.stdout, f"{p}.{t}")[-2] == "0"
                        for t in ("requests", "table-requests")
                    )
                    and cells(done.stdout, f"{p}.deliveries")[-2] == "0"
                )
                return done if ok else None

            done = wait_until("a healthy status", healthy, timeout=90, every=1)
            assert isinstance(done, subprocess.CompletedProcess)
            for group in (f"{p}-streams-intake", f"{p}-streams", f"{p}-sender", f"{p}-archiver"):
                assert group in done.stdout
            assert cells(done.stdout, f"{p}.deliveries")[-3] == "1"  # one sender member
            delayed = re.search(
                r"delayed: 2 messages waiting, the oldest published (\d+)([sm]) ago, "
                r"the next due in (\d+)([sm])",
                done.stdout,
            )
            assert delayed, done.stdout
            oldest = int(delayed[1]) * {"s": 1, "m": 60}[delayed[2]]
            next_due = int(delayed[3]) * {"s": 1, "m": 60}[delayed[4]]
            assert 2 <= oldest <= 180  # an age: the 600 s one was published seconds ago
            assert 150 <= next_due <= 300  # the 300 s one (shown in minutes: 3m to 5m)

            # No sender: the deliveries wait, and the command says so with its exit status.
            stack.kill("sender")
            for i in range(3):
                r = http.post(f"/v2/publish/{sink.url(f'/ok/late{i}')}", headers=auth, content=b"x")
                assert r.status_code == 201, r.text
            time.sleep(2)

            def stalled() -> subprocess.CompletedProcess[str] | None:
                done = status(stack)
                return done if done.returncode == 1 else None

            done = wait_until("the sender's group to empty", stalled, timeout=60, every=1)
            assert isinstance(done, subprocess.CompletedProcess)
            assert "no members: sender" in done.stdout
            row = cells(done.stdout, f"{p}.deliveries")
            assert row[-3] == "0"
            assert int(row[-2]) == 3
            assert row[-1] != "0s"

            # --watch refreshes until Ctrl-C, then exits with the last reading's status. On a
            # terminal (a pty) it draws every reading as it comes, so Ctrl-C follows the first
            # reading that shows the stalled stage (start-up takes seconds on a loaded machine).
            terminal, child_end = pty.openpty()
            with subprocess.Popen(
                [sys.executable, "-m", "kafstash", "status", "--watch", "--interval", "0.5"],
                env={**stack.env, "COLUMNS": "200", "LINES": "200"},
                stdout=child_end,
                stderr=subprocess.PIPE,
                text=True,
            ) as watch:
                os.close(child_end)
                try:
                    drawn = read_until(terminal, "no members: sender", timeout=60)
                    assert "no members: sender" in drawn, drawn
                    watch.send_signal(signal.SIGINT)
                    after = read_until(terminal, None, timeout=30)  # to its exit
                    _, err = watch.communicate(timeout=30)
                finally:
                    os.close(terminal)
                    if watch.poll() is None:
                        watch.kill()
            assert watch.returncode == 1, err
            last_frame = after.rsplit("kafstash status", 1)[-1]  # each reading opens with it
            assert "no members: sender" in last_frame, after
