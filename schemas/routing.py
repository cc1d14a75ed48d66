"""Which requests-topic key a PublishRequest travels under: the partition that decides it."""

from kafstash.schemas.commands import PublishRequest
from kafstash.schemas.gates import gates_of
from kafstash.schemas.workflow import run_key


def request_key(req: PublishRequest) -> str:
    """A workflow message's run (its row holds the step history), else the dedup key (so that
    duplicates meet), else the message's first gate (so that one queue's messages keep their
    publish order through the stream worker), else the message id."""
    m = req.message
    if m.workflow is not None:
        return run_key(m.user_id, m.workflow.run_id)
    gates = gates_of(m)
    return req.dedup_key or (gates[0] if gates else m.message_id)
