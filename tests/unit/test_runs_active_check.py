"""The API's "this workflow run has ended" refusal decides on a view read up to now.

A DLQ resume or restart makes an ended run active again; the revived run's first step can reach
the API before its runs view read the new state. Refusing then (400, which the SDK takes for
"the run ended" and stops) left the run waiting for good (seen in CI as a resumed run stuck in
RUN_STARTED). The view's ``sync`` is tested against the real broker in tests/views/; here a
stand-in applies the record still on its way when ``sync`` is called.
"""

from __future__ import annotations

import msgspec
import pytest

from kafstash.producers.api.context import ApiConfig, ApiContext
from kafstash.producers.api.errors import ApiError
from kafstash.producers.api.publish import PublishLimits
from kafstash.schemas.commands import PublishRequest
from kafstash.schemas.message import Message
from kafstash.schemas.topics import Topics
from kafstash.schemas.users import DEV_USERS
from kafstash.schemas.workflow import ACTIVE, RunState, run_key
from kafstash.schemas.workflow_tag import WorkflowTag

USER = DEV_USERS[0].user_id
RUN = "wfr_revived"
FAILED = RunState(
    user_id=USER, run_id=RUN, url="http://wf", created_at=1, updated_at=2, state="RUN_FAILED"
)
REVIVED = msgspec.structs.replace(FAILED, state=ACTIVE, updated_at=3)


class LaggingRuns:
    """A runs view that shows ``now`` and holds ``on_the_way`` until ``sync``."""

    def __init__(self, now: RunState, on_the_way: RunState | None, *, synced: bool = True) -> None:
        self.value = now
        self.on_the_way = on_the_way
        self.synced = synced
        self.syncs = 0

    def get(self, key: str) -> RunState | None:
        return self.value if key == run_key(USER, RUN) else None

    async def sync(self, timeout_s: float) -> bool:
        self.syncs += 1
        if self.synced and self.on_the_way is not None:
            self.value = self.on_the_way
        return self.synced


def _context(runs: LaggingRuns) -> ApiContext:
    config = ApiConfig(
        bootstrap="127.0.0.1:1",
        topics=Topics("unit"),
        users=DEV_USERS,
        limits=PublishLimits(),
        allow_private_destinations=True,
    )
    api = ApiContext(config)
    api.runs = runs  # type: ignore[assignment]
    return api


def _step(call_type: str = "step") -> PublishRequest:
    message = Message(
        message_id="msg_step",
        user_id=USER,
        url="http://wf",
        created_at=0,
        not_before=0,
        body=b"{}",
        max_retries=3,
        workflow=WorkflowTag(run_id=RUN, call_type=call_type),  # type: ignore[arg-type]
    )
    return PublishRequest(request_id="req_step", message=message)


async def test_a_step_of_a_run_revived_since_the_view_last_read_is_let_through() -> None:
    runs = LaggingRuns(FAILED, REVIVED)
    await _context(runs).check_runs_active([_step()])
    assert runs.syncs == 1


async def test_a_step_of_a_run_still_ended_after_the_view_caught_up_is_refused() -> None:
    runs = LaggingRuns(FAILED, None)
    with pytest.raises(ApiError, match="is not active: RUN_FAILED"):
        await _context(runs).check_runs_active([_step()])


async def test_a_view_that_cannot_catch_up_in_time_refuses_nothing() -> None:
    # Unsure: the run's stream worker drops a step of an ended run anyway.
    runs = LaggingRuns(FAILED, None, synced=False)
    await _context(runs).check_runs_active([_step()])


async def test_an_active_run_costs_no_sync() -> None:
    runs = LaggingRuns(REVIVED, None)
    await _context(runs).check_runs_active([_step(), _step("fromCallback")])
    assert runs.syncs == 0
