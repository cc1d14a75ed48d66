"""The ``Upstash-Workflow-*`` control headers of a publish: which run a message belongs to."""

from __future__ import annotations

from collections.abc import Callable

from kafstash.producers.api.errors import ApiError
from kafstash.schemas.workflow_tag import CallType, WorkflowTag

RUN_ID = "runid"
_CALL_TYPES: frozenset[str] = frozenset({"step", "toCallback", "fromCallback", "failureCall"})
_MAX_RUN_ID = 256


def parse_workflow(get: Callable[[str], str | None], prefix: str) -> WorkflowTag | None:
    """The tag of a message whose headers (``get`` by lower-case name) under ``prefix``
    (``upstash-workflow-``, or ``upstash-callback-workflow-`` for its callback) name a run."""
    run_id = (get(prefix + RUN_ID) or "").strip()
    if not run_id:
        return None
    if len(run_id) > _MAX_RUN_ID or not run_id.isprintable() or "/" in run_id:
        raise ApiError("invalid Upstash-Workflow-RunId header: printable, no '/', at most 256")
    init = (get(prefix + "init") or "false").strip().lower()
    if init not in ("true", "false"):
        raise ApiError("invalid Upstash-Workflow-Init header: use true or false")
    call_type = (get(prefix + "calltype") or "step").strip()
    if call_type not in _CALL_TYPES:
        raise ApiError(
            f"invalid Upstash-Workflow-CallType header: {call_type!r} is not one of "
            + ", ".join(sorted(_CALL_TYPES))
        )
    url = (get(prefix + "url") or "").strip() or None
    kind: CallType = call_type  # type: ignore[assignment]
    return WorkflowTag(run_id=run_id, init=init == "true", call_type=kind, url=url)
