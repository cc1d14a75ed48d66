"""Upstash Workflow through its official SDKs, against a kafstash: a Stack (tests/stack.py) or
``kafstash dev`` (:class:`DevServer`); anything with a base URL and a user (:class:`Server`).

- :class:`WorkflowServer` runs a workflow endpoint in a subprocess: the JS one
  (``tests/wf_js/server.mjs``, ``@upstash/workflow`` 1.3.3) or the Python one
  (``tests/wf_py/app.py``, ``upstash-workflow`` 2.0.0). Both verify every request's signature
  with the server's signing keys and publish their steps to it.
- :class:`Records` reads what the step bodies wrote: one JSON line per step execution.
- :class:`WorkflowClient` drives the JS workflow ``Client`` (``tests/wf_js/client.mjs``);
  the Python SDK has no client, so :func:`publish` starts a Python run with a plain publish
  and :func:`run_logs` / :func:`workflow_dlq` read the API directly.
- :func:`wait_until` polls with a deadline: tests wait for outcomes, never time them.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Protocol, TypeVar

import httpx

from kafstash.schemas.users import DEV_USERS, User
from tests import npm
from tests.jssdk import JsSdk

__all__ = [
    "WAIT",
    "WF_JS_DIR",
    "DevServer",
    "Records",
    "Server",
    "WorkflowClient",
    "WorkflowServer",
    "ensure_installed",
    "failure_url_call",
    "js_server",
    "publish",
    "py_server",
    "run_logs",
    "unsigned_post",
    "wait_run_state",
    "wait_until",
    "workflow_dlq",
]

WF_JS_DIR = Path(__file__).resolve().parent / "wf_js"
WF_PACKAGES = ("@upstash/workflow", "@upstash/qstash")
# Seconds to wait for an outcome; the machine may be busy with other test runs.
WAIT = 60.0
READY_TIMEOUT_S = 60.0

# Variables that would point the SDKs elsewhere than the server we hand them.
_SCRUBBED_ENV = (
    "QSTASH_DEV",
    "QSTASH_REGION",
    "QSTASH_URL",
    "QSTASH_TOKEN",
    "QSTASH_CURRENT_SIGNING_KEY",
    "QSTASH_NEXT_SIGNING_KEY",
    "UPSTASH_WORKFLOW_URL",
)

T = TypeVar("T")


class Server(Protocol):
    """The kafstash the SDKs are pointed at: a Stack, or a :class:`DevServer`."""

    @property
    def base_url(self) -> str: ...

    @property
    def token(self) -> str: ...

    @property
    def user(self) -> User: ...


class DevServer:
    """``kafstash dev`` on ``port``, as the SDKs see it: the fixed dev user's token and keys."""

    def __init__(self, port: int, user: User = DEV_USERS[0]) -> None:
        self.port = port
        self._user = user

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return self._user.token

    @property
    def user(self) -> User:
        return self._user


def ensure_installed() -> Path:
    """``npm ci`` in tests/wf_js unless both SDKs are installed at their pins."""
    return npm.ensure_installed(WF_JS_DIR, WF_PACKAGES)


def wait_until(
    probe: Callable[[], T | None], what: str, timeout: float = WAIT, interval: float = 0.2
) -> T:
    """Call ``probe`` until it returns something truthy and return that; fail after ``timeout``.

    ``what`` names the awaited outcome in the failure; a probe that raises AssertionError is
    retried too, and its message ends the failure.
    """
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            got = probe()
        except AssertionError as exc:
            got, last = None, str(exc)
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}. {last}")
        time.sleep(interval)


# ====================================================================================== records


class Records:
    """The JSON lines the workflow endpoints append (tests/wf_js/server.mjs's header)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        # Only newline-terminated lines are whole: the one being appended now is read next poll.
        *whole, _tail = text.split("\n")
        return [json.loads(line) for line in whole if line]

    def of(self, run: str, event: str | None = None) -> list[dict[str, Any]]:
        mine = [r for r in self.all() if r.get("run") == run]
        return [r for r in mine if event is None or r.get("event") == event]

    def steps(self, run: str) -> list[dict[str, Any]]:
        return self.of(run, "step")

    def step(self, run: str, name: str) -> list[dict[str, Any]]:
        return [r for r in self.steps(run) if r.get("step") == name]

    def counts(self, *runs: str) -> Counter[str]:
        """How many times each step body of ``runs`` ran, summed over them."""
        wanted = set(runs)
        steps = [r for r in self.all() if r.get("event") == "step"]
        return Counter(str(r["step"]) for r in steps if r.get("run") in wanted)

    def one(self, run: str, name: str) -> dict[str, Any]:
        got = self.step(run, name)
        assert len(got) == 1, f"step {name!r} of {run} ran {len(got)} times: {got}"
        return got[0]

    def wait_step(self, run: str, name: str, timeout: float = WAIT) -> dict[str, Any]:
        """The first record of step ``name`` of ``run``, once it exists."""
        return wait_until(
            lambda: next(iter(self.step(run, name)), None),
            f"step {name!r} of run {run}; the run recorded {self.counts(run)}",
            timeout,
        )

    def wait_event(
        self,
        event: str,
        match: Callable[[dict[str, Any]], bool],
        timeout: float = WAIT,
        what: str = "",
    ) -> dict[str, Any]:
        """The first record of ``event`` that ``match`` accepts (records lack the keys that
        don't apply, e.g. "run" in a failure record when the callback carried no run id)."""
        return wait_until(
            lambda: next((r for r in self.all() if r.get("event") == event and match(r)), None),
            f"a {event!r} record {what}",
            timeout,
        )

    def run_of(self, workflow: str, tag: str, timeout: float = WAIT) -> str:
        """The run id of the ``workflow`` run whose first step recorded ``tag`` (Python runs
        are started by a plain publish, so only the endpoint learns their id)."""
        found = self.wait_event(
            "step",
            lambda r: r.get("workflow") == workflow and r.get("tag") == tag,
            timeout,
            f"of the {workflow!r} run tagged {tag} (its first step)",
        )
        run: str = found["run"]
        return run


def _json_or_empty(text: str) -> dict[str, Any]:
    try:
        parsed = json.loads(text)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


# The failure callback's keys both SDKs read (workflow-api.md §5: Python indexes them directly).
FAILURE_BODY_KEYS = frozenset(
    {"status", "header", "body", "url", "sourceBody", "workflowRunId", "workflowCreatedAt"}
)


def failure_url_call(
    records: Records, run: str, *, workflow_url: str, payload: Any, error: str
) -> dict[str, Any]:
    """The call the failure URL (the endpoints' ``/failure-sink``) got for ``run``, checked
    against workflow-api.md §5: signed by kafstash, the failure headers, and the body both SDKs
    read. Returns the parsed body."""
    got = records.wait_event(
        "failure-url",
        lambda r: _json_or_empty(r["body"]).get("workflowRunId") == run,
        what=f"for {run}",
    )
    assert got["verified"] is True, f"the failure URL's signature: {got['verified']}"
    headers = {k.lower(): v for k, v in got["headers"].items()}
    assert headers.get("upstash-workflow-is-failure") == "true", headers
    assert headers.get("upstash-workflow-failure-callback") == "true", headers
    assert headers.get("upstash-workflow-runid") == run, headers
    assert "upstash-workflow-sdk-version" not in headers, "it would be read as a step"
    body: dict[str, Any] = json.loads(got["body"])
    assert body.keys() >= FAILURE_BODY_KEYS, sorted(FAILURE_BODY_KEYS - body.keys())
    assert body["status"] == 500
    assert error in json.loads(base64.b64decode(body["body"]))["message"]
    assert all(isinstance(v, list) for v in body["header"].values()), body["header"]
    assert body["url"] == workflow_url
    assert json.loads(base64.b64decode(body["sourceBody"])) == payload
    assert body["workflowCreatedAt"] > 0
    return body


# ====================================================================================== servers


class WorkflowServer:
    """A workflow endpoint subprocess on 127.0.0.1 that printed ``READY <port>``."""

    def __init__(self, argv: list[str], env: Mapping[str, str], home: Path, *, name: str) -> None:
        self.argv = argv
        self.env = dict(env)
        self.name = name
        self.stdout_path = home / f"{name}.stdout"
        self.stderr_path = home / f"{name}.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.origin + path

    def start(self) -> None:
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdout=out, stderr=err, start_new_session=True
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            for line in self.stdout_path.read_text(errors="replace").splitlines():
                if line.startswith("READY "):
                    self.port = int(line.split()[1])
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}"
                )
            time.sleep(0.05)
        raise TimeoutError(
            f"{self.name} printed no READY in {READY_TIMEOUT_S:.0f} s:\n{self.tail()}"
        )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def tail(self, lines: int = 60) -> str:
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts) or "(no output)"

    def __enter__(self) -> WorkflowServer:
        self.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()


def _server_env(stack: Server, records: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env.update(
        QSTASH_URL=stack.base_url,
        QSTASH_TOKEN=stack.token,
        QSTASH_CURRENT_SIGNING_KEY=stack.user.current_signing_key,
        QSTASH_NEXT_SIGNING_KEY=stack.user.next_signing_key,
        WF_RECORDS=str(records),
        NODE_NO_WARNINGS="1",
    )
    return env


def js_server(stack: Server, records: Path, home: Path) -> WorkflowServer:
    """tests/wf_js/server.mjs for ``stack``, not started yet."""
    cwd = ensure_installed()
    return WorkflowServer(
        [npm.node(), str(cwd / "server.mjs"), "0"],
        _server_env(stack, records),
        home,
        name="wf-js",
    )


def py_server(stack: Server, records: Path, home: Path) -> WorkflowServer:
    """tests/wf_py/app.py for ``stack``, not started yet."""
    return WorkflowServer(
        [sys.executable, "-m", "tests.wf_py.app", "0"],
        {**_server_env(stack, records), "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        home,
        name="wf-py",
    )


# ======================================================================================= client


class WorkflowClient(JsSdk):
    """The JS ``Client`` of ``@upstash/workflow`` pointed at ``base_url`` with ``token``.

    ``run(op, **args)`` / ``run(op, argv=[...])`` call any op of tests/wf_js/client.mjs; the
    methods below are the calls the tests make, with the SDK's own argument shapes.
    """

    driver: ClassVar[Path] = WF_JS_DIR / "client.mjs"

    def install(self) -> Path:
        return ensure_installed()

    def trigger(self, **options: Any) -> str:
        """``client.trigger(options)``; the run id."""
        result = self.run("trigger", **options)
        run_id: str = result["workflowRunId"]
        return run_id

    def trigger_many(self, options: list[dict[str, Any]]) -> list[str]:
        result = self.run("trigger", argv=[options])
        return [r["workflowRunId"] for r in result]

    def cancel(self, run_ids: str | list[str]) -> dict[str, Any]:
        result: dict[str, Any] = self.run("cancel", argv=[run_ids])
        return result

    def notify(self, event_id: str, event_data: Any) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.run("notify", eventId=event_id, eventData=event_data)
        return result

    def waiters(self, event_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.run("getWaiters", eventId=event_id)
        return result

    def logs(self, **filter_: Any) -> list[dict[str, Any]]:
        """The ``runs`` of ``client.logs({filter})``."""
        result = self.run("logs", filter=filter_)
        runs: list[dict[str, Any]] = result["runs"]
        return runs

    def run_log(self, run_id: str) -> dict[str, Any] | None:
        runs = [r for r in self.logs(workflowRunId=run_id) if r.get("workflowRunId") == run_id]
        return runs[0] if runs else None

    def wait_state(self, run_id: str, state: str, timeout: float = WAIT) -> dict[str, Any]:
        """The run's log once ``logs`` shows it in ``state``."""

        def probe() -> dict[str, Any] | None:
            log = self.run_log(run_id)
            assert log is not None, f"no log of {run_id} yet"
            assert log.get("workflowState") == state, _last_seen(log)
            return log

        return wait_until(probe, f"run {run_id} in {state}", timeout)

    def dlq_list(self, **filter_: Any) -> list[dict[str, Any]]:
        result = self.run("dlq.list", filter=filter_)
        messages: list[dict[str, Any]] = result["messages"]
        return messages

    def dlq_restart(self, dlq_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.run("dlq.restart", argv=[dlq_id])
        return result

    def dlq_resume(self, dlq_id: str, **options: Any) -> dict[str, Any]:
        """``dlq.resume(dlqId)``; with ``options`` (``retries``, ``flowControl``) the SDK's
        ``dlq.resume({dlqId, ...options})``, which answers the one run it resumed."""
        argv: list[Any] = [{"dlqId": dlq_id, **options}] if options else [dlq_id]
        result: dict[str, Any] = self.run("dlq.resume", argv=argv)
        return result


def _last_seen(log: dict[str, Any], limit: int = 6000) -> str:
    """A run's log as a timeout shows it: its state, and every step with its state and message
    id, so that a run stuck on a loaded machine can be diagnosed from the failure alone."""
    text = json.dumps(log, sort_keys=True)
    if len(text) > limit:
        text = text[:limit] + f"... ({len(text) - limit} more characters)"
    return f"last seen: {log.get('workflowState')}; the run's log: {text}"


# ============================================================================== plain HTTP calls


def publish(stack: Server, url: str, body: Any, **headers: str) -> str:
    """A plain QStash publish of JSON ``body`` to ``url`` through kafstash; the message id.

    This is how a Python workflow run starts: the endpoint rejects unsigned direct calls.
    """
    answer = httpx.post(
        f"{stack.base_url}/v2/publish/{url}",
        headers={
            "Authorization": f"Bearer {stack.token}",
            "Content-Type": "application/json",
            **headers,
        },
        content=json.dumps(body),
        timeout=30,
    )
    assert answer.status_code in (200, 201), (answer.status_code, answer.text)
    message_id: str = answer.json()["messageId"]
    return message_id


def run_logs(stack: Server, run_id: str) -> dict[str, Any] | None:
    """The run's log as ``GET /v2/workflows/events`` answers it (the JS ``logs`` request)."""
    answer = httpx.get(
        f"{stack.base_url}/v2/workflows/events",
        params={"groupBy": "workflowRunId", "workflowRunId": run_id},
        headers={"Authorization": f"Bearer {stack.token}"},
        timeout=30,
    )
    assert answer.status_code == 200, f"workflow events: {answer.status_code} {answer.text}"
    runs = [r for r in answer.json().get("runs", []) if r.get("workflowRunId") == run_id]
    return runs[0] if runs else None


def wait_run_state(stack: Server, run_id: str, state: str, timeout: float = WAIT) -> dict[str, Any]:
    """The run's log once ``GET /v2/workflows/events`` shows it in ``state``."""

    def probe() -> dict[str, Any] | None:
        log = run_logs(stack, run_id)
        assert log is not None, f"no log of {run_id} yet"
        assert log.get("workflowState") == state, _last_seen(log)
        return log

    return wait_until(probe, f"run {run_id} in {state}", timeout)


def workflow_dlq(stack: Server, run_id: str) -> list[dict[str, Any]]:
    """The run's workflow DLQ entries as ``GET /v2/dlq?source=workflow`` answers them."""
    answer = httpx.get(
        f"{stack.base_url}/v2/dlq",
        params={"source": "workflow", "workflowRunId": run_id},
        headers={"Authorization": f"Bearer {stack.token}"},
        timeout=30,
    )
    assert answer.status_code == 200, f"GET /v2/dlq: {answer.status_code} {answer.text}"
    return [m for m in answer.json().get("messages", []) if m.get("workflowRunId") == run_id]


def unsigned_post(url: str, body: Any) -> httpx.Response:
    """A direct POST to a workflow endpoint, with no ``Upstash-Signature``."""
    return httpx.post(url, json=body, timeout=30)
