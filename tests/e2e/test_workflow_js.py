"""Upstash Workflow through the official JS SDK (@upstash/workflow 1.3.3) against kafstash on a
real broker: the scenarios of docs' workflow contract (shared workflow-api.md, §6).

The endpoints are tests/wf_js/server.mjs, which verifies every request's signature with the
Stack's keys; runs start with the SDK's ``Client.trigger``. Each step body records one line per
execution (tests/workflow_sdk.py, ``Records``), so "ran exactly once" is a count of records.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.stack import Stack
from tests.workflow_sdk import (
    WAIT,
    Records,
    WorkflowClient,
    WorkflowServer,
    failure_url_call,
    js_server,
    unsigned_post,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.js]


@pytest.fixture(scope="module")
def stack(module_stack: Stack) -> Stack:
    """This module's tests share one kafstash (tests/conftest.py, ``module_stack``)."""
    return module_stack


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wf-js")


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
    return uuid.uuid4().hex[:12]


def response_of(log: dict[str, Any]) -> Any:
    """The run's return value: ``workflowRunResponse`` is the raw body of the SDK's DELETE."""
    return json.loads(log["workflowRunResponse"])


def wait_failure(records: Records, run: str) -> dict[str, Any]:
    """The failure function's record for ``run``."""
    return records.wait_event("failure", lambda r: r.get("run") == run)


def wait_failure_function(client: WorkflowClient, run: str, state: str) -> dict[str, Any]:
    """The failed run's log once its ``failureFunction`` is in ``state``."""

    def probe() -> dict[str, Any] | None:
        log = client.run_log(run)
        assert log is not None, f"no log of {run} yet"
        seen = log.get("failureFunction", {}).get("state")
        assert seen == state, f"last seen: {log.get('workflowState')}, failure function {seen}"
        return log

    return wait_until(probe, f"the failure function of {run} in {state}")


# ============================================================================ 1. sequential steps


def test_sequential_steps_run_once_and_pass_their_values(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    url = server.url("/wf/sequential")
    run = client.trigger(url=url, body={"start": 4})
    assert run.startswith("wfr_")

    log = client.wait_state(run, "RUN_SUCCESS")
    assert records.counts(run) == {"s1": 1, "s2": 1, "s3": 1}
    assert records.one(run, "s1")["input"] == 4
    assert records.one(run, "s2")["input"] == {"v": 5}
    assert records.one(run, "s3")["input"] == 10
    assert response_of(log) == {"final": "10!", "payload": {"start": 4}}
    assert log["workflowUrl"] == url
    assert log["workflowRunCreatedAt"] > 0


# ================================================================================== 2. sleeping


def test_sleep_and_sleep_until_resume_no_earlier_than_due(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    run = client.trigger(url=server.url("/wf/sleep"), body={})

    log = client.wait_state(run, "RUN_SUCCESS")
    assert records.counts(run) == {"before": 1, "after-sleep": 1, "pick-until": 1, "after-until": 1}
    # The 2 s delay is published after "before" ran, so the next step can't run sooner.
    assert records.one(run, "after-sleep")["t"] - records.one(run, "before")["t"] >= 2000
    until = records.one(run, "pick-until")["until"]
    assert records.one(run, "after-until")["until"] == until
    assert records.one(run, "after-until")["t"] >= until * 1000
    assert response_of(log) == "slept"


# ============================================================================ 3. parallel steps


def test_parallel_branches_and_the_step_after_them_run_once(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    run = client.trigger(url=server.url("/wf/parallel"), body={})

    log = client.wait_state(run, "RUN_SUCCESS")
    assert records.counts(run) == {"p1": 1, "p2": 1, "after": 1}
    after = records.one(run, "after")
    assert (after["x"], after["y"]) == (10, 32)
    assert response_of(log) == {"sum": 42}


# =============================================================================== 4. context.call


def test_call_reaches_the_third_party_and_returns_its_answer(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    marker = tag()
    run = client.trigger(url=server.url("/wf/call"), body={"url": server.url(f"/echo?m={marker}")})

    client.wait_state(run, "RUN_SUCCESS")
    assert records.counts(run) == {"after": 1}
    after = records.one(run, "after")
    assert after["status"] == 200
    assert {k.lower(): v for k, v in after["header"].items()}["x-echo-reply"] == ["yes"]
    echoed = after["body"]
    assert echoed["method"] == "POST"
    assert json.loads(echoed["body"]) == {"k": 1}
    assert echoed["headers"]["x-echo"] == "hi"

    [hit] = [r for r in records.all() if r.get("event") == "echo" and marker in r["path"]]
    workflow_headers = [h for h in hit["headers"] if h.startswith("upstash-workflow")]
    assert workflow_headers == [], hit["headers"]


def test_call_answered_500_retries_then_continues_with_the_500(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    marker = tag()
    run = client.trigger(
        url=server.url("/wf/call"),
        body={"url": server.url(f"/fail500?m={marker}"), "retries": 1, "retryDelay": "1000"},
    )

    log = client.wait_state(run, "RUN_SUCCESS")
    # One call and one retry; the first callback ("will retry") must not continue the run.
    hits = [r for r in records.all() if r.get("event") == "fail500" and marker in r["path"]]
    assert len(hits) == 2, hits
    assert records.counts(run) == {"after": 1}
    assert records.one(run, "after")["status"] == 500
    assert response_of(log) == 500


# ======================================================================= 5. waitForEvent, notify


def test_wait_for_event_is_notified(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    event = f"evt-{tag()}"
    run = client.trigger(url=server.url("/wf/wait"), body={"eventId": event})

    waiters = wait_until(lambda: client.waiters(event), f"a waiter on {event}")
    assert len(waiters) == 1, waiters
    notified = client.notify(event, {"x": 1})
    assert len(notified) == 1, notified

    log = client.wait_state(run, "RUN_SUCCESS")
    assert records.counts(run) == {"before": 1, "after": 1}
    after = records.one(run, "after")
    assert after["eventData"] == {"x": 1}
    assert after["timeout"] is False
    assert response_of(log) == "notified"
    assert client.waiters(event) == []


def test_wait_for_event_times_out(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    event = f"evt-{tag()}"
    run = client.trigger(url=server.url("/wf/wait"), body={"eventId": event, "timeout": 2})

    log = client.wait_state(run, "RUN_SUCCESS")
    assert records.counts(run) == {"before": 1, "after": 1}
    after = records.one(run, "after")
    assert after["timeout"] is True
    assert after["eventData"] is None
    assert after["t"] - records.one(run, "before")["t"] >= 2000
    assert response_of(log) == "timed out"


def test_a_cancelled_run_leaves_no_waiter_behind(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    event = f"evt-{tag()}"
    # A timeout far past the test's waits, so only the cancel can remove the waiter.
    run = client.trigger(url=server.url("/wf/wait"), body={"eventId": event, "timeout": "1h"})
    waiters = wait_until(lambda: client.waiters(event), f"a waiter on {event}")
    assert len(waiters) == 1, waiters

    assert client.cancel(run) == {"cancelled": 1}
    client.wait_state(run, "RUN_CANCELED")
    wait_until(lambda: client.waiters(event) == [], f"no waiter left on {event}")
    assert client.notify(event, {"x": 1}) == [], "nobody is waiting any more"
    time.sleep(2)  # a woken wait step would be the next delivery; give it a chance
    assert records.counts(run) == {"before": 1}
    assert client.run_log(run)["workflowState"] == "RUN_CANCELED"  # type: ignore[index]


def test_webhook_wakes_the_run_with_the_request_it_got(
    client: WorkflowClient, server: WorkflowServer, records: Records, stack: Stack
) -> None:
    run = client.trigger(url=server.url("/wf/webhook"), body={})
    announce = records.wait_step(run, "announce")
    hook_url = announce["webhookUrl"]
    assert hook_url == (
        f"{stack.base_url}/v2/workflows/hooks/{stack.user.user_id}/{run}/{announce['eventId']}"
    )
    wait_until(lambda: client.waiters(announce["eventId"]), "the webhook's waiter")

    marker = tag()
    # A third party's call: any method, no token.
    answer = httpx.put(
        f"{hook_url}?via=test",
        content=b'{"paid": true}',
        headers={"x-marker": marker, "content-type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text

    log = client.wait_state(run, "RUN_SUCCESS")
    assert records.counts(run) == {"announce": 1, "after": 1}
    seen = {"timeout": False, "method": "PUT", "url": f"{hook_url}?via=test", "marker": marker}
    assert response_of(log) == {**seen, "body": '{"paid": true}'}
    # Its one waiter is gone: a second call wakes nobody, and is told so.
    again = httpx.post(hook_url, content=b"late", timeout=30)
    assert again.status_code == 404, again.text
    assert "error" in again.json()
    other_user = hook_url.replace(f"/hooks/{stack.user.user_id}/", "/hooks/nobody/")
    assert httpx.post(other_user, content=b"x", timeout=30).status_code == 404


# ============================================================================ 6. failure function


def test_failing_step_fails_the_run_and_calls_the_failure_function(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    mark = tag()
    run = client.trigger(url=server.url("/wf/fail"), body={"tag": mark}, retries=0)

    failure = wait_failure(records, run)
    assert f"boom {mark}" in failure["failResponse"]
    assert failure["failStatus"] == 500
    assert failure["requestPayload"] == {"tag": mark}
    assert failure["url"] == server.url("/wf/fail")
    client.wait_state(run, "RUN_FAILED")
    assert records.counts(run) == {"ok": 1, "boom": 1}

    dlq = wait_until(lambda: client.dlq_list(workflowRunId=run), f"a DLQ entry of {run}")
    assert [m["workflowRunId"] for m in dlq] == [run]
    assert dlq[0]["dlqId"]

    # The failure function answered 2xx: the run and its dead letter record it.
    log = wait_failure_function(client, run, "CALLBACK_SUCCESS")
    failure_function = log["failureFunction"]
    assert failure_function["url"] == server.url("/wf/fail")
    assert failure_function["messageId"]
    assert failure_function["failStatus"] == 500
    assert f"boom {mark}" in failure_function["failResponse"]
    [entry] = client.dlq_list(workflowRunId=run, failureFunctionState="CALLBACK_SUCCESS")
    assert entry["dlqId"] == log["dlqId"]
    assert entry["failureCallbackInfo"]["state"] == "CALLBACK_SUCCESS"
    assert entry["failureCallbackInfo"]["responseStatus"] == 200
    answer = entry["failureCallbackInfo"]["responseBody"]  # the SDK's, with the function's result
    assert "handled" in answer
    assert f"boom {mark}" in answer
    assert client.dlq_list(workflowRunId=run, failureFunctionState="CALLBACK_FAIL") == []


def test_a_failure_function_that_throws_is_recorded_as_failed(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    mark = tag()
    # retries=0 holds for the failure callback too: its one attempt fails it.
    run = client.trigger(url=server.url("/wf/fail-throws"), body={"tag": mark}, retries=0)

    failure = wait_failure(records, run)
    assert f"boom {mark}" in failure["failResponse"]
    log = wait_failure_function(client, run, "CALLBACK_FAIL")
    assert log["workflowState"] == "RUN_FAILED"
    assert log["failureFunction"]["failStatus"] == 500
    [entry] = client.dlq_list(workflowRunId=run, failureFunctionState="CALLBACK_FAIL")
    assert entry["dlqId"] == log["dlqId"]
    info = entry["failureCallbackInfo"]
    assert info["state"] == "CALLBACK_FAIL"
    assert info["responseStatus"] >= 400, info
    assert client.dlq_list(workflowRunId=run, failureFunctionState="CALLBACK_SUCCESS") == []
    assert records.counts(run) == {"boom": 1}


def test_failure_url_gets_the_signed_failure_callback(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    mark = tag()
    url = server.url("/wf/fail-url")
    run = client.trigger(
        url=url, body={"tag": mark}, retries=0, failureUrl=server.url("/failure-sink")
    )

    body = failure_url_call(
        records, run, workflow_url=url, payload={"tag": mark}, error=f"boom {mark}"
    )
    log = client.wait_state(run, "RUN_FAILED")
    assert body["dlqId"] == log["dlqId"]
    assert records.counts(run) == {"ok": 1, "boom": 1}
    assert records.of(run, "failure") == [], "the failure URL, not a failure function"


def test_non_retryable_error_fails_at_once(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    mark = tag()
    # The default 3 retries would run "stop" again; a 489 with NonRetryable must end it.
    run = client.trigger(url=server.url("/wf/nonretryable"), body={"tag": mark})

    failure = wait_failure(records, run)
    assert f"nope {mark}" in failure["failResponse"]
    assert failure["requestPayload"] == {"tag": mark}
    client.wait_state(run, "RUN_FAILED")
    assert records.counts(run) == {"stop": 1}


def test_retry_after_error_retries_the_step_no_earlier_than_asked(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    # A 100 ms retry delay: only the 429's Retry-After can hold the second attempt 3 s.
    run = client.trigger(
        url=server.url("/wf/retry-after"), body={"retryAfter": 3}, retryDelay="100"
    )

    log = client.wait_state(run, "RUN_SUCCESS")
    first, second = records.step(run, "limited")
    assert (first["attempt"], second["attempt"]) == (1, 2)
    assert second["t"] - first["t"] >= 3000, second["t"] - first["t"]
    assert response_of(log) == {"attempt": 2}
    assert client.dlq_list(workflowRunId=run) == []


# ====================================================================================== 7. cancel


def test_cancel_stops_a_sleeping_run(
    client: WorkflowClient, server: WorkflowServer, records: Records, stack: Stack
) -> None:
    url = server.url("/wf/long-sleep")
    run = client.trigger(url=url, body={})
    before = records.wait_step(run, "before")

    assert client.cancel(run) == {"cancelled": 1}
    client.wait_state(run, "RUN_CANCELED")

    # A step the SDK would publish now is refused, which the SDK reads as "run ended".
    step = {"stepId": 3, "stepName": "after", "stepType": "Run", "out": "1", "concurrent": 1}
    late = httpx.post(
        f"{stack.base_url}/v2/batch",
        headers={"Authorization": f"Bearer {stack.token}"},
        json=[
            {
                "destination": url,
                "headers": {
                    "upstash-workflow-init": "false",
                    "upstash-workflow-runid": run,
                    "upstash-workflow-url": url,
                    "upstash-workflow-sdk-version": "1",
                    "upstash-forward-upstash-workflow-sdk-version": "1",
                    "upstash-method": "POST",
                    "content-type": "application/json",
                },
                "body": json.dumps(step),
            }
        ],
        timeout=30,
    )
    assert late.status_code == 400, late.text

    # Past the sleep's due time, with margin: nothing may have been delivered.
    time.sleep(max(0.0, before["t"] / 1000 + 13 - time.time()))
    assert records.counts(run) == {"before": 1}


def test_context_cancel_ends_the_run_as_canceled(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    run = client.trigger(url=server.url("/wf/self-cancel"), body={})

    client.wait_state(run, "RUN_CANCELED")
    time.sleep(2)  # a step after the cancel would be the next delivery; give it a chance
    assert records.counts(run) == {"before": 1}


# ============================================================================ 8. trigger options


def test_trigger_delay_holds_the_first_step(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    asked = time.time() * 1000
    run = client.trigger(url=server.url("/wf/sequential"), body={"start": 0}, delay="3s")

    client.wait_state(run, "RUN_SUCCESS")
    assert records.one(run, "s1")["t"] >= asked + 3000


def test_trigger_label_filters_logs(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    label = f"lbl-{tag()}"
    run = client.trigger(url=server.url("/wf/sequential"), body={"start": 1}, label=label)
    client.trigger(url=server.url("/wf/sequential"), body={"start": 2})

    client.wait_state(run, "RUN_SUCCESS")
    labelled = client.logs(label=label)
    assert [r["workflowRunId"] for r in labelled] == [run]


def test_trigger_retries_repeat_the_failing_step(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    mark = tag()
    run = client.trigger(
        url=server.url("/wf/fail"), body={"tag": mark}, retries=1, retryDelay="1000"
    )

    wait_failure(records, run)
    client.wait_state(run, "RUN_FAILED")
    assert records.counts(run) == {"ok": 1, "boom": 2}


def test_trigger_flow_control_parallelism_serialises_runs(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    control = {"key": f"fc-{tag()}", "parallelism": 1}
    url = server.url("/wf/slow")
    runs = client.trigger_many([{"url": url, "body": {}, "flowControl": control} for _ in range(2)])

    for run in runs:
        client.wait_state(run, "RUN_SUCCESS")
    spans = sorted(
        (records.one(run, "hold")["t"], records.one(run, "hold-end")["t"]) for run in runs
    )
    (_, first_end), (second_start, _) = spans
    assert first_end <= second_start, spans


def test_trigger_with_a_live_run_id_starts_no_second_run(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    wanted = f"dup-{tag()}"
    url = server.url("/wf/long-sleep")
    run = client.trigger(url=url, body={}, workflowRunId=wanted)
    assert run == f"wfr_{wanted}"
    records.wait_step(run, "before")

    assert client.trigger(url=url, body={}, workflowRunId=wanted) == run
    time.sleep(3)  # a second run would record its "before" within this
    assert records.counts(run) == {"before": 1}
    assert client.cancel(run) == {"cancelled": 1}


# ================================================================================== 9. signatures


def test_unsigned_direct_call_is_rejected(server: WorkflowServer, records: Records) -> None:
    for headers in ({}, {"Upstash-Signature": "not.a.jwt"}):
        answer = httpx.post(
            server.url("/wf/sequential"), json={"start": 99}, headers=headers, timeout=30
        )
        assert answer.status_code == 500, answer.text
        assert "verify" in answer.json()["message"]
    assert unsigned_post(server.url("/many/parent"), {"x": 1}).status_code == 500
    assert not [r for r in records.all() if r.get("input") == 99]


# ========================================================================= 10. DLQ resume/restart


def failed_flaky_run(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> tuple[str, str, str]:
    """A ``flaky`` run that failed and sits in the DLQ; then its step is fixed.

    Returns (key, run id, dlq id).
    """
    key = tag()
    run = client.trigger(url=server.url("/wf/flaky"), body={"key": key}, retries=0)
    wait_failure(records, run)
    client.wait_state(run, "RUN_FAILED")
    [entry] = wait_until(lambda: client.dlq_list(workflowRunId=run), f"a DLQ entry of {run}")
    fixed = httpx.post(server.url("/toggle"), json={"key": key, "fail": False}, timeout=30)
    assert fixed.status_code == 200
    return key, run, entry["dlqId"]


def test_dlq_resume_continues_from_the_failed_step(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    _key, run, dlq_id = failed_flaky_run(client, server, records)

    answer = client.dlq_resume(dlq_id)
    [resumed] = answer["workflowRuns"]
    again = resumed["workflowRunId"]
    log = client.wait_state(again, "RUN_SUCCESS")
    # Resumed, "ok" keeps its recorded result; only the failed step and what follows run.
    assert records.counts(run, again) == {"ok": 1, "flaky": 2, "after": 1}
    assert records.step(again, "flaky")[-1]["fails"] is False
    assert response_of(log) == "recovered"


def test_dlq_resume_takes_the_retries_and_flow_control_it_is_given(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    key = tag()
    run = client.trigger(
        url=server.url("/wf/flaky"), body={"key": key}, retries=0, retryDelay="200"
    )
    wait_failure(records, run)
    client.wait_state(run, "RUN_FAILED")
    [entry] = wait_until(lambda: client.dlq_list(workflowRunId=run), f"a DLQ entry of {run}")
    control = {"key": f"fc-{tag()}", "parallelism": 1}

    # Still failing: with retries=1 the resumed step runs twice before the run fails again.
    resumed = client.dlq_resume(entry["dlqId"], retries=1, flowControl=control)
    again = resumed["workflowRunId"]
    assert again == run, "a resumed run keeps its id"
    wait_until(
        lambda: len(records.step(again, "flaky")) == 3 or None,
        f"the resumed flaky step of {again} run once more and retried once",
    )

    def failed_again() -> dict[str, Any] | None:
        log = client.run_log(again)
        assert log is not None, f"no log of {again}"
        assert log["workflowState"] == "RUN_FAILED", log["workflowState"]
        assert log.get("dlqId") not in (None, entry["dlqId"]), log.get("dlqId")
        return log

    wait_until(failed_again, f"{again} failed a second time")
    time.sleep(1)  # a third attempt would come 200 ms after the second
    assert records.counts(run) == {"ok": 1, "flaky": 3}
    # The run took the flow control key: logs find it by that key.
    assert [r["workflowRunId"] for r in client.logs(flowControlKey=control["key"])] == [again]


def test_dlq_restart_runs_from_the_beginning(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    _key, run, dlq_id = failed_flaky_run(client, server, records)

    answer = client.dlq_restart(dlq_id)
    [restarted] = answer["workflowRuns"]
    again = restarted["workflowRunId"]
    log = client.wait_state(again, "RUN_SUCCESS")
    if again == run:
        assert records.counts(run) == {"ok": 2, "flaky": 2, "after": 1}
    else:
        assert records.counts(run) == {"ok": 1, "flaky": 1}
        assert records.counts(again) == {"ok": 1, "flaky": 1, "after": 1}
    assert response_of(log) == "recovered"


# ====================================================================================== invoke


def test_invoke_runs_the_child_and_hands_back_its_result(
    client: WorkflowClient, server: WorkflowServer, records: Records
) -> None:
    x = int(uuid.uuid4().int % 1_000_000)
    parent = client.trigger(url=server.url("/many/parent"), body={"x": x})

    client.wait_state(parent, "RUN_SUCCESS", timeout=WAIT * 2)
    child_step = records.wait_event(
        "step", lambda r: r.get("step") == "child-step" and r.get("input") == {"x": x}
    )
    child = child_step["run"]
    assert child != parent
    assert records.counts(child) == {"child-step": 1}
    assert records.counts(parent) == {"after": 1}
    after = records.one(parent, "after")
    body = after["body"]
    # The child's result travels as its DELETE body, a JSON text; accept it parsed too.
    if isinstance(body, str):
        body = json.loads(body)
    assert body == {"value": f"child got {x}"}
    assert not after["isFailed"]
    assert not after["isCanceled"]
    child_log = client.wait_state(child, "RUN_SUCCESS")
    assert response_of(child_log) == {"value": f"child got {x}"}
