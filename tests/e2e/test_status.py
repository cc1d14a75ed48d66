"""``kafstash status`` against a running stack: groups, members, lag per stage, the DLQ and the
archive's last commit, from Kafka; exit status 1 once a stage has no member."""

from __future__ import annotations

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
            sink.wait_count("/ok/", 1)

            def healthy() -> subprocess.CompletedProcess[str] | None:
                done = status(stack)
                # Every stage has a member, has caught up, and the archive has committed.
                ok = (
                    done.returncode == 0
                    and "DLQ: 1 messages" in done.stdout
                    and "last commit" in done.stdout
                    and all(cells(done.stdout, f"{p}.{t}")[-2] == "0" for t in ("requests",))
                    and cells(done.stdout, f"{p}.deliveries")[-2] == "0"
                )
                return done if ok else None

            done = wait_until("a healthy status", healthy, timeout=90, every=1)
            assert isinstance(done, subprocess.CompletedProcess)
            for group in (f"{p}-streams", f"{p}-sender", f"{p}-archiver"):
                assert group in done.stdout
            assert cells(done.stdout, f"{p}.deliveries")[-3] == "1"  # one sender member

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
