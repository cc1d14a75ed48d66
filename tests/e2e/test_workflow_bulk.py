"""The Upstash Workflow management API's bulk calls never widen on a typo, and ``count`` bounds
them (issue 14), against a live stack and through the official JS SDK (@upstash/workflow 1.3.3).

The sweep of tests/e2e/test_bulk_filters.py, for ``DELETE /v2/workflows/runs`` (cancel),
``GET /v2/workflows/events`` (logs), ``DELETE /v2/workflows/dlq`` and
``POST /v2/workflows/dlq/resume|restart``: a typo'd field, a blank filter, a malformed value or
a body with an unknown key is 400, and the state read back afterwards is what it was before; a
``count`` or a body's ids act on exactly what they name. Plus ``dlq.retryFailureFunction``.

Runs to cancel are held by a one-hour trigger delay: they are active and nothing is delivered.
Dead letters come from tests/wf_js/server.mjs's ``fail`` workflow started with ``retries: 0``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kafstash.schemas.users import DEV_USERS, User
from tests.jssdk import JsSdkError
from tests.stack import Stack
from tests.workflow_sdk import Records, WorkflowClient, WorkflowServer, js_server, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.js]


@pytest.fixture(scope="module")
def stack(module_stack: Stack) -> Stack:
    return module_stack  # every test uses its own labels, and its own user for "all" calls


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wf-bulk")


@pytest.fixture(scope="module")
def records(home: Path) -> Records:
    return Records(home / "records.jsonl")


@pytest.fixture(scope="module")
def server(stack: Stack, records: Records, home: Path) -> Iterator[WorkflowServer]:
    with js_server(stack, records.path, home) as s:
        yield s


@pytest.fixture(scope="module")
def client(stack: Stack) -> WorkflowClient:
    return WorkflowClient(stack.base_url, stack.token)


def tag() -> str:
    return uuid.uuid4().hex[:10]


def call(
    stack: Stack, method: str, path: str, user: User | None = None, **kw: Any
) -> httpx.Response:
    token = (user or stack.user).token
    headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
    return httpx.request(method, f"{stack.base_url}{path}", headers=headers, timeout=30, **kw)


def _fill(value: Any, **names: str) -> Any:
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, list):
        return [_fill(v, **names) for v in value]
    if isinstance(value, dict):
        return {_fill(k, **names): _fill(v, **names) for k, v in value.items()}
    return value


# ============================================================================ runs: cancel, logs


def active(stack: Stack, user: User | None = None, **filters: str) -> list[str]:
    """The ids of the user's active runs matching ``filters``, oldest first."""
    r = call(
        stack,
        "GET",
        "/v2/workflows/events",
        user,
        params={"groupBy": "workflowRunId", "state": "RUN_STARTED", "count": "1000", **filters},
    )
    assert r.status_code == 200, r.text
    runs = sorted(
        r.json()["runs"], key=lambda run: (run["workflowRunCreatedAt"], run["workflowRunId"])
    )
    return [run["workflowRunId"] for run in runs]


def held_runs(
    client: WorkflowClient,
    stack: Stack,
    url: str,
    label: str,
    keys: list[str | None],
    user: User | None = None,
) -> list[str]:
    """One active run per entry of ``keys`` (its flow-control key, or none), oldest first; each
    start is delayed an hour, so nothing runs while the test looks."""
    runs = []
    for key in keys:
        options: dict[str, Any] = {"url": url, "body": {}, "label": label, "delay": "1h"}
        if key is not None:
            options["flowControl"] = {"key": key, "parallelism": 1}
        runs.append(client.trigger(**options))
        time.sleep(0.01)  # distinct creation times: "oldest first" is then well defined
        # Created in trigger order: the next start is sent once this run exists.
        wait_until(lambda: runs[-1] in active(stack, user, label=label), f"run {runs[-1]} active")
    return runs


RUN_TYPOS: list[tuple[str, dict[str, Any], str]] = [
    ("labeel={label}&count=100", {}, "unknown filter field 'labeel'"),
    ("label=", {}, "empty filter field 'label'"),
    ("label={label}&count=abc", {}, "invalid count"),
    ("label={label}&count=0", {}, "invalid count"),
    ("label={label}&count=1001", {}, "invalid count"),
    # The audit's case: no active run matches, and it used to answer 200.
    ("label=none-{label}&fromDate=yesterday", {}, "invalid fromDate"),
    ("label={label}&toDate=1.5", {}, "invalid toDate"),
    # Used to widen silently to a prefix match.
    ("workflowUrl={url}&workflowUrlExactMatch=yes", {}, "invalid workflowUrlExactMatch"),
    ("workflowRunId={first}", {}, "unknown filter field 'workflowRunId'"),
    ("label={label}&cursor=1_x", {}, "unknown filter field 'cursor'"),
    ("", {"json": {"workflowRunIds": ["{first}"]}}, "invalid request body"),
]


def test_a_cancel_typo_cancels_nothing(
    client: WorkflowClient, server: WorkflowServer, stack: Stack
) -> None:
    label = f"typo-{tag()}"
    url = server.url("/wf/sequential")
    runs = held_runs(client, stack, url, label, [None, None])
    assert active(stack, label=label) == runs
    for query, kw, error in RUN_TYPOS:
        names = {"label": label, "url": url, "first": runs[0]}
        r = call(
            stack, "DELETE", f"/v2/workflows/runs?{_fill(query, **names)}", **_fill(kw, **names)
        )
        assert r.status_code == 400, (query, kw, r.text)
        assert error.format(**names) in r.json()["error"], (query, r.text)
        assert active(stack, label=label) == runs, f"{query} {kw} changed the runs"
    with pytest.raises(JsSdkError) as err:
        client.run("cancel", filter={"labeel": label}, count=100)
    assert err.value.status == 400
    assert client.cancel(runs) == {"cancelled": 2}
    assert active(stack, label=label) == []


def test_cancel_by_filter_takes_flow_control_key_and_count_bounds_it(
    client: WorkflowClient, server: WorkflowServer, stack: Stack
) -> None:
    label, key = f"fc-{tag()}", f"key-{tag()}"
    url = server.url("/wf/sequential")
    first, second, keyless = held_runs(client, stack, url, label, [key, key, None])

    assert client.run("cancel", filter={"flowControlKey": key}, count=1) == {"cancelled": 1}
    assert active(stack, label=label) == [second, keyless]  # the oldest of the key's runs
    # An exact workflowUrl is the whole URL: a prefix of it matches nothing.
    assert client.run("cancel", filter={"workflowUrl": url[:-3], "label": label}) == {
        "cancelled": 0
    }
    assert client.run("cancel", filter={"label": label, "flowControlKey": key}) == {"cancelled": 1}
    assert active(stack, label=label) == [keyless]
    assert client.run("cancel", filter={"workflowUrl": url, "label": label}) == {"cancelled": 1}
    assert active(stack, label=label) == []
    client.wait_state(first, "RUN_CANCELED")


def test_cancel_all_with_a_count_takes_the_users_oldest_run(
    server: WorkflowServer, stack: Stack
) -> None:
    user = DEV_USERS[1]  # a user of its own: "all" is only these two runs
    mine = WorkflowClient(stack.base_url, user.token)
    label = f"all-{tag()}"
    oldest, newer = held_runs(mine, stack, server.url("/wf/sequential"), label, [None, None], user)

    assert mine.run("cancel", all=True, count=1) == {"cancelled": 1}
    assert active(stack, user) == [newer]
    assert mine.run("cancel", all=True) == {"cancelled": 1}  # the SDK sends count=100
    assert active(stack, user) == []
    assert mine.wait_state(oldest, "RUN_CANCELED")


def test_logs_filter_by_flow_control_key_and_page_with_the_cursor(
    client: WorkflowClient, server: WorkflowServer, stack: Stack
) -> None:
    label, key = f"logs-{tag()}", f"key-{tag()}"
    url = server.url("/wf/sequential")
    runs = held_runs(client, stack, url, label, [key, key, None])

    keyed = client.logs(flowControlKey=key)
    assert [r["workflowRunId"] for r in keyed] == [runs[1], runs[0]]  # newest first
    page = client.run("logs", filter={"label": label}, count=2)
    assert [r["workflowRunId"] for r in page["runs"]] == [runs[2], runs[1]]
    assert page["cursor"]
    rest = client.run("logs", filter={"label": label}, count=2, cursor=page["cursor"])
    assert [r["workflowRunId"] for r in rest["runs"]] == [runs[0]]
    assert rest["cursor"] == ""
    for query in ("labeel=x", "label=", "state=DONE", "groupBy=label", "cursor=x", "fromDate=a"):
        r = call(stack, "GET", f"/v2/workflows/events?{query}")
        assert r.status_code == 400, (query, r.text)
    assert client.cancel(runs) == {"cancelled": 3}


# ============================================================================ the workflow DLQ


def dead(stack: Stack, label: str) -> list[tuple[str, str]]:
    """(dlq id, run id) of the workflow dead letters with ``label``, earliest first."""
    r = call(stack, "GET", f"/v2/dlq?source=workflow&label={label}")
    assert r.status_code == 200, r.text
    return [(m["dlqId"], m["workflowRunId"]) for m in r.json()["messages"]]


def dead_letters(
    client: WorkflowClient, server: WorkflowServer, stack: Stack, label: str, n: int
) -> list[tuple[str, str]]:
    """``n`` failed runs of the ``fail`` workflow, each in the DLQ once; earliest first."""
    for _ in range(n):
        client.trigger(url=server.url("/wf/fail"), body={"tag": label}, label=label, retries=0)

    def all_there() -> list[tuple[str, str]] | None:
        found = dead(stack, label)
        return found if len(found) >= n else None

    return wait_until(all_there, f"{n} dead letters labelled {label}")


DLQ_ENDPOINTS = [
    ("DELETE", "/v2/workflows/dlq"),
    ("POST", "/v2/workflows/dlq/resume"),
    ("POST", "/v2/workflows/dlq/restart"),
]
DLQ_TYPOS: list[tuple[str, dict[str, Any], str]] = [
    ("labeel={label}&count=100", {}, "unknown filter field 'labeel'"),
    ("label=", {}, "empty filter field 'label'"),
    ("label={label}&count=abc", {}, "invalid count"),
    ("label={label}&count=0", {}, "invalid count"),
    ("label={label}&fromDate=yesterday", {}, "invalid fromDate"),
    ("label={label}&workflowCreatedAt=x", {}, "invalid workflowCreatedAt"),
    ("label={label}&source=message", {}, "unknown filter field 'source'"),
    ("label={label}&host=h", {}, "unknown filter field 'host'"),
    ("label={label}&cursor=x", {}, "invalid cursor"),
    # The audit's case: a body used to be ignored, and acted on up to 100 dead letters.
    ("", {"json": {"dlqIdz": ["{first}"]}}, "unknown filter field 'dlqIdz'"),
    ("", {"json": {"dlqIds": ["{first}"], "labeel": "x"}}, "unknown filter field 'labeel'"),
    ("", {"json": {"dlqIds": "{first}"}}, "invalid request body"),
    ("", {"content": b"not json"}, "invalid request body"),
]


def test_a_workflow_dlq_typo_changes_nothing(
    client: WorkflowClient, server: WorkflowServer, stack: Stack
) -> None:
    label = f"dtypo-{tag()}"
    before = dead_letters(client, server, stack, label, 2)
    names = {"label": label, "first": before[0][0]}
    for method, path in DLQ_ENDPOINTS:
        for query, kw, error in DLQ_TYPOS:
            r = call(stack, method, f"{path}?{_fill(query, **names)}", **_fill(kw, **names))
            assert r.status_code == 400, (path, query, kw, r.text)
            assert _fill(error, **names) in r.json()["error"], (path, query, r.text)
            assert dead(stack, label) == before, f"{path} {query} {kw} changed the DLQ"
    with pytest.raises(JsSdkError) as err:
        client.run("dlq.delete", filter={"labeel": label}, count=100)
    assert err.value.status == 400
    assert dead(stack, label) == before
    assert client.run("dlq.delete", filter={"label": label}) == {"deleted": 2}


def test_workflow_dlq_delete_takes_count_and_body_ids_exactly(
    client: WorkflowClient, server: WorkflowServer, stack: Stack
) -> None:
    label = f"ddel-{tag()}"
    (d0, _), (d1, _), (d2, r2) = dead_letters(client, server, stack, label, 3)

    r = call(stack, "DELETE", f"/v2/workflows/dlq?label={label}&count=1")
    assert r.status_code == 200, r.text
    assert r.json()["deleted"] == 1
    assert r.json()["cursor"]  # more remain: the SDK's loop goes on
    assert [d for d, _ in dead(stack, label)] == [d1, d2]
    r = call(stack, "DELETE", "/v2/workflows/dlq", json={"dlqIds": [d2]})
    assert r.json() == {"deleted": 1}, r.text
    assert [d for d, _ in dead(stack, label)] == [d1]
    # The SDK's dlq.delete by id and by filter (its cursor is left out once nothing remains).
    assert client.run("dlq.delete", argv=[[d0, d2]]) == {"deleted": 0}
    assert client.run("dlq.delete", filter={"label": label, "workflowRunId": r2}) == {"deleted": 0}
    assert client.run("dlq.delete", filter={"label": label}) == {"deleted": 1}
    assert dead(stack, label) == []


@pytest.mark.parametrize("action", ["resume", "restart"])
def test_workflow_dlq_resume_and_restart_take_count_and_body_ids_exactly(
    client: WorkflowClient, server: WorkflowServer, stack: Stack, action: str
) -> None:
    label = f"d{action}-{tag()}"
    (d0, r0), (d1, r1), (d2, r2) = dead_letters(client, server, stack, label, 3)

    r = call(stack, "POST", f"/v2/workflows/dlq/{action}?label={label}&count=1")
    assert r.status_code == 200, r.text
    assert [w["workflowRunId"] for w in r.json()["workflowRuns"]] == [r0]
    assert r.json()["cursor"]
    left = {d for d, _ in dead(stack, label)}  # the revived run fails again, with a new entry
    assert {d1, d2} <= left
    assert d0 not in left
    r = call(stack, "POST", f"/v2/workflows/dlq/{action}", json={"dlqIds": [d2]})
    assert r.status_code == 200, r.text
    assert [w["workflowRunId"] for w in r.json()["workflowRuns"]] == [r2]
    assert "cursor" not in r.json()  # the ids were all there is
    left = {d for d, _ in dead(stack, label)}
    assert d1 in left
    assert d2 not in left
    assert r1 in {run for _, run in dead(stack, label)}


def test_retry_failure_function_sends_the_failure_callback_again(
    client: WorkflowClient, server: WorkflowServer, stack: Stack, records: Records
) -> None:
    label = f"dcb-{tag()}"
    [(dlq_id, run)] = dead_letters(client, server, stack, label, 1)
    records.wait_event("failure", lambda r: r.get("run") == run)

    answer = client.run("dlq.retryFailureFunction", dlqId=dlq_id)
    assert answer["workflowRunId"] == run
    assert isinstance(answer["workflowCreatedAt"], int)

    def twice() -> list[dict[str, Any]] | None:
        found = records.of(run, "failure")
        return found if len(found) >= 2 else None

    again = wait_until(twice, f"the failure function of {run} to run again")
    assert len(again) == 2
    assert f"boom {label}" in again[1]["failResponse"]
    assert again[1]["requestPayload"] == {"tag": label}
    client.wait_state(run, "RUN_FAILED")  # the run stays failed, its dead letter stays
    assert dead(stack, label) == [(dlq_id, run)]
    with pytest.raises(JsSdkError) as err:
        client.run("dlq.retryFailureFunction", dlqId="no-such-dlq-id")
    assert err.value.status == 404
    r = call(stack, "POST", f"/v2/workflows/dlq/callback/{dlq_id}?labeel=x")
    assert r.status_code == 400, r.text
