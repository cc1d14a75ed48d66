"""kill -9 mid-run of Upstash Workflow runs, through the official JS SDK (issue 11, item 6).

The endpoint is tests/wf_js/server.mjs (``@upstash/workflow`` 1.3.3, signatures verified); runs
start with the SDK's ``Client.trigger``. Each step body appends a record when it starts, and
every request the endpoint gets is recorded with its body (the history kafstash delivered).

- A: N runs of /wf/slow-steps (3 steps, each holding HOLD_MS); the stream workers are killed
  while the runs are between steps, their local state is deleted, and they are restarted: every
  run's table row can only come back from Kafka.
- B: the same, with the sender killed while step deliveries are in flight (a step body is
  running in the endpoint, its answer has nowhere to go).
- C: /wf/long-sleep sleeps 10 s; while it sleeps, api, streams and sender are all killed and
  restarted.

The ledger rule for a workflow: every run reaches RUN_SUCCESS with its right result, every step
body ran at least once, and each step is recorded once in the run's history — in the history
the server keeps (the run's log) and in every history it delivered to the SDK.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.stack import Stack
from tests.workflow_sdk import (
    Records,
    WorkflowClient,
    WorkflowServer,
    js_server,
    run_logs,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.js]

N = 10
HOLD_MS = 800
STEPS = ("s1", "s2", "s3")
START = 40
# A restarted role rejoins its group once its dead predecessor's session expires (~10 s), then
# restores its tables: the runs finish well within this on a busy machine.
FINISH_S = 120.0
SLEEP_S = 10  # /wf/long-sleep's context.sleep


@pytest.fixture
def records(tmp_path: Path) -> Records:
    return Records(tmp_path / "records.jsonl")


@pytest.fixture
def server(stack: Stack, records: Records, tmp_path: Path) -> Iterator[WorkflowServer]:
    with js_server(stack, records.path, tmp_path) as s:
        yield s


@pytest.fixture
def client(stack: Stack) -> WorkflowClient:
    return WorkflowClient(stack.base_url, stack.token)


# ====================================================================================== helpers


def step_keys(history: list[dict[str, Any]]) -> list[tuple[int, int | None]]:
    """The (stepId, targetStep) of each step result in a delivered or logged history — the
    identity under which the SDK deduplicates steps. Element 0 is the initial payload."""
    keys = []
    for entry in history[1:]:
        if entry.get("callType", "step") != "step":
            continue
        step = json.loads(base64.b64decode(entry["body"]))
        keys.append((step["stepId"], step.get("targetStep")))
    return keys


def delivered(records: Records, run: str) -> list[list[dict[str, Any]]]:
    """Every history kafstash delivered to the endpoint for ``run``, in arrival order."""
    out = []
    for r in records.all():
        if r.get("event") != "request" or r["headers"].get("upstash-workflow-runid") != run:
            continue
        body = json.loads(r["body"])
        if isinstance(body, list):  # the first call carries the raw payload
            out.append(body)
    return out


def wait_all(stack: Stack, runs: list[str], state: str) -> dict[str, dict[str, Any]]:
    """Each run's log once ``GET /v2/workflows/events`` shows every run in ``state``."""
    logs: dict[str, dict[str, Any]] = {}

    def probe() -> bool:
        for run in runs:
            if run in logs:
                continue
            log = run_logs(stack, run)
            assert log is not None, f"no log of {run} yet"
            assert log["workflowState"] == state, f"{run} last seen {log['workflowState']}"
            logs[run] = log
        return True

    wait_until(probe, f"{len(runs)} runs in {state}", FINISH_S, interval=0.5)
    return logs


def assert_recorded_once(records: Records, client: WorkflowClient, runs: list[str]) -> int:
    """The ledger rule for ``runs`` (all ended); returns the most times one step body ran.

    Running a body again is allowed (at least once): the SDK does not dedupe deliveries on their
    message id, so every delivery a killed role replays runs its step again. Its second result
    must not join the history (streams/workflow.py), and the run must not move on twice."""
    by_sdk = {r["workflowRunId"]: r for r in client.run("logs", count=10 * len(runs))["runs"]}
    most = 0
    for run in runs:
        log = by_sdk[run]
        assert log["workflowState"] == "RUN_SUCCESS", log
        assert json.loads(log["workflowRunResponse"]) == START + len(STEPS)
        counts = records.counts(run)
        assert set(counts) == set(STEPS), f"{run} ran {counts}"
        most = max(most, *counts.values())
        # The server's history: each step once, in order.
        logged = [s["stepName"] for group in log["steps"] for s in group["steps"]]
        assert logged == list(STEPS), f"{run}: the run's history holds {logged}"
        # What the SDK was handed: no delivery ever carried a step twice.
        histories = delivered(records, run)
        assert histories, f"no delivery of {run} recorded"
        for history in histories:
            keys = step_keys(history)
            assert len(keys) == len(set(keys)), f"{run}: delivered a step twice: {keys}"
        # Its last call (answers are recorded when they end, so a re-run may be recorded later).
        assert step_keys(max(histories, key=len)) == [(1, None), (2, None), (3, None)]
    return most


def trigger_slow_runs(client: WorkflowClient, server: WorkflowServer) -> list[str]:
    url = server.url("/wf/slow-steps")
    body = {"start": START, "holdMs": HOLD_MS}
    return client.trigger_many([{"url": url, "body": body} for _ in range(N)])


def started(records: Records, runs: list[str], step: str) -> int:
    return sum(1 for run in runs if records.step(run, step))


# ==================================================================================== scenarios


def test_kill_streams_mid_run(
    stack: Stack, server: WorkflowServer, client: WorkflowClient, records: Records
) -> None:
    runs = trigger_slow_runs(client, server)
    assert len(set(runs)) == N
    # Mid-run: every run has a step behind it and at least one ahead of it.
    wait_until(lambda: started(records, runs, "s2") >= N // 2, "half the runs at s2", FINISH_S)
    stack.kill("streams")
    shutil.rmtree(stack.home / "streams", ignore_errors=True)  # the rows come from Kafka only
    at_kill = Counter(r["step"] for r in records.all() if r.get("event") == "step")
    stack.restart("streams")

    wait_all(stack, runs, "RUN_SUCCESS")
    most = assert_recorded_once(records, client, runs)
    print(
        f"[wf-streams-kill] runs={N} steps_at_kill={dict(at_kill)} "
        f"step_bodies_run={sum(records.counts(*runs).values())} most_per_step={most}"
    )
    assert at_kill["s3"] < N, "the kill came after every run had reached its last step"
    # Replays repeat what the killed worker had not committed. The restarted worker has been
    # seen to pass over that range twice (a step result first processed after the restart was
    # delivered twice), so a body runs at most three times: its own run and two replays.
    assert most <= 3


def test_kill_sender_mid_delivery(
    stack: Stack, server: WorkflowServer, client: WorkflowClient, records: Records
) -> None:
    runs = trigger_slow_runs(client, server)
    assert len(set(runs)) == N
    # A step body that has just started is a delivery the sender is waiting on.
    wait_until(lambda: started(records, runs, "s2") >= 1, "a run at s2", FINISH_S)
    stack.kill("sender")
    at_kill = Counter(r["step"] for r in records.all() if r.get("event") == "step")
    time.sleep(1)
    stack.restart("sender")

    wait_all(stack, runs, "RUN_SUCCESS")
    most = assert_recorded_once(records, client, runs)
    print(
        f"[wf-sender-kill] runs={N} steps_at_kill={dict(at_kill)} "
        f"step_bodies_run={sum(records.counts(*runs).values())} most_per_step={most}"
    )
    assert at_kill["s3"] < N, "the kill came after every run had reached its last step"
    # The restarted sender re-delivers what the killed one had not committed, once.
    assert most <= 2


def test_sleep_across_a_restart_of_every_role(
    stack: Stack, server: WorkflowServer, client: WorkflowClient, records: Records
) -> None:
    tag = uuid.uuid4().hex[:8]
    run = client.trigger(url=server.url("/wf/long-sleep"), body={"tag": tag})
    before = records.wait_step(run, "before", FINISH_S)
    time.sleep(1)  # the sleep's step is published, held by the stream workers' delay table
    for role in ("api", "streams", "sender"):
        stack.kill(role)
    killed_at = time.time()
    shutil.rmtree(stack.home / "streams", ignore_errors=True)
    for role in ("streams", "sender", "api"):
        stack.restart(role)

    log = wait_all(stack, [run], "RUN_SUCCESS")[run]
    counts = records.counts(run)
    assert set(counts) == {"before", "after"}, counts  # "before" may be re-delivered
    after = records.one(run, "after")  # the run went on from its sleep once
    late_s = (after["t"] - before["t"]) / 1000 - SLEEP_S
    print(f"[wf-sleep-restart-all] woke {late_s:.1f}s after its sleep was over")
    assert late_s >= 0, "woke before its sleep was over"
    assert killed_at * 1000 < before["t"] + SLEEP_S * 1000, "the restart came after the sleep"
    logged = [s["stepName"] for group in log["steps"] for s in group["steps"]]
    assert logged == ["before", "long", "after"], logged
    for history in delivered(records, run):
        keys = step_keys(history)
        assert len(keys) == len(set(keys)), f"delivered a step twice: {keys}"
