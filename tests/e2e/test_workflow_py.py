"""Upstash Workflow through the official Python SDK (upstash-workflow 2.0.0, Flask) against
kafstash on a real broker: the scenarios of the workflow contract (shared workflow-api.md, §6)
that the Python SDK supports (1, 2, 4, 6, 9).

The endpoints are tests/wf_py/app.py, which verifies every request's signature with the
Stack's keys. The SDK has no client: a run starts with a plain QStash publish of the payload to
the endpoint (its first, signed, delivery is the SDK's "first invocation"), and the tests find
the run's id in the first step's record, by the payload's ``tag``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.stack import Stack
from tests.workflow_sdk import (
    Records,
    WorkflowServer,
    failure_url_call,
    publish,
    py_server,
    unsigned_post,
    wait_run_state,
    wait_until,
    workflow_dlq,
)

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def stack(module_stack: Stack) -> Stack:
    """This module's tests share one kafstash (tests/conftest.py, ``module_stack``)."""
    return module_stack


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wf-py")


@pytest.fixture(scope="module")
def records(home: Path) -> Records:
    return Records(home / "records.jsonl")


@pytest.fixture(scope="module")
def server(stack: Stack, records: Records, home: Path) -> Iterator[WorkflowServer]:
    with py_server(stack, records.path, home) as s:
        yield s


def tag() -> str:
    return uuid.uuid4().hex[:12]


def start(
    stack: Stack, server: WorkflowServer, records: Records, workflow: str, **body: Any
) -> str:
    """Publish ``body`` (plus a fresh ``tag``) to the workflow's route; the run's id."""
    mark = tag()
    publish(stack, server.url(f"/wf/{workflow}"), {**body, "tag": mark})
    run = records.run_of(workflow, mark)
    assert run.startswith("wfr_"), run
    return run


# ============================================================================ 1. sequential steps


def test_sequential_steps_run_once_and_pass_their_values(
    stack: Stack, server: WorkflowServer, records: Records
) -> None:
    run = start(stack, server, records, "sequential", start=4)

    log = wait_run_state(stack, run, "RUN_SUCCESS")
    assert records.counts(run) == {"s1": 1, "s2": 1, "s3": 1}
    assert records.one(run, "s1")["input"] == 4
    assert records.one(run, "s2")["input"] == {"v": 5}
    assert records.one(run, "s3")["input"] == 10
    assert log["workflowUrl"] == server.url("/wf/sequential")


# ================================================================================== 2. sleeping


def test_sleep_and_sleep_until_resume_no_earlier_than_due(
    stack: Stack, server: WorkflowServer, records: Records
) -> None:
    run = start(stack, server, records, "sleep")

    wait_run_state(stack, run, "RUN_SUCCESS")
    assert records.counts(run) == {"before": 1, "after-sleep": 1, "pick-until": 1, "after-until": 1}
    # The 2 s delay is published after "before" ran, so the next step can't run sooner.
    assert records.one(run, "after-sleep")["t"] - records.one(run, "before")["t"] >= 2000
    until = records.one(run, "pick-until")["until"]
    assert records.one(run, "after-until")["until"] == until
    assert records.one(run, "after-until")["t"] >= until * 1000


# =============================================================================== 4. context.call


def test_call_reaches_the_third_party_and_returns_its_answer(
    stack: Stack, server: WorkflowServer, records: Records
) -> None:
    marker = tag()
    run = start(stack, server, records, "call", url=server.url(f"/echo?m={marker}"))

    wait_run_state(stack, run, "RUN_SUCCESS")
    assert records.counts(run) == {"before": 1, "after": 1}
    after = records.one(run, "after")
    assert after["status"] == 200
    # Header names in a callback keep the third party's spelling, which HTTP leaves free.
    assert {k.lower(): v for k, v in after["header"].items()}["x-echo-reply"] == ["yes"]
    echoed = after["body"]
    assert echoed["method"] == "POST"
    assert json.loads(echoed["body"]) == {"k": 1}
    assert echoed["headers"]["x-echo"] == "hi"

    [hit] = [r for r in records.all() if r.get("event") == "echo" and marker in r["path"]]
    workflow_headers = [h for h in hit["headers"] if h.startswith("upstash-workflow")]
    assert workflow_headers == [], hit["headers"]


# ============================================================================ 6. failure function


def test_failing_step_fails_the_run_and_calls_the_failure_function(
    stack: Stack, server: WorkflowServer, records: Records
) -> None:
    # The route serves with retries=0, which the SDK puts on the trigger and on every step.
    run = start(stack, server, records, "fail")
    mark = records.one(run, "ok")["tag"]

    failure = records.wait_event("failure", lambda r: r.get("run") == run)
    assert f"boom {mark}" in failure["failResponse"]
    assert failure["failStatus"] == 500
    assert failure["requestPayload"] == {"tag": mark}
    assert failure["url"] == server.url("/wf/fail")
    wait_run_state(stack, run, "RUN_FAILED")
    assert records.counts(run) == {"ok": 1, "boom": 1}

    dlq = wait_until(lambda: workflow_dlq(stack, run), f"a DLQ entry of {run}")
    assert [m["workflowRunId"] for m in dlq] == [run]


def test_failure_url_gets_the_signed_failure_callback(
    stack: Stack, server: WorkflowServer, records: Records
) -> None:
    # failure_url (no failure function): the SDK puts it on the trigger and on every step.
    run = start(stack, server, records, "fail-url")
    mark = records.one(run, "ok")["tag"]
    url = server.url("/wf/fail-url")

    body = failure_url_call(
        records, run, workflow_url=url, payload={"tag": mark}, error=f"boom {mark}"
    )
    log = wait_run_state(stack, run, "RUN_FAILED")
    assert body["dlqId"] == log["dlqId"]
    assert records.counts(run) == {"ok": 1, "boom": 1}


# ================================================================================== 9. signatures


def test_unsigned_direct_call_is_rejected(server: WorkflowServer, records: Records) -> None:
    mark = tag()
    assert unsigned_post(server.url("/wf/sequential"), {"start": 1, "tag": mark}).status_code == 500
    forged = httpx.post(
        server.url("/wf/sequential"),
        json={"start": 1, "tag": mark},
        headers={"Upstash-Signature": "not.a.jwt"},
        timeout=30,
    )
    assert forged.status_code == 500, forged.text
    assert not [r for r in records.all() if r.get("tag") == mark]
