"""The run a message belongs to: the tag a workflow message carries (see schemas/workflow.py)."""

from typing import Literal

from msgspec import Struct

CallType = Literal["step", "toCallback", "fromCallback", "failureCall"]


class WorkflowTag(Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """The run a message belongs to, from its ``Upstash-Workflow-*`` control headers.

    ``created_at`` is the run's creation time, stamped by the stream worker when the message
    joins the run (the failure callback reports it as ``workflowCreatedAt``). ``step_id``,
    ``step_name`` and ``step_type`` name the step whose result the message carries (the SDK's
    step JSON, workflow-api.md §2.2; ``step_id`` 0 is a parallel plan), read by the stream worker
    when the message joins the run, for the delivery log's analytics; unset on the start.
    """

    run_id: str
    init: bool = False
    call_type: CallType = "step"
    url: str | None = None
    created_at: int | None = None
    step_id: int | None = None
    step_name: str | None = None
    step_type: str | None = None
