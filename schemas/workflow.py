"""Upstash Workflow runs (workflow-api.md): the run a message belongs to, and the run's state.

A workflow message is an ordinary QStash message whose ``Upstash-Workflow-*`` control headers
name its run. All messages of one run travel the requests topic under the run's key, so the
stream worker that owns the run's row sees them in publish order and builds the step history
that every delivery to the workflow URL carries as its body. The row's read model goes to the
compacted ``state`` topic (key ``wf/<user>/<run id>``), which the API's run views follow.
"""

from typing import Literal

from msgspec import Struct

from kafstash.schemas.message import CallbackOptions, FlowControl, Message
from kafstash.schemas.workflow_tag import CallType

RunStatus = Literal["RUN_STARTED", "RUN_SUCCESS", "RUN_FAILED", "RUN_CANCELED"]
# How a failed run's failure callback (failure function or failure URL) stands
# (workflow-api.md §4/§5): sent and not finished yet, answered 2xx, or out of retries.
CallbackState = Literal["CALLBACK_INPROGRESS", "CALLBACK_SUCCESS", "CALLBACK_FAIL"]
CALLBACK_STATES: frozenset[str] = frozenset(
    {"CALLBACK_INPROGRESS", "CALLBACK_SUCCESS", "CALLBACK_FAIL"}
)

RUN_STATE_PREFIX = "wf/"
ACTIVE: RunStatus = "RUN_STARTED"

# Headers the server adds to a delivery to the workflow URL (Go-canonical, as stored).
RUN_ID_HEADER = "Upstash-Workflow-Runid"
URL_HEADER = "Upstash-Workflow-Url"
CREATED_AT_HEADER = "Upstash-Workflow-Createdat"
# Forwarded by the SDK on steps; a callback or failure callback carrying it would be read as a
# step (Python then parses the callback JSON as history and fails): never delivered on those.
SDK_VERSION_HEADER = "Upstash-Workflow-Sdk-Version"


class HistoryEntry(Struct, frozen=True, kw_only=True, rename="camel"):
    """One element of the body delivered to the workflow URL (workflow-api.md §2.1)."""

    message_id: str
    body: str  # standard base64 of that message's body
    call_type: CallType


class Invoker(Struct, frozen=True, kw_only=True, rename="camel"):
    """The run that started this one with ``context.invoke`` (workflow-api.md §3.6): when this
    run ends, ``template`` (the invoker's step message, built by the API from the invoke's
    headers) carries the result back as the invoker's ``step``."""

    run_id: str
    url: str
    created_at: int
    step: bytes
    template: Message


class FailureFunction(Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """A failed run's failure callback: the message that calls it, where, and how it stands.

    ``fail_*`` is the failed step's last answer, which the callback reported; ``response_*`` is
    the callback's own last answer once it finished (the DLQ's ``failureCallbackInfo``).
    """

    message_id: str
    url: str
    state: CallbackState = "CALLBACK_INPROGRESS"
    fail_status: int = 0
    fail_response: str = ""
    fail_headers: dict[str, list[str]] = {}
    response_status: int | None = None
    response_body: str | None = None
    response_headers: dict[str, list[str]] = {}


class RunState(Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """Row of the stream worker's ``workflow`` table, and the read model on the state topic.

    ``sleeping`` maps the ids of the run's messages held for a later time (sleep steps) to that
    time, so that a cancel can withdraw them; ``updated_at`` orders one run's records (the
    API's read-your-writes floor).
    """

    user_id: str
    run_id: str
    url: str
    created_at: int
    updated_at: int
    state: RunStatus = ACTIVE
    history: list[HistoryEntry] = []
    labels: list[str] = []
    failure_callback: str | None = None
    failure_callback_options: CallbackOptions | None = None
    sleeping: dict[str, int] = {}
    completed_at: int | None = None
    response: str | None = None  # the body of the end-of-run DELETE (the route's return value)
    dlq_id: str | None = None
    caller_ip: str | None = None
    # The start's Upstash-Retries / -Retry-Delay / flow control: the JS SDK sends them on the
    # first message only, and they hold for every step of the run.
    max_retries: int = 3
    retry_delay_expression: str | None = None
    flow_control: FlowControl | None = None
    invoker: Invoker | None = None
    # Event ids the run has waited on (``waitForEvent``): its waiters there are dropped when it
    # ends. An id stays after its waiter woke (a drop then finds nothing).
    waiting: list[str] = []
    # Set when the run fails with a failure callback; gone when it is resumed or restarted.
    failure_function: FailureFunction | None = None


def run_key(user_id: str, run_id: str) -> str:
    """The requests-topic key of every message and command of a run, and its state-topic key."""
    return f"{RUN_STATE_PREFIX}{user_id}/{run_id}"


class EndRun(Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="run-end"):
    """``DELETE /v2/workflows/runs/<id>``: the run succeeded (``cancel`` false, ``response`` is
    the route's return value) or was cancelled. Topic ``<prefix>.requests``, key = run key."""

    user_id: str
    run_id: str
    cancel: bool
    at: int
    response: str | None = None


class FailRun(Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="run-fail"):
    """A message of the run exhausted its retries (sent by the sender with the DLQ entry).
    ``failure_function``: the failure callback sent with it, if the run has one (in progress).
    Topic ``<prefix>.requests``, key = run key."""

    user_id: str
    run_id: str
    message_id: str
    dlq_id: str
    at: int
    failure_function: FailureFunction | None = None


class FailureCallbackDone(
    Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="run-failure-callback"
):
    """A failed run's failure callback (message ``message_id``) finished: delivered
    (CALLBACK_SUCCESS) or out of retries (CALLBACK_FAIL), with its last answer. Sent by the
    sender with that attempt's events. Topic ``<prefix>.requests``, key = run key."""

    user_id: str
    run_id: str
    message_id: str
    state: CallbackState
    at: int
    response_status: int | None = None
    response_body: str | None = None
    response_headers: dict[str, list[str]] = {}


class ReviveRun(
    Struct, frozen=True, kw_only=True, rename="camel", tag_field="type", tag="run-revive"
):
    """``/v2/workflows/dlq/resume|restart``: a failed run goes on. ``restart``: from the
    beginning, ``message`` being its new start; else from the failed message ``failed_id``,
    re-sent as ``message`` with the history it carried. ``max_retries`` / ``flow_control``: the
    call's ``Upstash-Retries`` / ``Upstash-Flow-Control-*`` headers, which the run takes from
    then on (None: it keeps its own). Key = run key."""

    user_id: str
    run_id: str
    restart: bool
    failed_id: str
    message: Message
    at: int
    max_retries: int | None = None
    flow_control: FlowControl | None = None
