"""A slow ``context.call`` (an LLM, say) never holds the slots ordinary deliveries need.

The sender here has one delivery slot (``KAFSTASH_SENDER_CONCURRENCY=1``). A workflow started
through the official JS SDK calls a third party that takes 12 s to answer; while that call is
in flight, a plain message published to the same sink must arrive at once. Before call requests
had slots of their own, it waited behind the call for the whole 12 s.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.sink import Sink
from tests.stack import Stack
from tests.workflow_sdk import Records, WorkflowClient, WorkflowServer, js_server, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.js]

CALL_MS = 12_000


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(
        kafka_bootstrap,
        tmp_path_factory.mktemp("call-lane"),
        env={"KAFSTASH_SENDER_CONCURRENCY": "1"},
    ) as s:
        yield s


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("call-lane-wf")


@pytest.fixture(scope="module")
def server(stack: Stack, home: Path) -> Iterator[WorkflowServer]:
    with js_server(stack, home / "records.jsonl", home) as s:
        yield s


def test_a_slow_call_leaves_the_delivery_slots_free(
    stack: Stack, server: WorkflowServer, sink: Sink, home: Path
) -> None:
    marker = uuid.uuid4().hex[:10]
    call_path = f"/slow/{CALL_MS}/call-{marker}"
    client = WorkflowClient(stack.base_url, stack.token)
    run = client.trigger(url=server.url("/wf/call"), body={"url": sink.url(call_path)})

    wait_until(lambda: any(p == call_path for p, _ in sink.arrivals), timeout=60, what="the call")
    plain_path = f"/ok/plain-{marker}"
    published = time.time()
    answer = httpx.post(
        f"{stack.base_url}/v2/publish/{sink.url(plain_path)}",
        headers={"Authorization": f"Bearer {stack.token}"},
        content=b"plain",
    )
    assert answer.status_code == 201, answer.text

    [plain] = sink.wait_count(plain_path, 1, timeout=60)
    # Arrived while the call still held its connection: the call had not been answered yet.
    assert sink.received(call_path) == [], f"plain waited {plain.at - published:.1f}s for the call"
    assert plain.at - published < CALL_MS / 1000 / 2

    client.wait_state(run, "RUN_SUCCESS")
    assert Records(home / "records.jsonl").counts(run) == {"after": 1}
