"""``kafstash status`` against a running stack: groups, members, lag per stage, the delayed
messages waiting, the DLQ and the archive's last commit, from Kafka; exit status 1 once a stage
has no member."""

from __future__ import annotations

import re
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

            # --watch refreshes until Ctrl-C, then exits with the last reading's status.
            watch = subprocess.Popen(
                [sys.executable, "-m", "kafstash", "status", "--watch", "--interval", "0.5"],
                env={**stack.env, "COLUMNS": "200"},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            time.sleep(15)  # start-up and a first reading take seconds on a loaded machine
            watch.send_signal(signal.SIGINT)
            out, err = watch.communicate(timeout=30)
            assert watch.returncode == 1, err
            assert "no members: sender" in out
