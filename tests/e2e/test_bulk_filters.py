"""A typo in a filter never widens a bulk call, and ``count`` bounds it (issue 14).

Every endpoint that cancels, deletes, retries or otherwise changes several things at once gets
the same sweep against a live stack: a typo'd field, a blank filter, a malformed count or date,
or a body with an unknown key is 400 and the state read back afterwards is what it was before;
``count=1`` affects exactly one item, the oldest. The requests are the SDKs' own wire dialects
(JS: query; Python: JSON bodies), sent with httpx so each one is exact; the JS SDK itself is
driven for the two calls the issue reports.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from kafstash.schemas.users import DEV_USERS, User
from tests.jssdk import JsSdk, JsSdkError
from tests.sink import Sink
from tests.stack import Stack

pytestmark = pytest.mark.broker

WAIT = 60  # the machine may be busy with other test runs


@pytest.fixture(scope="module")
def stack(module_stack: Stack) -> Stack:
    return module_stack  # every test uses its own labels, and its own user for "all" calls


@pytest.fixture(scope="module")
def shared_sink(module_stack: Stack) -> Iterator[Sink]:
    user = module_stack.user
    with Sink(current_key=user.current_signing_key, next_key=user.next_signing_key) as s:
        yield s


@dataclass
class Api:
    stack: Stack
    sink: Sink
    user: User

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.user.token}", **kw.pop("headers", {})}
        return httpx.request(method, f"{self.stack.base_url}{path}", headers=headers, **kw)

    def publish(self, label: str, *, fail: bool) -> str:
        """A delayed message (pending for an hour), or one that fails once into the DLQ."""
        route = f"/status/500/{label}" if fail else f"/ok/{label}"
        extra = {"Upstash-Retries": "0"} if fail else {"Upstash-Delay": "1h"}
        r = self.call(
            "POST",
            f"/v2/publish/{self.sink.url(route)}",
            headers={"Upstash-Label": label, **extra},
            content=b"x",
        )
        assert r.status_code == 201, r.text
        mid: str = r.json()["messageId"]
        time.sleep(0.005)  # distinct created_at: "oldest first" is then well defined
        return mid

    def pending(self, ids: list[str]) -> set[str]:
        return {i for i in ids if self.call("GET", f"/v2/messages/{i}").status_code == 200}

    def dlq(self, label: str) -> list[str]:
        r = self.call("GET", f"/v2/dlq?label={label}")
        assert r.status_code == 200, r.text
        return [m["dlqId"] for m in r.json()["messages"]]  # earliest first

    def wait_dlq(self, label: str, n: int) -> list[str]:
        deadline = time.monotonic() + WAIT
        while len(found := self.dlq(label)) < n:
            assert time.monotonic() < deadline, f"DLQ has {found}, wanted {n} entries"
            time.sleep(0.2)
        return found


def _api(stack: Stack, sink: Sink, user: User = DEV_USERS[0]) -> Api:
    return Api(stack, sink, user)


@dataclass(frozen=True)
class Bulk:
    """One bulk endpoint: how to make two of its items, and how to read them back."""

    method: str
    path: str
    items: str  # "messages" (pending) or "dlq"
    body_key: str

    def setup(self, api: Api, label: str) -> list[str]:
        if self.items == "messages":
            return [api.publish(label, fail=False) for _ in range(2)]
        for _ in range(2):
            api.publish(label, fail=True)
        return api.wait_dlq(label, 2)

    def state(self, api: Api, label: str, ids: list[str]) -> set[str]:
        return api.pending(ids) if self.items == "messages" else set(api.dlq(label)) & set(ids)

    def affected(self, answer: dict[str, Any]) -> int:
        if "cancelled" in answer:
            return int(answer["cancelled"])
        if "deleted" in answer:
            return int(answer["deleted"])
        return len(answer["responses"])


BULK = [
    Bulk("DELETE", "/v2/messages", "messages", "messageIds"),
    Bulk("DELETE", "/v2/dlq", "dlq", "dlqIds"),
    Bulk("POST", "/v2/dlq/retry", "dlq", "dlqIds"),
]
BULK_IDS = ["cancel-messages", "delete-dlq", "retry-dlq"]

TYPOS: list[tuple[str, dict[str, Any], str]] = [
    ("labeel={label}&count=100", {}, "unknown filter field 'labeel'"),  # the issue's request
    ("lable={label}", {}, "unknown filter field 'lable'"),
    ("label=", {}, "empty filter field 'label'"),
    ("label={label}&count=abc", {}, "invalid count"),
    ("label={label}&count=-1", {}, "invalid count"),
    ("label={label}&count=0", {}, "invalid count"),
    ("label={label}&fromDate=yesterday", {}, "invalid fromDate"),
    ("label={label}&toDate=1.5", {}, "invalid toDate"),
    ("", {"json": {"{key}x": ["{first}"]}}, "unknown filter field '{key}x'"),
    ("", {"json": {"{key}": ["{first}"], "labeel": "x"}}, "unknown filter field 'labeel'"),
    ("", {"content": b"not json"}, "invalid request body"),
]


def _fill(value: Any, **names: str) -> Any:
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, list):
        return [_fill(v, **names) for v in value]
    if isinstance(value, dict):
        return {_fill(k, **names): _fill(v, **names) for k, v in value.items()}
    return value


@pytest.mark.parametrize("bulk", BULK, ids=BULK_IDS)
def test_a_typo_changes_nothing(stack: Stack, shared_sink: Sink, bulk: Bulk) -> None:
    api = _api(stack, shared_sink)
    label = f"typo-{uuid.uuid4().hex[:8]}"
    ids = bulk.setup(api, label)
    before = bulk.state(api, label, ids)
    assert before == set(ids)
    for query, kw, error in TYPOS:
        names = {"label": label, "key": bulk.body_key, "first": ids[0]}
        r = api.call(bulk.method, f"{bulk.path}?{_fill(query, **names)}", **_fill(kw, **names))
        assert r.status_code == 400, (query, kw, r.text)
        assert _fill(error, **names) in r.json()["error"], (query, r.text)
        assert bulk.state(api, label, ids) == before, f"{query} {kw} changed the state"


@pytest.mark.parametrize("bulk", BULK, ids=BULK_IDS)
def test_count_bounds_a_filtered_call_to_the_oldest(
    stack: Stack, shared_sink: Sink, bulk: Bulk
) -> None:
    api = _api(stack, shared_sink)
    label = f"count-{uuid.uuid4().hex[:8]}"
    oldest, newer = bulk.setup(api, label)
    r = api.call(bulk.method, f"{bulk.path}?label={label}&count=1")
    assert r.status_code in (200, 201), r.text
    assert bulk.affected(r.json()) == 1
    assert bulk.state(api, label, [oldest, newer]) == {newer}


@pytest.mark.parametrize(
    ("bulk", "user"), list(zip(BULK, DEV_USERS[1:], strict=True)), ids=BULK_IDS
)
def test_count_bounds_an_everything_call(
    stack: Stack, shared_sink: Sink, bulk: Bulk, user: User
) -> None:
    """``?count=1`` alone (JS ``{all: true, count: 1}``): exactly one, the user's oldest."""
    api = _api(stack, shared_sink, user)  # a user of its own: "everything" is only these two
    label = f"all-{uuid.uuid4().hex[:8]}"
    oldest, newer = bulk.setup(api, label)
    r = api.call(bulk.method, f"{bulk.path}?count=1")
    assert r.status_code in (200, 201), r.text
    assert bulk.affected(r.json()) == 1
    assert bulk.state(api, label, [oldest, newer]) == {newer}
    if bulk.items == "dlq":
        assert r.json()["cursor"]  # more remain: the SDK's loop goes on
    cleanup = "/v2/messages" if bulk.items == "messages" else "/v2/dlq"
    assert api.call("DELETE", f"{cleanup}?label={label}").is_success


def test_url_group_endpoint_removal_refuses_unknown_keys(stack: Stack, shared_sink: Sink) -> None:
    api = _api(stack, shared_sink)
    group = f"g-{uuid.uuid4().hex[:8]}"
    endpoints = [{"url": shared_sink.url(f"/ok/{group}-a"), "name": "a"}]
    assert api.call(
        "POST", f"/v2/topics/{group}/endpoints", json={"endpoints": endpoints}
    ).is_success
    before = api.call("GET", f"/v2/topics/{group}").json()
    for body in ({"endpoints": [{"nmae": "a"}]}, {"endpoints": [{"name": "a"}], "all": True}):
        r = api.call("DELETE", f"/v2/topics/{group}/endpoints", json=body)
        assert r.status_code == 400, r.text
        assert "unknown field" in r.json()["error"]
    assert api.call("GET", f"/v2/topics/{group}").json() == before


@pytest.mark.parametrize(
    "query", ["pin?paralelism=3", "pin?parallelism=3&rat=2", "unpin?rates=true", "pause?all=true"]
)
def test_flow_control_admin_refuses_unknown_fields(
    stack: Stack, shared_sink: Sink, query: str
) -> None:
    api = _api(stack, shared_sink)
    key = f"fk-{uuid.uuid4().hex[:8]}"
    before = api.call("GET", f"/v2/flowControl/{key}")
    r = api.call("POST", f"/v2/flowControl/{key}/{query}")
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("unknown filter field")
    after = api.call("GET", f"/v2/flowControl/{key}")
    assert (after.status_code, after.text) == (before.status_code, before.text)


@pytest.mark.js
def test_the_js_sdk_calls_of_the_issue(stack: Stack, shared_sink: Sink) -> None:
    """``dlq.delete({filter: {labeel}})`` rejects and deletes nothing; ``messages.cancel({all:
    true, count: 1})`` cancels exactly one (the SDK's own integration tests expect both)."""
    api = _api(stack, shared_sink, DEV_USERS[1])
    label = f"js-{uuid.uuid4().hex[:8]}"
    dead = BULK[1].setup(api, label)
    js = JsSdk(stack.base_url, api.user.token)
    with pytest.raises(JsSdkError) as err:
        js.run("dlq.delete", filter={"labeel": label}, count=100)
    assert err.value.status == 400
    assert set(api.dlq(label)) == set(dead)
    oldest, newer = BULK[0].setup(api, label)
    assert js.run("messages.cancel", all=True, count=1) == {"cancelled": 1}
    assert api.pending([oldest, newer]) == {newer}
    assert js.run("messages.cancel", filter={"label": label}) == {"cancelled": 1}
    assert js.run("dlq.delete", filter={"label": label}) == {"deleted": 2}
