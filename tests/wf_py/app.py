"""Workflow endpoints of the official Python SDK (``upstash-workflow`` 2.0.0, its Flask ``Serve``)
for kafstash's test-suite (tests/workflow_sdk.py); the Python twin of tests/wf_js/server.mjs.

Usage: ``python -m tests.wf_py.app [port]`` (0 or none: any free port). It reads QSTASH_URL,
QSTASH_TOKEN, both signing keys (so every request must be signed by kafstash) and WF_RECORDS,
and prints ``READY <port>`` once it listens.

Each step body appends one JSON line to WF_RECORDS, as server.mjs does:
``{"run", "workflow", "step", "event": "step", "t", ...values}``. A run's first step records the
payload's ``tag``: Python runs start with a plain publish, so the tests find a run's id by it.

Routes (POST): ``/wf/sequential``, ``/wf/sleep``, ``/wf/call`` (payload ``url``), ``/wf/fail``
(a failing step, ``retries=0``, a ``failure_function``), ``/wf/fail-url`` (the same, with a
``failure_url`` instead: ``/failure-sink``, which records ``"event": "failure-url"`` with the
headers, the body and whether its signature verified); ``/echo`` answers the JSON of what it
got, for ``context.call``. Every request to a ``/wf/`` route is also recorded
(``"event": "request"``, with the SDK's answer), to show what kafstash delivered.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from flask import Flask, Response, request
from qstash import Receiver
from qstash.errors import SignatureError
from upstash_workflow import WorkflowContext
from upstash_workflow.flask import Serve
from werkzeug.serving import make_server

_lock = threading.Lock()


def write(entry: dict[str, Any]) -> None:
    line = json.dumps({"t": int(time.time() * 1000), **entry}) + "\n"
    with _lock, open(os.environ["WF_RECORDS"], "a", encoding="utf-8") as out:
        out.write(line)


def record(context: WorkflowContext[Any], workflow: str, step: str, **values: Any) -> None:
    write(
        {
            "run": context.workflow_run_id,
            "workflow": workflow,
            "step": step,
            "event": "step",
            **values,
        }
    )


def create_app(origin: str) -> Flask:
    """The Flask app; ``origin`` (``http://127.0.0.1:<port>``) is every workflow's base URL."""
    app = Flask(__name__)
    serve = Serve(app)

    def sequential(context: WorkflowContext[dict[str, Any]]) -> None:
        payload = context.request_payload

        def s1() -> dict[str, Any]:
            record(context, "sequential", "s1", input=payload["start"], tag=payload["tag"])
            return {"v": payload["start"] + 1}

        a = context.run("s1", s1)

        def s2() -> int:
            record(context, "sequential", "s2", input=a)
            return int(a["v"]) * 2

        b = context.run("s2", s2)

        def s3() -> str:
            record(context, "sequential", "s3", input=b)
            return f"{b}!"

        context.run("s3", s3)

    def sleep(context: WorkflowContext[dict[str, Any]]) -> None:
        tag = context.request_payload["tag"]
        context.run("before", lambda: record(context, "sleep", "before", tag=tag))
        context.sleep("pause", 2)
        context.run("after-sleep", lambda: record(context, "sleep", "after-sleep"))

        # Chosen inside a step: the route replays, and the target must stay the same each time.
        def pick() -> int:
            target = int(time.time()) + 2
            record(context, "sleep", "pick-until", until=target)
            return target

        until = context.run("pick-until", pick)
        context.sleep_until("until", until)
        context.run("after-until", lambda: record(context, "sleep", "after-until", until=until))

    def call(context: WorkflowContext[dict[str, Any]]) -> None:
        payload = context.request_payload
        context.run("before", lambda: record(context, "call", "before", tag=payload["tag"]))
        response = context.call(
            "c1", url=payload["url"], method="POST", body={"k": 1}, headers={"x-echo": "hi"}
        )
        context.run(
            "after",
            lambda: record(
                context,
                "call",
                "after",
                status=response.status,
                body=response.body,
                header=response.header,
            ),
        )

    def on_failure(
        context: WorkflowContext[Any], fail_status: int, fail_response: str, fail_headers: Any
    ) -> str:
        write(
            {
                "run": context.workflow_run_id,
                "workflow": "fail",
                "step": "failure_function",
                "event": "failure",
                "failStatus": fail_status,
                "failResponse": fail_response,
                "failHeaders": fail_headers,
                "requestPayload": context.request_payload,
                "url": context.url,
            }
        )
        return f"handled {fail_response}"

    def fail(context: WorkflowContext[dict[str, Any]]) -> None:
        tag = context.request_payload["tag"]
        context.run("ok", lambda: record(context, "fail", "ok", tag=tag))

        def boom() -> None:
            record(context, "fail", "boom")
            raise RuntimeError(f"boom {tag}")

        context.run("boom", boom)
        context.run("never", lambda: record(context, "fail", "never"))

    def fail_url(context: WorkflowContext[dict[str, Any]]) -> None:
        tag = context.request_payload["tag"]
        context.run("ok", lambda: record(context, "fail-url", "ok", tag=tag))

        def boom() -> None:
            record(context, "fail-url", "boom")
            raise RuntimeError(f"boom {tag}")

        context.run("boom", boom)

    # Registered as calls, not decorators: the SDK is untyped, and mypy would untype each route.
    serve.route("/wf/sequential", base_url=origin)(sequential)
    serve.route("/wf/sleep", base_url=origin)(sleep)
    serve.route("/wf/call", base_url=origin)(call)
    serve.route("/wf/fail", base_url=origin, retries=0, failure_function=on_failure)(fail)
    serve.route("/wf/fail-url", base_url=origin, retries=0, failure_url=f"{origin}/failure-sink")(
        fail_url
    )

    # Every workflow request and the SDK's answer, to show what kafstash delivered when a test
    # fails (server.mjs records the same).
    @app.after_request
    def trace(response: Response) -> Response:
        if request.path.startswith("/wf/"):
            write(
                {
                    "event": "request",
                    "method": request.method,
                    "path": request.full_path,
                    "headers": dict(request.headers.items()),
                    "body": request.get_data(as_text=True),
                    "status": response.status_code,
                    "answer": response.get_data(as_text=True)[:2000],
                }
            )
        return response

    receiver = Receiver(
        current_signing_key=os.environ["QSTASH_CURRENT_SIGNING_KEY"],
        next_signing_key=os.environ["QSTASH_NEXT_SIGNING_KEY"],
    )

    @app.route("/failure-sink", methods=["POST"])
    def failure_sink() -> Response:
        body = request.get_data(as_text=True)
        verified: bool | str = True
        try:
            receiver.verify(
                signature=request.headers.get("Upstash-Signature", ""),
                body=body,
                url=f"{origin}{request.path}",
            )
        except SignatureError as exc:
            verified = f"{type(exc).__name__}: {exc}"
        headers = {k.lower(): v for k, v in request.headers.items()}
        write({"event": "failure-url", "verified": verified, "headers": headers, "body": body})
        return Response(json.dumps({"received": True}), content_type="application/json")

    @app.route("/echo", methods=["GET", "POST", "PUT"])
    def echo() -> Response:
        got = {
            "method": request.method,
            "path": request.full_path,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": request.get_data(as_text=True),
        }
        write({"event": "echo", **got})
        return Response(
            json.dumps(got), headers={"Content-Type": "application/json", "x-echo-reply": "yes"}
        )

    return app


class _LateApp:
    """The WSGI app the server starts with: the Flask app is built once the port is known."""

    app: Flask | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        assert self.app is not None
        result: Iterable[bytes] = self.app(environ, start_response)
        return result


def main(argv: list[str]) -> None:
    port = int(argv[1]) if len(argv) > 1 else 0
    late = _LateApp()
    server = make_server("127.0.0.1", port, late, threaded=True)
    late.app = create_app(f"http://127.0.0.1:{server.port}")
    print(f"READY {server.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv)
