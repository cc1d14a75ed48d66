"""schemathesis against the live API: no 5xx, and every answer matches producers/api/openapi.yaml.

Bounded: a fixed seed and a few examples per operation (both positive and negative data), so
the run takes well under a minute and fails the same way twice.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import Stack

pytestmark = pytest.mark.broker

CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    )
)


# The operations that filter or change several things at once (issue 14): schemathesis sends
# them both documented and undocumented data (unknown body keys, out-of-range counts, blank
# filters) and checks the server takes the first and refuses the second.
FILTERING = (
    "cancelMessages",
    "listDlq",
    "deleteDlqMessages",
    "retryDlqMessages",
    "pinFlowControl",
    "unpinFlowControl",
    "removeEndpoints",
    "cancelWorkflowRuns",
    "deleteWorkflowDlq",
    "resumeWorkflowDlq",
    "restartWorkflowDlq",
)
STRICT_CHECKS = "not_a_server_error,negative_data_rejection,positive_data_acceptance"
# The events cursor may name an event of the delivery log (base64 of its id); which strings
# decode to one is more than a pattern can say, so the listings get the refusal half only.
LISTINGS = ("listEvents", "listLogs", "workflowLogs", "workflowLogsAlias")
REFUSAL_CHECKS = "not_a_server_error,negative_data_rejection"


def test_schemathesis_finds_no_5xx_and_no_broken_response(stack: Stack, tmp_path: Path) -> None:
    _schemathesis(stack, tmp_path, "--checks", CHECKS)


def test_filtering_endpoints_take_documented_data_and_refuse_the_rest(
    stack: Stack, tmp_path: Path
) -> None:
    only = [arg for op in FILTERING for arg in ("--include-operation-id", op)]
    _schemathesis(stack, tmp_path / "strict", "--checks", STRICT_CHECKS, *only)
    only = [arg for op in LISTINGS for arg in ("--include-operation-id", op)]
    _schemathesis(stack, tmp_path / "listings", "--checks", REFUSAL_CHECKS, *only)


def _schemathesis(stack: Stack, tmp_path: Path, *args: str) -> None:
    st = shutil.which("st") or str(Path(sys.executable).with_name("st"))
    report = tmp_path / "report"
    run = subprocess.run(
        [
            st,
            "run",
            f"{stack.base_url}/openapi.json",
            "--url",
            stack.base_url,
            *args,
            "--max-examples",
            "8",
            "--seed",
            "20261128",
            "--phases",
            "examples,coverage,fuzzing",
            # One worker: with two, hypothesis's strategy descriptions call ast.parse from two
            # threads at once, which CPython 3.11 can fail with "AST constructor recursion depth
            # mismatch" (a runtime error of the tool, not a finding about the API).
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--no-color",
            "--generation-database",
            "none",
            "-H",
            f"Authorization: Bearer {stack.token}",
            "--report",
            "ndjson",
            "--report-dir",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = run.stdout + run.stderr
    # Failures end with a summary naming the operation, the check and a curl command to repeat it.
    assert run.returncode == 0, output[-6000:]
    assert "No issues found" in output or "passed" in output.lower(), output[-3000:]
