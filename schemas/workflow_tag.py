"""The run a message belongs to: the tag a workflow message carries (see schemas/workflow.py)."""

from typing import Literal

from msgspec import Struct

CallType = Literal["step", "toCallback", "fromCallback", "failureCall"]


class WorkflowTag(Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """The run a message belongs to, from its ``Upstash-Workflow-*`` control headers.

    ``created_at`` is the run's creation time, stamped by the stream worker when the message
    joins the run (the failure callback reports it as ``workflowCreatedAt``).
    """

    run_id: str
    init: bool = False
    call_type: CallType = "step"
    url: str | None = None
    created_at: int | None = None
